"""A real Triton Inference Server on this machine: the one PyPI's `nvidia-pytriton` ships
(`tritonserver` 2.51 with its Python backend; no onnxruntime or tensorrt backend), started,
waited for and stopped.

The server's Python backend runs each model in a stub process that links the Python it was built
for; the stub for the running interpreter is put in a backend folder of our own (links to the
package's files), and the server gets this environment's `bin/` first on `PATH` (the stub then
imports this environment's packages, the toolkit among them) and the package's libraries on
`LD_LIBRARY_PATH`. The server and its stubs run in a process group of their own, so stopping it
leaves no process behind, and the server dies with the process that started it (`supervision`).
It loads exactly the models `check_repository` finds (explicit model control), so another folder
in the repository (notes, a half-written `.staging-*`) can't stop it from starting, and it reaches
a repository whose path holds a space or a non-ASCII letter through a link.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import MissingDependencyError, ToolkitError
from toolkit.optional import INSTALL

from .api import closed_api_arguments
from .config_text import model_backends
from .supervision import ServerFolder, StubWatch, die_with_parent, exit_reason, process_state, remove_leftovers

EXIT_TIMEOUT_S = 5
# Triton's line for a model that failed to load (its text is quoted, with \n escaped), and lines a
# CPU-only machine always prints, harmless, that must not stand in for the real error.
LOAD_FAILURE = re.compile(r"failed to load '(?P<name>[^']+)' version \d+: (?:Internal: )?(?P<reason>.*?)(?:\\n|\"?$)")
STACK = re.compile(r"^\d+# ")  # a crashed server's stack frames: addresses, not reasons
SEVERITY = re.compile(r"^[IWEF]\d{4} ")  # Triton's log lines: I(nfo), W(arning), E(rror), F(atal) and the date
NOISE = ("NVML", "DCGM", "CudaDriverHelper", "pinned memory", "CUDA driver version")


@dataclass(frozen=True)
class Endpoints:
    """Where the server listens. Loopback unless another host is asked for."""

    host: str = "127.0.0.1"
    http_port: int | None = 8000  # None: no HTTP endpoint (gRPC only)
    grpc_port: int = 8001
    metrics_port: int = 8002

    @property
    def http(self) -> str:
        return f"{self._host()}:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"{self._host()}:{self.grpc_port}"

    @property
    def metrics(self) -> str:
        return f"http://{self._host()}:{self.metrics_port}/metrics"

    def _host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    def ports(self) -> dict[str, int]:
        ports = {"--http-port": self.http_port, "--grpc-port": self.grpc_port, "--metrics-port": self.metrics_port}
        return {option: port for option, port in ports.items() if port is not None}


@dataclass(frozen=True)
class ServerFiles:
    """The bundled server's files: the binary, its Python backend, the stub for this Python, its libraries."""

    binary: Path
    python_backend: Path
    stub: Path
    libraries: Path


def server_files() -> ServerFiles:
    """The files of the server `nvidia-pytriton` ships, or one sentence saying what is missing."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        raise ToolkitError(
            f"the bundled Triton server runs on Linux x86-64 only; this is {sys.platform} {platform.machine()}"
        )
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"serving needs the nvidia-pytriton package, which is not installed: {INSTALL['pytriton']}"
        )
    package = Path(list(spec.submodule_search_locations)[0])
    server = package / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    files = ServerFiles(
        binary=server / "bin" / "tritonserver",
        python_backend=server / "backends" / "python",
        stub=server / "python_backend_stubs" / version / "triton_python_backend_stub",
        libraries=package.parent / "nvidia_pytriton.libs",
    )
    if not files.stub.is_file():
        raise MissingDependencyError(
            f"nvidia-pytriton has no Python-backend stub for Python {version}; use Python 3.8 to 3.13"
        )
    if not files.binary.is_file():
        raise MissingDependencyError(f"nvidia-pytriton's tritonserver is missing ({files.binary}); reinstall it")
    return files


def check_repository(repository: Path) -> list[str]:
    """The models of a repository (their folder names), after checking that the bundled server can
    load each: it has only the Python backend."""
    models = model_backends(repository)
    for name, backend in models.items():
        if backend != "python":
            raise ToolkitError(
                f"model {name} needs Triton's {backend} backend, which only NVIDIA's Triton container has "
                f"(this server has the Python backend); resnet-deploy triton --triton-backend python serves it here"
            )
    return list(models)


def check_ports_free(endpoints: Endpoints) -> None:
    """One sentence for a port given twice, a host that is no address of this machine, or a port
    that something else already listens on."""
    seen: dict[int, str] = {}
    for option, port in endpoints.ports().items():
        if port in seen:
            raise ToolkitError(f"{seen[port]} and {option} are both {port}: give each its own port")
        seen[port] = option
    try:
        family = socket.getaddrinfo(endpoints.host, 0, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as error:
        raise ToolkitError(
            f"--host {endpoints.host} is not an address this machine can listen on ({error.strerror})"
        ) from None
    if family != socket.AF_INET:  # measured: given ::1, its HTTP and metrics listen on 255.255.255.255
        raise ToolkitError(
            f"--host {endpoints.host}: the bundled Triton server (2.51) listens on IPv4 addresses only; "
            "use 127.0.0.1 (or 0.0.0.0 for every interface)"
        )
    for option, port in endpoints.ports().items():
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As servers bind: a port whose last connections are still closing (TIME_WAIT) is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((endpoints.host, port))
            except OSError as error:
                if error.errno != errno.EADDRINUSE:
                    raise ToolkitError(
                        f"--host {endpoints.host} is not an address of this machine ({error.strerror})"
                    ) from None
                raise ToolkitError(
                    f"port {port} on {endpoints.host} is in use ({error.strerror}); choose another with {option}"
                ) from None


class TritonServer:
    """The bundled `tritonserver` on a repository: `start()` waits until every model is ready (or
    says why one is not), `stop()` ends it and its stubs. A context manager."""

    def __init__(
        self,
        repository: str | Path,
        endpoints: Endpoints = Endpoints(),
        *,
        timeout: float = 120.0,
        open_admin: bool = False,
    ) -> None:
        self.repository = Path(repository)
        self.endpoints, self.timeout = endpoints, timeout
        self.open_admin = open_admin  # else Triton's admin APIs are closed to every request (deploy.triton.api)
        self.process: subprocess.Popen | None = None
        self._folder: ServerFolder | None = None
        self._stubs: StubWatch | None = None
        self.hung = False  # found hung by watch(): stop() kills it at once

    def start(self) -> list[str]:
        """Start the server; returns the models once all are ready. What servers of `serve`
        processes that are gone left behind (shared memory, folders) is removed first."""
        models = self.models = check_repository(self.repository)
        files = server_files()
        check_ports_free(self.endpoints)
        remove_leftovers()
        self._folder, self.hung = ServerFolder(), False
        backends = self._backends(files)
        self.log = self._folder.path / "tritonserver.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                self._command(files, backends),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment(files),
                start_new_session=True,  # its own process group: stop() reaches the stubs too
                preexec_fn=die_with_parent,  # SIGKILL of this process ends the server too
                pass_fds=(self._folder.lock_fd,),  # its files stay locked while it (or a stub) lives
            )
        try:
            self._wait_ready(models)
        except BaseException:
            self.stop()
            raise
        self._stubs = StubWatch(self.process.pid)
        return models

    def watch(self, poll: float = 1.0, hang_timeout: float = 30.0) -> str:
        """Until the server stops on its own, a model's stub process dies (the server then answers
        its health checks but fails every request to that model), or the server answers no health
        check (live) for `hang_timeout` s (0: never asked): what happened, in words. A server found
        hung is marked so (`hung`): `stop()` then kills it at once."""
        answered = time.monotonic()
        while True:
            status = self.process.poll()
            if status is not None:
                return f"the Triton server stopped on its own ({exit_reason(status)}): {self.errors()}"
            died = self._stubs.died(self._ready_models)
            if died:
                return died
            if hang_timeout and self._live(timeout=min(5.0, hang_timeout / 2)):
                answered = time.monotonic()
            elif hang_timeout and time.monotonic() - answered >= hang_timeout:
                self.hung = True
                return f"the Triton server answered no health check for {hang_timeout:g} s{process_state(self.process.pid)}"
            time.sleep(poll)

    def _ready_models(self, names: set[str]) -> set[str] | None:
        """Those of `names` the server says are ready (None: it doesn't answer). Each model is asked
        through the health API: the repository index is closed (deploy.triton.api)."""
        ready = set()
        for name in sorted(names):
            answer = self._model_ready(name)
            if answer is None:
                return None
            if answer:
                ready.add(name)
        return ready

    def _backends(self, files: ServerFiles) -> Path:
        python = self._folder.path / "backends" / "python"
        python.mkdir(parents=True)
        for item in files.python_backend.iterdir():
            (python / item.name).symlink_to(item)
        (python / "triton_python_backend_stub").symlink_to(files.stub)
        return python.parent

    def _command(self, files: ServerFiles, backends: Path) -> list[str]:
        host = self.endpoints.host
        repository = self.repository.resolve()
        if " " in str(repository) or not str(repository).isascii():
            # Triton hands model paths to its stubs on a command line, which a space or a
            # non-ASCII letter breaks: a link in the server's own folder stands in for the path
            (self._folder.path / "repository").symlink_to(repository, target_is_directory=True)
            repository = self._folder.path / "repository"
        command = [
            str(files.binary),
            "--model-repository",
            str(repository),
            "--backend-directory",
            str(backends),
            # only the models `check_repository` found: another folder (notes, a half-written
            # `.staging-*`) is not a model, and Triton would refuse to start over it
            "--model-control-mode",
            "explicit",
            *[f"--load-model={name}" for name in self.models],
        ]
        for option, port in self.endpoints.ports().items():
            command += [option, str(port)]
        if self.endpoints.http_port is None:
            command += ["--allow-http", "false"]
        if not self.open_admin:
            command += closed_api_arguments()
        return command + [
            f"--backend-config=python,shm-region-prefix-name={self._folder.shm_prefix}",
            "--http-address",
            host,
            "--grpc-address",
            host,
            "--metrics-address",
            host,
            "--exit-on-error",
            "true",
            "--exit-timeout-secs",
            str(EXIT_TIMEOUT_S),  # in-flight requests get this long after SIGTERM
        ]

    def _environment(self, files: ServerFiles) -> dict[str, str]:
        environment = dict(os.environ)
        environment["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), environment.get("PATH", "")])
        libraries = [str(files.libraries), environment.get("LD_LIBRARY_PATH", "")]
        environment["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, libraries))
        return environment

    def _wait_ready(self, models: list[str]) -> None:
        """Until the server and every model are ready. A model that fails to load ends the server
        (--exit-on-error), and its log then says why."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                failures = self.load_failures()
                if failures:
                    name, reason = next(iter(failures.items()))
                    raise ToolkitError(f"model {name} did not load: {reason}")
                raise ToolkitError(f"the Triton server stopped while starting: {self.errors()}")
            if self._ready() and self._ready_models(set(models)) == set(models):
                return
            time.sleep(0.2)
        raise ToolkitError(f"the Triton server was not ready within {self.timeout:g} s: {self.errors()}")

    def _model_ready(self, name: str) -> bool | None:
        """Whether the server says model `name` is ready; None when it doesn't answer."""
        if self.endpoints.http_port is None:
            return self._grpc("is_model_ready", model_name=name)
        url = f"http://{self.endpoints.http}/v2/models/{urllib.parse.quote(name, safe='')}/ready"
        try:
            with urllib.request.urlopen(url, timeout=2.0) as answer:
                return answer.status == 200
        except urllib.error.HTTPError:
            return False  # the server answered: not ready (or unknown)
        except (urllib.error.URLError, OSError):
            return None

    def _ready(self) -> bool:
        if self.endpoints.http_port is None:
            return bool(self._grpc("is_server_ready"))
        return self._get("/v2/health/ready") is not None

    def _live(self, timeout: float) -> bool:
        if self.endpoints.http_port is None:
            return bool(self._grpc("is_server_live", timeout=timeout))
        return self._get("/v2/health/live", timeout=timeout) is not None

    def _grpc(self, call: str, timeout: float = 2.0, **arguments):
        """One call of tritonclient's gRPC client (None when the server doesn't answer yet)."""
        import tritonclient.grpc as grpcclient

        try:
            client = grpcclient.InferenceServerClient(self.endpoints.grpc)
            return getattr(client, call)(client_timeout=timeout, **arguments)
        except Exception:  # noqa: BLE001 - not listening yet, or starting: asked again
            return None

    def _get(self, path: str, timeout: float = 2.0) -> bytes | None:
        try:
            with urllib.request.urlopen(f"http://{self.endpoints.http}{path}", timeout=timeout) as answer:
                return answer.read()
        except (urllib.error.URLError, OSError):
            return None

    def _log_lines(self) -> list[str]:
        text = self.log.read_text(errors="replace") if getattr(self, "log", None) and self.log.exists() else ""
        return [line.strip() for line in text.splitlines() if line.strip()]

    def load_failures(self) -> dict[str, str]:
        """Each model that failed to load, with the server's reason (its first line: the toolkit's
        sentence, where the model raised one)."""
        found = {}
        for line in self._log_lines():
            match = LOAD_FAILURE.search(line)
            if match:
                found.setdefault(match["name"], _without_toolkit_class(match["reason"].strip()))
        return found

    def errors(self, last: int = 3) -> str:
        """The server's own error lines (Triton's `E` lines, or lines that name an error or a
        signal, without what a CPU-only machine always prints), the last few; else its warnings
        (`W`); never its informational lines, which say what went well."""
        lines = [
            line for line in self._log_lines() if not any(noise in line for noise in NOISE) and not STACK.match(line)
        ]
        errors = [line for line in lines if SEVERITY.match(line) is None and _names_a_failure(line)]
        errors += [line for line in lines if line[0] in "EF" and SEVERITY.match(line)]
        warnings = [line for line in lines if line.startswith("W") and SEVERITY.match(line)]
        if not lines:
            return "it said nothing"
        return " | ".join(sorted(errors, key=lines.index)[-last:] or warnings[-last:]) or "it logged no error"

    def wait(self) -> int:
        """Until the server exits (it does only on an error, or when stopped); its exit status."""
        return self.process.wait()

    def stop(self, grace: float = 30.0) -> None:
        """End the server (SIGTERM: it unloads its models and their stubs end), then anything left
        of its process group; remove the backend folder."""
        if self.process is not None and self.process.poll() is None and self.hung:
            _signal_group(self.process.pid, signal.SIGKILL)  # hung: SIGTERM would wait (a stopped one never sees it)
            self.process.wait()
        if self.process is not None and self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process is not None:
            _signal_group(self.process.pid, signal.SIGKILL)  # stubs that outlived the server
        if self._folder is not None:
            self._folder.remove()
            self._folder = None

    def __enter__(self) -> TritonServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _names_a_failure(line: str) -> bool:
    """A line outside Triton's own format (a stub's, a library's) that reports a failure."""
    lowered = line.lower()
    return any(word in lowered for word in ("error", "signal", "abort", "terminate", "fault", "exception"))


def _without_toolkit_class(reason: str) -> str:
    """The toolkit's own sentence without the Python class the stub put before it (a toolkit error
    is a sentence for the user; any other class is kept: it names a bug)."""
    name, _, rest = reason.partition(": ")
    ours = {ToolkitError.__name__}
    pending = [ToolkitError]
    while pending:
        for subclass in pending.pop().__subclasses__():
            ours.add(subclass.__name__)
            pending.append(subclass)
    return rest if name in ours and rest else reason


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
