"""One table of a model served four ways on this machine, each under the same closed-loop load:
the file in-process, Triton (`resnet-deploy serve`, the Python backend, one CPU instance), and Ray
Serve (`resnet-deploy ray`) with one and with two replicas on a local two-node cluster (head
127.0.0.2, worker 127.0.0.3, one CPU each).

    python -m benchmark.beyond_one_machine MODEL.onnx [--concurrency 1,4,8] [--duration 3] [--markdown FILE]

Each server is measured by `resnet-bench`'s own load generator (`benchmark.serving.measure_load`),
with the file in-process at concurrency x batch right after each load (`benchmark_served`), as
`resnet-bench --triton` and `--ray` do. Ray's replica count is fixed per run (min = max), so the
table shows what a second replica adds, not how fast the autoscaler gets there.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from toolkit.cli import parse_ints

from .connections import ServedTarget
from .harness import LoopSettings
from .serving import LoadSettings, benchmark_served


def _ray(model: Path, folder: Path, replicas: int, concurrency: list[int], settings, vs) -> list:
    from deploy.ray_serve.dev_cluster import LocalRayCluster, free_port_block
    from deploy.ray_serve.writer import RayOptions, write_ray_app

    with LocalRayCluster(workers=1, cpus=1) as cluster:
        (port,) = free_port_block("127.0.0.2", 1)
        options = RayOptions(
            min_replicas=replicas,
            max_replicas=replicas,
            batch_requests=16,
            http_host="127.0.0.2",
            http_port=port,
            proxy_location="HeadOnly",
        )
        app = write_ray_app(model, folder / f"ray{replicas}", "model", options)
        serve = str(Path(sys.executable).with_name("serve"))
        subprocess.run([serve, "deploy", str(app / "serve_config.yaml"), "--address", cluster.dashboard], check=True,
                       capture_output=True)  # fmt: skip
        url = f"http://127.0.0.2:{port}"
        _wait(f"{url}/v2/models/model/ready")
        time.sleep(2 * replicas)  # every replica up, not only the first
        run = benchmark_served(ServedTarget(url, "model", server="ray"), concurrency, 1, settings, vs=vs)
    for m in run.measurements:
        if m.backend == "ray":
            m.label = f"ray serve, {replicas} replica{'s' if replicas > 1 else ''} c{m.extra['concurrency']}"
    return run.measurements


def _triton(model: Path, folder: Path, concurrency: list[int], settings, vs) -> list:
    from deploy.ray_serve.dev_cluster import free_port_block
    from deploy.triton.repository import TritonOptions, write_triton_model
    from deploy.triton.server import Endpoints, TritonServer

    repository = folder / "triton"
    write_triton_model(model, repository, "model", TritonOptions(triton_backend="python", instance_kind="KIND_CPU",
                                                                 max_batch_size=16, max_queue_delay_us=2000))  # fmt: skip
    http, grpc, metrics = free_port_block("127.0.0.1", 3)
    with TritonServer(repository, Endpoints("127.0.0.1", http, grpc, metrics)) as server:
        server.start()
        run = benchmark_served(ServedTarget(f"127.0.0.1:{grpc}", "model"), concurrency, 1, settings, vs=vs)
    return run.measurements


def _wait(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {timeout:g} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of measurement per point")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    from deploy.runtimes import RuntimeOptions

    from .environment import describe_machine

    concurrency = parse_ints(args.concurrency, "--concurrency")
    settings = LoadSettings(warmup_seconds=1.0, window_seconds=args.duration / 3)
    vs = {
        "target": str(args.model),
        "options": RuntimeOptions(),
        "loop": LoopSettings(warmup_seconds=0.5, duration=args.duration),
    }
    with tempfile.TemporaryDirectory(prefix="beyond-") as temporary:
        folder = Path(temporary)
        rows = _triton(args.model, folder, concurrency, settings, vs)
        for replicas in (1, 2):
            rows += [m for m in _ray(args.model, folder, replicas, concurrency, settings, vs) if m.backend == "ray"]
    machine = describe_machine(None, "cpu")
    lines = [
        f"{args.model.name} on {machine.cpu} ({machine.logical_cpus} logical CPUs; "
        f"{', '.join(machine.cpu_flags) or 'no VNNI, BF16 or AMX'}), batch 1 per request",
        "",
        "| served by | concurrency | images/s | p50 ms | p99 ms | failed | inferences / executions |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in rows:
        where = "in-process" if m.backend not in ("triton", "ray") else m.label.rsplit(" c", 1)[0]
        server = m.extra.get("server", {})
        batching = f"{server['inferences']} / {server['executions']}" if "executions" in server else "-"
        concurrency_of = m.extra.get("concurrency", m.batch)
        lines.append(
            f"| {where} | {concurrency_of} | {m.images_per_second:.1f} | {m.latency.median:.2f} | {m.latency.p99:.2f} | "
            f"{m.extra.get('failed', 0)} | {batching} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    from toolkit.cli import run_script

    sys.exit(run_script("python -m benchmark.beyond_one_machine", main))
