"""Load on a server: `resnet-bench --triton` (Triton, over gRPC or HTTP) and `resnet-bench --ray`
(a Ray Serve application of `resnet-deploy ray`, over the Open Inference Protocol's REST form with
binary tensors), by NVIDIA's perf_analyzer (`benchmark.perf_analyzer`, Triton only) or by the
builtin generator, which measures the way perf_analyzer does.

The builtin generator: at each concurrency, that many clients (threads, a connection each:
`benchmark.connections`) send requests back to back, a closed loop; each request is serialized
once before timing, so a request costs the client a send and a receive. After a warm-up,
measurement windows follow (a request counts in the window it ends in; one sent during the
warm-up never counts) until the throughput of the last three is stable (each within `tolerance`
of their mean) or the time runs out (three times the planned windows); the stable windows give
the figures: throughput, latency percentiles, failed requests (counted and shown, never
dropped), and the server's own split of each request from Triton's statistics extension (queue,
compute input, infer, output; inferences against executions, which shows its dynamic batching).
A Ray application has no statistics extension: each answer says the batch it ran in, which gives
its inferences against executions the same way.

Inputs are random (a pool drawn before timing), of the model's own shape and type; a model that
takes encoded images (a `_images` model) gets PNGs.
"""

from __future__ import annotations

import io
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from toolkit.errors import MissingDependencyError, ToolkitError, clip
from toolkit.numbers import LIMITS, check_memory, check_number

from .connections import STAT_PARTS, AnswerError, ServedTarget, other_protocol, payload
from .harness import Measurement
from .report import Comparison
from .stats import LatencyStats

GENERATORS = ("builtin", "perf_analyzer")


@dataclass(frozen=True)
class LoadSettings:
    """How long to warm up and to measure at each concurrency."""

    warmup_seconds: float = 1.0
    window_seconds: float = 1.0
    windows: int = 3  # stable when the last `windows` are within `tolerance` of their mean
    tolerance: float = 0.1
    generator: str = "builtin"  # or "perf_analyzer" (NVIDIA's, for Triton: `benchmark.perf_analyzer`)

    def __post_init__(self) -> None:
        check_number(self.warmup_seconds, "warm-up seconds", limit="seconds")
        check_number(self.window_seconds, "window seconds", low=0, low_open=True, high=LIMITS["seconds"][1])
        check_number(self.windows, "windows", low=1, high=100, integer=True)
        check_number(self.tolerance, "tolerance", low=0, low_open=True, high=1)
        if self.generator not in GENERATORS:
            raise ToolkitError(f"the load generator is one of {', '.join(GENERATORS)}, not {self.generator!r}")


def resolve_generator(choice: str, served: ServedTarget) -> tuple[str, str | None]:
    """The load generator for `choice` ("auto", "perf_analyzer" or "builtin") on `served`, and a
    line to say when "auto" could not take perf_analyzer."""
    if choice == "builtin":
        return "builtin", None
    from . import perf_analyzer

    if served.server != "triton":
        if choice == "perf_analyzer":
            raise ToolkitError(
                "perf_analyzer speaks Triton's protocols only; a Ray application takes the builtin generator"
            )
        return "builtin", None
    notes: list[str] = []
    if perf_analyzer.find(notes) is not None:
        return "perf_analyzer", "; ".join(notes) or None
    if choice == "perf_analyzer":
        raise MissingDependencyError(
            f"perf_analyzer {perf_analyzer.VERSION} is not installed here: python -m benchmark.perf_analyzer install"
            + "".join(f" ({note})" for note in notes)
        )
    return "builtin", "; ".join(
        notes
        + [
            "perf_analyzer is not installed here (python -m benchmark.perf_analyzer install): measured with the builtin "
            "generator, whose clients share this machine's cores with the server"
        ]
    )


def _inputs(served: ServedTarget, batch: int, seed: int, concurrency: int = 1):
    """(the model's signature (`connections.signature`), its protocol type, a pool of request
    batches) from its metadata; the pool's memory, with each client's serialized copy of it, is
    estimated first and refused past half of what this machine has available."""
    first, max_batch = _describe(served)
    if max_batch > 0 and batch > max_batch:
        raise ToolkitError(f"--batch {batch} is above model {served.model}'s max_batch_size {max_batch}")
    if any(d < 0 for d in first["dims"]):
        raise ToolkitError(
            f"model {served.model}'s input {first['name']} has a dimension of any size (-1) besides the batch axis, "
            f"{first['dims']}: the load generator can't choose its size"
        )
    shape = [batch, *first["dims"]] if first["batching"] else first["dims"]
    itemsize = {"FP32": 4, "FP16": 2, "BYTES": 64 * 64 * 3}.get(first["datatype"])
    if itemsize is None:
        raise ToolkitError(
            f"model {served.model} takes {first['datatype']}; the load generator sends FP32, FP16 or images"
        )
    if first["datatype"] == "BYTES" and served.server == "ray":
        raise ToolkitError(f"model {served.model} takes BYTES; the Ray application's tensors are FP32 or FP16")
    pool_bytes = 4 * math.prod(shape) * max(itemsize, 4)  # drawn in FP32, then each client's serialized copy
    check_memory(pool_bytes * (1 + concurrency), f"the requests for model {served.model} (shape {shape})",
                 "lower --batch or --concurrency")  # fmt: skip
    rng = np.random.default_rng(seed)
    if first["datatype"] == "BYTES":
        pool = [np.array([[_png(rng)] for _ in range(batch)], dtype=object) for _ in range(4)]
    else:
        dtype = {"FP32": np.float32, "FP16": np.float16}[first["datatype"]]
        pool = [rng.standard_normal(shape, dtype=np.float32).astype(dtype) for _ in range(4)]
    return first, first["datatype"], pool


def _describe(served: ServedTarget) -> tuple[dict, int]:
    """The served model's signature and max batch, or one sentence saying why there is none."""
    where = "Triton server" if served.server == "triton" else "Ray Serve application"
    try:
        return served.connection().describe()
    except Exception as error:  # noqa: BLE001 - the clients raise their own exception types
        other = other_protocol(served)
        if other is not None:
            raise ToolkitError(
                f"the Triton server at {served.url} answers {other} there, not {served.protocol}: give --triton "
                f"{other}://{served.url} (or --protocol {other}), or the port of its {served.protocol} endpoint"
            ) from None
        if isinstance(error, AnswerError):
            raise ToolkitError(
                f"the {where} at {served.url} gave no readable metadata of model {served.model!r}: {error}"
            ) from None
        if isinstance(error, ToolkitError):
            raise
        if "connection refused" in str(error).lower() or isinstance(error, ConnectionRefusedError):
            raise ToolkitError(
                f"nothing listens at {served.url} (connection refused): is the {where} running?"
            ) from None
        raise ToolkitError(
            f"the {where} at {served.url} has no ready model {served.model!r} ({_first(error)})"
        ) from None


def _png(rng) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _first(error: Exception) -> str:
    details = getattr(error, "details", None)  # a gRPC error's own words (its str() is a dump)
    text = (details() if callable(details) and details() else str(error)).strip().splitlines()
    return clip(text[0]) if text else type(error).__name__


def _refused(error: Exception) -> bool:
    """Whether `error` is the server's own answer (an HTTP status, a gRPC status of its choosing),
    not the lack of one (refused connection, timeout, a channel that is gone)."""
    status = getattr(error, "status", None)
    status = str((status() if callable(status) else status) or "")
    if status.isdigit():
        return True
    no_answer = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "UNKNOWN")
    return status.startswith("StatusCode.") and not any(word in status for word in no_answer)


class _Client(threading.Thread):
    """One closed-loop client: a request, its answer, the next request, until told to stop. Its
    requests are prepared before it starts (the pool, serialized once)."""

    def __init__(self, served: ServedTarget, first: dict, pool: list, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.connection = served.connection()
        self.connection.expect(first["output"], len(pool[0]) if first["batching"] else None)
        self.pool = [self.connection.prepare(first["name"], first["datatype"], batch) for batch in pool]
        self.stop = stop
        # (start, end, error or None, the batch the server ran it in where it says)
        self.records: list[tuple[float, float, str | None, int | None]] = []

    def run(self) -> None:
        index, clock, send = 0, time.perf_counter, self.connection.send
        while not self.stop.is_set():
            prepared = self.pool[index % len(self.pool)]
            index += 1
            start = clock()
            ran_in = None
            try:
                ran_in = send(prepared)
                error = None
            except Exception as failure:  # noqa: BLE001 - every failed request is counted, with its reason
                error = _first(failure)
            self.records.append((start, clock(), error, ran_in))


def _server_split(before: dict, after: dict, done: list, batch: int) -> dict:
    """Per request, in ms: the server's queue and compute parts between two statistics (Triton's;
    counts that went down mean the model was loaded again in between: those since then); without
    statistics (Ray), inferences and executions from the batch each answer ran in."""
    if not before:
        answered = [r for r in done if r[2] is None and r[3]]
        return {
            "inferences": len(answered) * batch,
            "executions": round(sum(batch / r[3] for r in answered)),
        }
    if any(after[key] < before[key] for key in before):  # the model was loaded again: its counts restarted
        before = dict.fromkeys(before, 0)
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
    `Measurement` of the stable windows (see the module docstring); perf_analyzer's where
    `settings.generator` says so."""
    if settings.generator == "perf_analyzer":
        return _perf_analyzer_load(served, concurrency, batch, settings, seed)
    first, _, pool = _inputs(served, batch, seed, concurrency)
    stop = threading.Event()
    clients = [_Client(served, first, pool, stop) for _ in range(concurrency)]
    for client in clients:
        client.start()
    try:
        time.sleep(settings.warmup_seconds)
        statistics = served.connection()
        windows, ended = _windows(served, statistics.statistics, clients, batch, settings, progress)
    finally:
        stop.set()
        for client in clients:  # requests still in flight (a hung server) end now, uncounted
            client.connection.close()
        for client in clients:
            client.join(timeout=2)
    return _measurement(served, concurrency, batch, windows, ended)


def _perf_analyzer_load(served: ServedTarget, concurrency: int, batch: int, settings: LoadSettings, seed: int):
    """perf_analyzer at one concurrency (an images model gets PNGs through its input-data file)."""
    import base64
    import json
    import tempfile
    from pathlib import Path

    from . import perf_analyzer

    analyzer = perf_analyzer.find()
    if analyzer is None:
        raise MissingDependencyError("perf_analyzer is not installed here: python -m benchmark.perf_analyzer install")
    first, datatype, pool = _inputs(served, batch, seed)  # the model's own check: it is there, the batch fits
    name = first["name"]
    with tempfile.TemporaryDirectory(prefix="perf-analyzer-data-") as temporary:
        data = None
        if datatype == "BYTES":
            data = Path(temporary) / "images.json"
            # each item one image, as a serialized BYTES tensor (its length, then its bytes) in base64
            items = [{name: {"b64": base64.b64encode(payload("BYTES", b[:1])).decode()}} for b in pool]
            data.write_text(json.dumps({"data": items}))
        result = perf_analyzer.run(analyzer, served, concurrency, batch, settings, input_data=data)
    return perf_analyzer.to_measurement(result, served, concurrency, batch)


def _windows(served: ServedTarget, statistics, clients, batch: int, settings: LoadSettings, progress):
    """Measurement windows until the last `settings.windows` are stable, or three times as many;
    and why the run ended early (None: it did not). It ends when the server stops answering its
    statistics (gone, or hung past their timeout: the windows before count) or when every request
    of a window failed (the model broke: that window counts, with its failures); all windows
    measured are then kept."""
    windows: list[dict] = []
    since = time.perf_counter()  # a request sent during the warm-up is not measured, whenever it ends
    for index in range(settings.windows * 3):
        try:
            before, start = statistics(), time.perf_counter()
            time.sleep(settings.window_seconds)
            end, after = time.perf_counter(), statistics()
        except Exception as error:  # noqa: BLE001 - tritonclient's and the socket's exception types
            if _refused(error):  # the server answered: the model is gone (unloaded) or broken
                return windows, f"the server refused model {served.model}'s statistics ({_first(error)})"
            return windows, f"the server stopped answering ({_first(error)})"
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
        if done and not ok:
            return windows, f"every request of a window failed ({windows[-1]['failed'][0]})"
        if len(windows) >= settings.windows and _stable(windows[-settings.windows :], settings.tolerance):
            windows[-1]["stable"] = True
            break
    return windows[-settings.windows :], None


def _stable(windows: Sequence[dict], tolerance: float) -> bool:
    rates = [w["images_per_second"] for w in windows]
    mean = sum(rates) / len(rates)
    return mean > 0 and all(abs(rate - mean) <= tolerance * mean for rate in rates)


def _measurement(
    served: ServedTarget, concurrency: int, batch: int, windows: list[dict], ended: str | None = None
) -> Measurement:
    latencies = [ms for w in windows for ms in w["latencies_ms"]]
    failed = [reason for w in windows for reason in w["failed"]]
    if not latencies:
        raise ToolkitError(
            f"no request to {served.model} at {served.url} succeeded in {sum(w['seconds'] for w in windows):.1f} s"
            + (f" ({len(failed)} failed: {failed[0]})" if failed else "")
            + (f"; {ended}" if ended and not failed else "")
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
            "generator": "builtin",
            "ended": ended,
            "series": served.label,
            "point": f"c{concurrency}",
        },
    )


def _check_same_model(served: ServedTarget, target, given) -> None:
    """A `--vs` file must take the served model's input and give its classes (an images model,
    which takes encoded images, is compared by its classes alone)."""
    first, _ = _describe(served)
    runtime = target.runtime
    wanted, classes = list(runtime.input_shape[1:]), runtime.info.num_classes if runtime.info else None
    problems = []
    if first["datatype"] != "BYTES" and -1 not in first["dims"] and None not in wanted and first["dims"] != wanted:
        problems.append(f"it takes {wanted}, the served model {first['dims']}")
    if first.get("classes") and classes and first["classes"] != classes:
        problems.append(f"it gives {classes} classes, the served model {first['classes']}")
    if problems:
        raise ToolkitError(f"--vs {given} is not the served model {served.model}: {'; '.join(problems)}")


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

    target = None if vs is None else open_target(vs["target"], vs["options"])
    measured, local, run = [], [], None
    try:
        if target is not None:
            _check_same_model(served, target, vs["target"])
            for size in concurrency:
                target.runtime.check_batch(size * batch)  # before the server is loaded at all
        for size in concurrency:
            measured.append(measure_load(served, size, batch, settings, seed=seed, progress=progress))
            if measured[-1].extra.get("ended"):  # the server or the model went away: what was measured stands
                break
            if target is not None:
                loop = vs["loop"]
                run = run_benchmark(
                    [target], [size * batch], loop, measure_peak=False, threads=vs["options"].threads, seed=seed
                )
                local += run.measurements
    finally:
        if target is not None:
            target.runtime.close()
    if run is None:
        loop = LoopSettings(warmup_seconds=settings.warmup_seconds, duration=settings.window_seconds * settings.windows)
        return BenchmarkRun(describe_machine(None, "cpu"), loop, measured, [])
    return BenchmarkRun(run.machine, run.settings, measured + local, against_in_process(measured, local))
