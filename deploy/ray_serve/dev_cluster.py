"""A Ray cluster of several nodes on this one machine, for development and tests: Ray's own
`ray start` on distinct loopback addresses, not a replacement for it.

Each node is `ray start --block` (the head first, then the workers with `--address` of the head)
on its own loopback address (Ray rewrites 127.0.0.1 to the machine's interface address, so the
nodes use 127.0.0.2, 127.0.0.3, ...), with `--num-cpus` of its own, an explicit set of free ports
(Ray's defaults would clash between nodes on one host), a temporary folder of its own and usage
statistics off. Each `ray start` runs in a session of its own, so a node's processes (its raylet,
its workers, the actors on it) are exactly the processes of that session: `stop_node` ends those
and nothing else. Never `ray stop`: it ends every Ray process on the machine, by name.

Across machines a user types the same commands (docs/deploy.md): `ray start --head` on one,
`ray start --address HEAD:PORT` on the others; `commands()` shows the ones used here.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.errors import ToolkitError
from toolkit.optional import require

# Ray's ports of one node, in the order of its block of free ports; workers take a range after them.
NODE_PORTS = (
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--metrics-export-port",
    "--runtime-env-agent-port",
)
HEAD_PORTS = ("--port", "--ray-client-server-port", "--dashboard-port")
WORKER_PORTS = 40  # one per worker process of the node (Serve's controller, proxy, replicas, tasks)
BLOCK = len(NODE_PORTS) + len(HEAD_PORTS) + WORKER_PORTS


@dataclass
class RayNode:
    """One `ray start --block` of the cluster: its address, ports and process."""

    address: str
    head: bool
    ports: dict[str, int]
    temp_dir: Path
    process: subprocess.Popen | None = None
    log: Path | None = None
    stopped: bool = False  # by `stop_node` (a node that ends on its own has not been stopped)

    def command(self, ray: str, head_address: str, cpus: int) -> list[str]:
        command = [ray, "start", "--block", f"--node-ip-address={self.address}", f"--num-cpus={cpus}", "--num-gpus=0"]
        command += ["--head", f"--dashboard-host={self.address}"] if self.head else [f"--address={head_address}"]
        command += [f"{option}={port}" for option, port in self.ports.items()]
        return command + [f"--temp-dir={self.temp_dir}", "--disable-usage-stats"]

    def pids(self) -> list[int]:
        """The processes of this node: those of the session its `ray start` leads."""
        if self.process is None:
            return []
        return session_members(self.process.pid)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class LocalRayCluster:
    """A head and `workers` worker nodes on 127.0.0.2, 127.0.0.3, ... (`first_address` on), each
    with `cpus` CPUs. `start()` returns once every node is alive; `stop()` ends exactly the
    processes it started. A context manager."""

    workers: int = 1
    cpus: int = 1
    first_address: str = "127.0.0.2"
    timeout: float = 120.0
    environment: dict[str, str] = field(default_factory=dict)  # for the nodes, e.g. RAY_health_check_period_ms
    nodes: list[RayNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0 <= self.workers <= 8:
            raise ToolkitError(f"a local cluster has 0 to 8 worker nodes, got {self.workers}")
        self._folder: Path | None = None

    @property
    def head(self) -> RayNode:
        return self.nodes[0]

    @property
    def gcs_address(self) -> str:
        """HEAD:PORT, what `ray start --address` and `ray.init` take."""
        return f"{self.head.address}:{self.head.ports['--port']}"

    @property
    def dashboard(self) -> str:
        """The head's dashboard URL: `serve deploy --address` and Ray's REST API."""
        return f"http://{self.head.address}:{self.head.ports['--dashboard-port']}"

    def start(self) -> LocalRayCluster:
        require("ray", "a Ray cluster")
        self._folder = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # Ray's socket paths must stay short
        try:
            self.nodes = [self._node(0)]
            self._launch(self.head)
            self.wait_alive(1)
            for _ in range(self.workers):
                self.add_worker(wait=False)
            self.wait_alive(self.workers + 1)
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self, wait: bool = True) -> RayNode:
        """Start one more worker node (a new address); with `wait`, until the cluster sees it alive."""
        index = len(self.nodes)
        node = self._node(index)
        self.nodes.append(node)
        self._launch(node)
        if wait:  # the nodes whose `ray start` still runs (one that died on its own counts no more)
            self.wait_alive(sum(n.running for n in self.nodes), starting=[node])
        return node

    def _node(self, index: int) -> RayNode:
        base = self.first_address.rsplit(".", 1)
        address = f"{base[0]}.{int(base[1]) + index}"
        ports = free_port_block(address, BLOCK)
        names = NODE_PORTS + (HEAD_PORTS if index == 0 else ())
        assigned = dict(zip(names, ports, strict=False))
        first_worker = ports[len(names)]
        assigned |= {"--min-worker-port": first_worker, "--max-worker-port": first_worker + WORKER_PORTS - 1}
        temp_dir = self._folder / f"node{index}"
        temp_dir.mkdir()
        return RayNode(address, index == 0, assigned, temp_dir)

    def _launch(self, node: RayNode) -> None:
        ray = str(Path(sys.executable).with_name("ray"))
        node.log = node.temp_dir.with_suffix(".log")
        environment = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", **self.environment)
        with open(node.log, "wb") as log:
            node.process = subprocess.Popen(
                node.command(ray, self.gcs_address if self.nodes else "", self.cpus),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=environment,
                start_new_session=True,  # the node's processes are this session's (see the module docstring)
            )

    def commands(self) -> list[str]:
        """The `ray start` command of each node, as a user would type it."""
        ray = "ray"
        return [" ".join(n.command(ray, self.gcs_address, self.cpus)) for n in self.nodes]

    def alive_nodes(self) -> list[dict]:
        """The nodes the head reports alive (its REST API): each with `node_ip` and `node_id`."""
        try:
            with urllib.request.urlopen(f"{self.dashboard}/nodes?view=summary", timeout=5) as answer:
                summary = json.loads(answer.read())["data"]["summary"]
        except (urllib.error.URLError, OSError, ValueError, KeyError):
            return []
        return [
            {"node_ip": n["raylet"].get("nodeManagerAddress", n.get("ip")), "node_id": n["raylet"].get("nodeId")}
            for n in summary
            if n.get("raylet", {}).get("state") == "ALIVE"
        ]

    def wait_alive(self, count: int, starting: list[RayNode] | None = None) -> None:
        """Until the head reports `count` nodes alive; one of `starting` (default: every node) that
        ends meanwhile is an error."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for node in self.nodes if starting is None else starting:
                if not node.stopped and node.process is not None and node.process.poll() is not None:
                    raise ToolkitError(f"the Ray node on {node.address} stopped while starting: {_last_line(node.log)}")
            if len(self.alive_nodes()) >= count:
                return
            time.sleep(0.3)
        raise ToolkitError(f"the Ray cluster did not have {count} nodes alive within {self.timeout:g} s")

    def stop_node(self, node: RayNode, *, kill: bool = False, grace: float = 3.0) -> None:
        """End one node: SIGTERM to every process of its session at once, then SIGKILL to what is
        left after `grace` seconds (a worker node ends within one; the head's GCS, raylet and log
        monitor wait for each other past ten); `kill=True` is a lost machine: SIGKILL at once."""
        if node.process is None:
            return
        node.stopped = True
        first = signal.SIGKILL if kill else signal.SIGTERM
        _signal_all(node.pids(), first)
        deadline = time.monotonic() + (0 if kill else grace)
        while node.pids() and time.monotonic() < deadline:
            node.process.poll()  # reaps the leader when it ends
            time.sleep(0.1)
        _signal_all(node.pids(), signal.SIGKILL)
        try:
            node.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def stop(self) -> None:
        """Every node, workers first; then the temporary folder. Only the processes started here."""
        for node in reversed(self.nodes):
            self.stop_node(node)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def pids(self) -> list[int]:
        return [pid for node in self.nodes for pid in node.pids()]

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def session_members(session: int) -> list[int]:
    """The live processes whose session id is `session` (zombies excluded), from /proc."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == session:  # state, ppid, pgrp, session
            members.append(int(entry.name))
    return members


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def free_port_block(host: str, count: int, attempts: int = 200) -> list[int]:
    """`count` consecutive ports free on `host` (bound and released, as the servers will)."""
    for _ in range(attempts):
        first = random.randrange(20000, 60000 - count)
        if all(_bindable(host, port) for port in range(first, first + count)):
            return list(range(first, first + count))
    raise ToolkitError(f"found no {count} consecutive free ports on {host}")


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _last_line(log: Path | None) -> str:
    lines = log.read_text(errors="replace").strip().splitlines() if log and log.exists() else []
    return lines[-1][:300] if lines else "it said nothing"
