"""Load on a server, measured the way perf_analyzer measures it: `resnet-bench --triton` (Triton,
over gRPC or HTTP, through tritonclient) and `resnet-bench --ray` (a Ray Serve application of
`resnet-deploy ray`, over the Open Inference Protocol's REST form: JSON tensors).

At each concurrency, that many clients (threads, one `tritonclient` client each: the HTTP client
is not thread-safe) send requests back to back: a closed loop. After a warm-up, measurement
windows follow (a request counts in the window it ends in; one sent during the warm-up never
counts) until the throughput of the last three is stable (each within `tolerance` of
their mean) or the time runs out (three times the planned windows); the stable windows give the
figures: throughput, latency percentiles, failed requests (counted and shown, never dropped),
and the server's own split of each request from Triton's statistics extension (queue, compute
input, infer, output; inferences against executions, which shows its dynamic batching). A Ray
application has no statistics extension: each answer says the batch it ran in, which gives its
inferences against executions the same way.

Inputs are random (a pool drawn before timing), of the model's own shape and type; a model that
takes encoded images (a `_images` model) gets PNGs.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.numbers import LIMITS, check_number
from toolkit.optional import require

from .harness import Measurement
from .report import Comparison
from .stats import LatencyStats

PROTOCOLS = ("grpc", "http")
SERVERS = ("triton", "ray")
STAT_PARTS = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class ServedTarget:
    """A model on a server, as the load generator reaches it: Triton at host:port over `protocol`,
    or a Ray Serve application at its HTTP address (`server="ray"`)."""

    url: str
    model: str
    protocol: str = "grpc"
    server: str = "triton"

    def __post_init__(self) -> None:
        if self.server not in SERVERS:
            raise ToolkitError(f"server must be one of {', '.join(SERVERS)}, got {self.server!r}")
        if self.server == "triton" and self.protocol not in PROTOCOLS:
            raise ToolkitError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.server == "ray":
            object.__setattr__(self, "protocol", "http")

    def connection(self):
        """A new connection (one per client thread: none of them is thread-safe)."""
        return RestConnection(self) if self.server == "ray" else TritonConnection(self)

    def client(self):
        """(the tritonclient module, a new client) of this protocol."""
        require("tritonclient", f"load on a Triton server over {self.protocol}")
        if self.protocol == "grpc":
            import tritonclient.grpc as grpcclient

            return grpcclient, grpcclient.InferenceServerClient(self.url)
        import tritonclient.http as httpclient

        return httpclient, httpclient.InferenceServerClient(self.url, connection_timeout=60, network_timeout=300)

    @property
    def label(self) -> str:
        return f"{self.model} (ray serve)" if self.server == "ray" else f"{self.model} (triton {self.protocol})"


class TritonConnection:
    """tritonclient's client: the model's metadata and config, requests, statistics."""

    def __init__(self, served: ServedTarget) -> None:
        self.served = served
        self.library, self.client = served.client()
        self.as_json = {"as_json": True} if served.protocol == "grpc" else {}

    def describe(self) -> tuple[dict, int]:
        """(the model's first input: name, datatype, shape without the batch axis; its max batch, 0: none)."""
        metadata = self.client.get_model_metadata(self.served.model, **self.as_json)
        config = self.client.get_model_config(self.served.model, **self.as_json)
        config = config.get("config", config)
        (first,) = metadata["inputs"][:1] or [None]
        if first is None:
            raise ToolkitError(f"model {self.served.model} takes no input")
        max_batch = int(config.get("max_batch_size", 0))
        dims = [int(d) for d in first["shape"]][1 if max_batch else 0 :]
        return {"name": first["name"], "datatype": first["datatype"], "dims": dims}, max_batch

    def infer(self, name: str, datatype: str, batch: np.ndarray) -> int | None:
        request = self.library.InferInput(name, list(batch.shape), datatype)
        request.set_data_from_numpy(batch)
        self.client.infer(self.served.model, [request])
        return None  # Triton's statistics say how it batched

    def statistics(self) -> dict:
        return _statistics(self.served, self.client)


class RestConnection:
    """The Open Inference Protocol's REST form over one kept-alive HTTP connection, tensors in
    Triton's binary extension (a Ray Serve application of `resnet-deploy ray`; Triton's HTTP
    endpoint speaks it too)."""

    def __init__(self, served: ServedTarget) -> None:
        import http.client
        import urllib.parse

        self.served = served
        address = urllib.parse.urlsplit(served.url if "://" in served.url else f"http://{served.url}")
        self.prefix = address.path.rstrip("/")
        self.connection = http.client.HTTPConnection(address.hostname, address.port or 80, timeout=300)

    def _request(self, method: str, path: str, body: bytes | None = None, header: int | None = None) -> dict:
        """The answer's JSON (with the binary extension: its JSON part; the bytes after it in `binary`)."""
        import json

        headers = {"Content-Type": "application/json" if header is None else "application/octet-stream"}
        if header is not None:
            headers["Inference-Header-Content-Length"] = str(header)
        self.connection.request(method, f"{self.prefix}{path}", body=body, headers=headers)
        answer = self.connection.getresponse()
        data = answer.read()
        if answer.status != 200:
            try:
                reason = json.loads(data).get("error", "")
            except ValueError:
                reason = data[:200].decode(errors="replace")
            raise ToolkitError(f"HTTP {answer.status}: {reason}")
        split = int(answer.getheader("Inference-Header-Content-Length") or len(data))
        self.binary = data[split:]
        return json.loads(data[:split])

    def describe(self) -> tuple[dict, int]:
        metadata = self._request("GET", f"/v2/models/{self.served.model}")
        (first,) = metadata.get("inputs", [])[:1] or [None]
        if first is None:
            raise ToolkitError(f"model {self.served.model} takes no input")
        shape = [int(d) for d in first["shape"]]
        batched = shape[0] == -1
        return {"name": first["name"], "datatype": first["datatype"], "dims": shape[1:] if batched else shape}, (
            -1 if batched else 0
        )

    def infer(self, name: str, datatype: str, batch: np.ndarray) -> int | None:
        """One request in Triton's binary tensor extension (the JSON of a ResNet-50 input alone is
        3 MB of text, more than the model's time); the batch the answer says it ran in."""
        import json

        data = np.ascontiguousarray(batch).astype(batch.dtype.newbyteorder("<")).tobytes()
        tensor = {"name": name, "shape": list(batch.shape), "datatype": datatype,
                  "parameters": {"binary_data_size": len(data)}}  # fmt: skip
        header = json.dumps({"inputs": [tensor], "outputs": [{"parameters": {"binary_data": True}}]}).encode()
        answer = self._request("POST", f"/v2/models/{self.served.model}/infer", header + data, header=len(header))
        return answer.get("parameters", {}).get("batch_size")

    def statistics(self) -> dict:
        return {}


@dataclass(frozen=True)
class LoadSettings:
    """How long to warm up and to measure at each concurrency."""

    warmup_seconds: float = 1.0
    window_seconds: float = 1.0
    windows: int = 3  # stable when the last `windows` are within `tolerance` of their mean
    tolerance: float = 0.1

    def __post_init__(self) -> None:
        check_number(self.warmup_seconds, "warm-up seconds", limit="seconds")
        check_number(self.window_seconds, "window seconds", low=0, low_open=True, high=LIMITS["seconds"][1])
        check_number(self.windows, "windows", low=1, high=100, integer=True)
        check_number(self.tolerance, "tolerance", low=0, low_open=True, high=1)


def _inputs(served: ServedTarget, batch: int, seed: int):
    """(the model's input name, its protocol type, a pool of request batches) from its metadata."""
    try:
        first, max_batch = served.connection().describe()
    except ToolkitError:
        raise
    except Exception as error:  # noqa: BLE001 - the clients raise their own exception types
        where = "Triton server" if served.server == "triton" else "Ray Serve application"
        raise ToolkitError(
            f"the {where} at {served.url} has no ready model {served.model!r} ({_first(error)})"
        ) from None
    if max_batch > 0 and batch > max_batch:
        raise ToolkitError(f"--batch {batch} is above model {served.model}'s max_batch_size {max_batch}")
    shape = [batch, *first["dims"]] if max_batch else first["dims"]
    rng = np.random.default_rng(seed)
    if first["datatype"] == "BYTES":
        if served.server == "ray":
            raise ToolkitError(f"model {served.model} takes BYTES; the Ray application's tensors are FP32 or FP16")
        pool = [np.array([[_png(rng)] for _ in range(batch)], dtype=object) for _ in range(4)]
    else:
        dtype = {"FP32": np.float32, "FP16": np.float16}.get(first["datatype"])
        if dtype is None:
            raise ToolkitError(
                f"model {served.model} takes {first['datatype']}; the load generator sends FP32, FP16 or images"
            )
        pool = [rng.standard_normal(shape, dtype=np.float32).astype(dtype) for _ in range(4)]
    return first["name"], first["datatype"], pool


def _png(rng) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _first(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


class _Client(threading.Thread):
    """One closed-loop client: a request, its answer, the next request, until told to stop."""

    def __init__(self, served: ServedTarget, name: str, datatype: str, pool: list, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.connection = served.connection()
        self.name, self.datatype, self.pool, self.stop = name, datatype, pool, stop
        # (start, end, error or None, the batch the server ran it in where it says)
        self.records: list[tuple[float, float, str | None, int | None]] = []

    def run(self) -> None:
        index = 0
        while not self.stop.is_set():
            batch = self.pool[index % len(self.pool)]
            index += 1
            start = time.perf_counter()
            ran_in = None
            try:
                ran_in = self.connection.infer(self.name, self.datatype, batch)
                error = None
            except Exception as failure:  # noqa: BLE001 - every failed request is counted, with its reason
                error = _first(failure)
                if isinstance(self.connection, RestConnection):  # a broken keep-alive connection: a new one
                    self.connection = RestConnection(self.connection.served)
            self.records.append((start, time.perf_counter(), error, ran_in))


def _statistics(served: ServedTarget, client) -> dict:
    """The model's cumulative statistics: request counts, inference and execution counts, and the
    nanoseconds spent in each part (Triton's statistics extension)."""
    found = client.get_inference_statistics(served.model, **({"as_json": True} if served.protocol == "grpc" else {}))
    stats = found["model_stats"][0]
    inference = stats.get("inference_stats", {})
    parts = {part: int(inference.get(part, {}).get("ns", 0)) for part in STAT_PARTS}
    success = int(inference.get("success", {}).get("count", 0))
    return {
        "success": success,
        "inferences": int(stats.get("inference_count", 0)),
        "executions": int(stats.get("execution_count", 0)),
        **parts,
    }


def _server_split(before: dict, after: dict, done: list, batch: int) -> dict:
    """Per request, in ms: the server's queue and compute parts between two statistics (Triton's);
    without statistics (Ray), inferences and executions from the batch each answer ran in."""
    if not before:
        answered = [r for r in done if r[2] is None and r[3]]
        return {
            "inferences": len(answered) * batch,
            "executions": round(sum(batch / r[3] for r in answered)),
        }
    requests = max(after["success"] - before["success"], 1)
    split = {f"{part}_ms": (after[part] - before[part]) / requests / 1e6 for part in STAT_PARTS}
    return {
        **split,
        "inferences": after["inferences"] - before["inferences"],
        "executions": after["executions"] - before["executions"],
    }


def measure_load(
    served: ServedTarget,
    concurrency: int,
    batch: int = 1,
    settings: LoadSettings = LoadSettings(),
    *,
    seed: int = 0,
    progress: Callable[[str, float], None] | None = None,
) -> Measurement:
    """`concurrency` closed-loop clients on `served`, each sending batches of `batch`: one
    `Measurement` of the stable windows (see the module docstring)."""
    name, datatype, pool = _inputs(served, batch, seed)
    stop = threading.Event()
    clients = [_Client(served, name, datatype, pool, stop) for _ in range(concurrency)]
    for client in clients:
        client.start()
    try:
        time.sleep(settings.warmup_seconds)
        statistics = served.connection()
        windows = _windows(served, statistics.statistics, clients, batch, settings, progress)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=60)
    return _measurement(served, concurrency, batch, windows)


def _windows(served: ServedTarget, statistics, clients, batch: int, settings: LoadSettings, progress) -> list[dict]:
    """Measurement windows until the last `settings.windows` are stable, or three times as many."""
    windows: list[dict] = []
    since = time.perf_counter()  # a request sent during the warm-up is not measured, whenever it ends
    for index in range(settings.windows * 3):
        before, start = statistics(), time.perf_counter()
        time.sleep(settings.window_seconds)
        end, after = time.perf_counter(), statistics()
        done = [r for c in clients for r in c.records if start <= r[1] < end and r[0] >= since]
        ok = [r for r in done if r[2] is None]
        windows.append(
            {
                "seconds": end - start,
                "latencies_ms": [(r[1] - r[0]) * 1e3 for r in ok],
                "images_per_second": len(ok) * batch / (end - start),
                "failed": [r[2] for r in done if r[2] is not None],
                "server": _server_split(before, after, done, batch),
            }
        )
        if progress is not None:
            progress(f"{served.label} concurrency {len(clients)}", min(1.0, (index + 1) / settings.windows))
        if len(windows) >= settings.windows and _stable(windows[-settings.windows :], settings.tolerance):
            windows[-1]["stable"] = True
            break
    return windows[-settings.windows :]


def _stable(windows: Sequence[dict], tolerance: float) -> bool:
    rates = [w["images_per_second"] for w in windows]
    mean = sum(rates) / len(rates)
    return mean > 0 and all(abs(rate - mean) <= tolerance * mean for rate in rates)


def _measurement(served: ServedTarget, concurrency: int, batch: int, windows: list[dict]) -> Measurement:
    latencies = [ms for w in windows for ms in w["latencies_ms"]]
    failed = [reason for w in windows for reason in w["failed"]]
    if not latencies:
        raise ToolkitError(
            f"no request to {served.model} at {served.url} succeeded in {sum(w['seconds'] for w in windows):.1f} s"
            + (f" ({len(failed)} failed: {failed[0]})" if failed else "")
        )
    seconds = sum(w["seconds"] for w in windows)
    split = {key: sum(w["server"][key] for w in windows) / len(windows) for key in windows[0]["server"]}
    split["inferences"], split["executions"] = (
        sum(w["server"][k] for w in windows) for k in ("inferences", "executions")
    )
    return Measurement(
        label=f"{served.label} c{concurrency}",
        backend=served.server,
        device=f"server {served.url}",
        description=f"{'Triton' if served.server == 'triton' else 'Ray Serve'} at {served.url}, model {served.model} "
        f"over {served.protocol}: {concurrency} closed-loop clients, batch {batch} per request",
        batch=batch,
        iterations=len(latencies),
        warmup_iterations=0,
        seconds=seconds,
        latency=LatencyStats.from_samples(latencies),
        images_per_second=len(latencies) * batch / seconds,
        batches_per_second=len(latencies) / seconds,
        extra={
            "concurrency": concurrency,
            "failed": len(failed),
            "failures": sorted(set(failed))[:5],
            "stable": bool(windows[-1].get("stable")),
            "server": split,
            "windows": [
                {k: w[k] for k in ("seconds", "images_per_second")} | {"failed": len(w["failed"])} for w in windows
            ],
            "series": served.label,
            "point": f"c{concurrency}",
        },
    )


def against_in_process(served: list[Measurement], local: list[Measurement]) -> list[Comparison]:
    """Each server measurement against the in-process runtime at the batch its clients can fill
    together (concurrency x batch per request: what dynamic batching can gather): one ratio."""
    result = []
    for m in served:
        size = m.extra["concurrency"] * m.batch
        other = next((o for o in local if o.batch == size), None)
        if other is not None:
            result.append(Comparison.of(m, other, size))
    return result


def benchmark_served(
    served: ServedTarget,
    concurrency: Sequence[int],
    batch: int = 1,
    settings: LoadSettings = LoadSettings(),
    *,
    vs=None,
    seed: int = 0,
    progress: Callable[[str, float], None] | None = None,
):
    """What `resnet-bench --triton URL --model NAME` does: `measure_load` at each concurrency;
    with `vs` (a dict: `target`, the same file, with its `options` and `loop`), that file
    in-process at concurrency x batch right after each load (paired in time, so the machine's
    drift between them stays small), and the ratios (`against_in_process`)."""
    from .environment import describe_machine
    from .harness import LoopSettings
    from .report import BenchmarkRun
    from .run import open_target, run_benchmark

    if vs is None:
        measured = [measure_load(served, c, batch, settings, seed=seed, progress=progress) for c in concurrency]
        loop = LoopSettings(warmup_seconds=settings.warmup_seconds, duration=settings.window_seconds * settings.windows)
        return BenchmarkRun(describe_machine(None, "cpu"), loop, measured, [])
    target = open_target(vs["target"], vs["options"])
    measured, local, run = [], [], None
    try:
        for size in concurrency:
            target.runtime.check_batch(size * batch)  # before the server is loaded at all
        for size in concurrency:
            measured.append(measure_load(served, size, batch, settings, seed=seed, progress=progress))
            run = run_benchmark(
                [target], [size * batch], vs["loop"], measure_peak=False, threads=vs["options"].threads, seed=seed
            )
            local += run.measurements
    finally:
        target.runtime.close()
    return BenchmarkRun(run.machine, run.settings, measured + local, against_in_process(measured, local))
