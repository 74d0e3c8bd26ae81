"""The timing loop: warm-up, then timed iterations, optionally interleaved across targets.

On a CPU an iteration is one `runtime.run(batch)` timed with `time.perf_counter`. On a GPU
(`DeviceRuntime`) it is timed as trtexec does: CUDA events around the host-to-device copy, the
execution and the device-to-host copy give the three parts and the end-to-end latency; the host
time of the `execute` call is the enqueue time; with `data_transfers=False` only the execution
runs between the events. Inputs are random (not zeros): a small pool of distinct batches drawn
before timing, used in turn, in pinned host memory on a GPU.

Several targets at the same batch size are interleaved in turns (`LoopSettings.turn_seconds`, a
quarter of a second each), so that a machine that slows down or speeds up mid-run affects all of
them alike and their ratios hold. A turn starts with one untimed iteration: CPU runtimes keep
their worker threads spinning for a while after a run (ONNX Runtime's intra-op pool, OpenMP), and
the target that follows would otherwise be timed against them. Measured on the 2-core EPYC with
ResNet-50 INT8, OpenVINO right after ONNX Runtime, one iteration each in turn: 25.5 img/s at
batch 1 (62.6 when ONNX Runtime does not spin); in quarter-second turns it measures what it does
alone (docs/benchmark.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from deploy.runtimes.base import DeviceRuntime, Runtime
from toolkit.errors import ToolkitError
from toolkit.numbers import LIMITS, check_number

from .profile import Profile
from .stats import LatencyStats

INPUT_POOL = 4  # distinct random batches per target, used in turn


@dataclass(frozen=True)
class LoopSettings:
    """How long to warm up and to measure (per target and batch size). trtexec's defaults."""

    warmup_iterations: int | None = None
    warmup_seconds: float | None = 0.2
    iterations: int | None = None  # exactly this many, or else:
    duration: float = 3.0  # seconds of timed iterations, and
    min_iterations: int = 10  # at least this many
    data_transfers: bool = True
    turn_seconds: float = (
        0.25  # interleaved targets: each runs this long in turn (0: one iteration each, untimed settle off)
    )

    def __post_init__(self) -> None:
        most = LIMITS["iterations"][1]
        if self.warmup_iterations is not None:
            check_number(self.warmup_iterations, "warm-up iterations", low=0, high=most, integer=True)
        if self.iterations is not None:
            check_number(self.iterations, "iterations", low=1, high=most, integer=True)
        if self.warmup_seconds is not None:
            check_number(self.warmup_seconds, "warm-up seconds", limit="seconds")
        check_number(self.duration, "duration", low=0, low_open=True, high=LIMITS["seconds"][1])
        check_number(self.min_iterations, "minimum iterations", low=1, high=most, integer=True)
        check_number(self.turn_seconds, "turn seconds", low=0, high=60)


@dataclass
class Measurement:
    """One target at one batch size. Times in milliseconds, throughput per second."""

    label: str
    backend: str
    device: str
    description: str
    batch: int
    iterations: int
    warmup_iterations: int
    seconds: float  # wall time of the timed iterations
    latency: LatencyStats
    images_per_second: float
    batches_per_second: float
    h2d: LatencyStats | None = None
    compute: LatencyStats | None = None
    d2h: LatencyStats | None = None
    enqueue: LatencyStats | None = None
    flops_per_image: float | None = None
    achieved_tflops: float | None = None
    peak_tflops: float | None = None
    fraction_of_peak: float | None = None
    extra: dict = field(default_factory=dict)
    profile: Profile | None = None  # --profile: per-layer times

    def to_dict(self) -> dict:
        data = dict(self.__dict__)
        for key in ("latency", "h2d", "compute", "d2h", "enqueue", "profile"):
            data[key] = None if data[key] is None else data[key].to_dict()
        return data


class BatchTimer:
    """One target at one batch size: its inputs, and the samples gathered so far."""

    def __init__(self, label: str, runtime: Runtime, batch: int, *, data_transfers: bool = True, seed: int = 0) -> None:
        runtime.check_batch(batch)
        self.label, self.runtime, self.batch = label, runtime, batch
        self.on_device = isinstance(runtime, DeviceRuntime)
        if not data_transfers and not self.on_device:
            raise ToolkitError(f"--no-data-transfers applies to GPU runtimes; {label} runs on the CPU")
        self.data_transfers = data_transfers
        inputs = [runtime.random_input(batch, seed=seed + i) for i in range(INPUT_POOL)]
        self.inputs = [runtime.pinned_input(x) for x in inputs] if self.on_device else inputs
        self.samples: dict[str, list[float]] = {"latency": [], "h2d": [], "compute": [], "d2h": [], "enqueue": []}
        self.seconds = 0.0
        self.warmup_iterations = 0
        self._next = 0
        if self.on_device:
            import torch

            self._torch = torch
            self._events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
            if not data_transfers:
                runtime.copy_in(self.inputs[0])  # the device input holds real data throughout
                runtime.synchronize()

    def _input(self):
        x = self.inputs[self._next % len(self.inputs)]
        self._next += 1
        return x

    def iterate(self, record: bool = True) -> None:
        """One iteration; its times are kept when `record`."""
        if self.on_device:
            self._iterate_device(record)
            return
        x = self._input()
        start = time.perf_counter()
        self.runtime.run(x)
        elapsed = time.perf_counter() - start
        if record:
            self.samples["latency"].append(elapsed * 1e3)
            self.seconds += elapsed

    def _iterate_device(self, record: bool) -> None:
        runtime, stream = self.runtime, self.runtime.stream
        e0, e1, e2, e3 = self._events
        x = self._input()
        start = time.perf_counter()
        e0.record(stream)
        n = runtime.copy_in(x) if self.data_transfers else self.batch
        e1.record(stream)
        mark = time.perf_counter()
        runtime.execute(n)
        enqueue = time.perf_counter() - mark
        e2.record(stream)
        if self.data_transfers:
            runtime.copy_out(n)
        e3.record(stream)
        runtime.synchronize()
        elapsed = time.perf_counter() - start
        if record:
            s = self.samples
            s["latency"].append(e0.elapsed_time(e3))
            s["compute"].append(e1.elapsed_time(e2))
            s["enqueue"].append(enqueue * 1e3)
            if self.data_transfers:
                s["h2d"].append(e0.elapsed_time(e1))
                s["d2h"].append(e2.elapsed_time(e3))
            self.seconds += elapsed

    def warm_up(self, settings: LoopSettings) -> None:
        start = time.perf_counter()
        while True:
            done_iterations = (
                settings.warmup_iterations is not None and self.warmup_iterations >= settings.warmup_iterations
            )
            done_seconds = settings.warmup_iterations is None and (time.perf_counter() - start) >= (
                settings.warmup_seconds or 0
            )
            if done_iterations or done_seconds:
                break
            self.iterate(record=False)
            self.warmup_iterations += 1

    def done(self, settings: LoopSettings) -> bool:
        count = len(self.samples["latency"])
        if settings.iterations is not None:
            return count >= settings.iterations
        return count >= settings.min_iterations and self.seconds >= settings.duration

    def progress(self, settings: LoopSettings) -> float:
        count = len(self.samples["latency"])
        if settings.iterations is not None:
            return min(1.0, count / settings.iterations)
        return min(1.0, min(count / settings.min_iterations, self.seconds / settings.duration))

    def measurement(self) -> Measurement:
        s = self.samples
        count = len(s["latency"])
        stats = {k: LatencyStats.from_samples(v) if v else None for k, v in s.items()}
        return Measurement(
            label=self.label,
            backend=self.runtime.backend,
            device=self.runtime.device,
            description=self.runtime.describe(),
            batch=self.batch,
            iterations=count,
            warmup_iterations=self.warmup_iterations,
            seconds=self.seconds,
            latency=stats["latency"],
            images_per_second=self.batch * count / self.seconds,
            batches_per_second=count / self.seconds,
            h2d=stats["h2d"],
            compute=stats["compute"],
            d2h=stats["d2h"],
            enqueue=stats["enqueue"],
            extra={"settings": self.runtime.settings()},
        )


def run_timers(
    timers: Sequence[BatchTimer], settings: LoopSettings, progress: Callable[[BatchTimer, float], None] | None = None
) -> list[Measurement]:
    """Warm up each timer, then time them interleaved in turns (see the module docstring): each
    turn one untimed iteration, then timed ones for `settings.turn_seconds` (at least one)."""
    for timer in timers:
        timer.warm_up(settings)
    pending = list(timers)
    settle = len(timers) > 1 and settings.turn_seconds > 0
    while pending:
        for timer in pending:
            if settle:
                timer.iterate(record=False)
            started = time.perf_counter()
            while True:
                timer.iterate()
                if progress is not None:
                    progress(timer, timer.progress(settings))
                if timer.done(settings) or time.perf_counter() - started >= settings.turn_seconds:
                    break
        pending = [t for t in pending if not t.done(settings)]
    return [t.measurement() for t in timers]
