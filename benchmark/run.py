"""`benchmark_models`, the function behind `resnet-bench` (open the targets, measure, profile, choose
a batch for a budget), and `run_benchmark`, which measures targets x batch sizes and compares them."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from deploy.runtimes import RuntimeOptions, backend_of
from resnet.registry import ModelOptions
from toolkit.errors import ToolkitError
from toolkit.files import sha256_file
from toolkit.numbers import check_memory, check_number

from .environment import describe_machine, measure_matmul_tflops
from .harness import INPUT_POOL, BatchTimer, LoopSettings, run_timers
from .profile import profile_runtime
from .report import BenchmarkRun, compare
from .sla import choose_batch
from .targets import PYTORCH_WORD, Target, flops_per_image, open_target


def peak_key(target: Target) -> tuple[str, str] | None:
    """(device, arithmetic) whose matmul rate is this target's peak, or None where no matrix
    product of that arithmetic gives one (INT8 on a CPU). On a CPU: BF16 where the backend computes
    in it (OpenVINO, PyTorch), else FP32 (ONNX Runtime computes FP16 graphs in FP32 there); on a GPU,
    FP32 may use TF32."""
    device = target.runtime.device.split(":")[0]
    if device == "cpu":
        arithmetic = str(target.runtime.settings().get("precision") or "fp32")
        if arithmetic.startswith("int8") or (target.info is not None and target.info.precision == "int8"):
            return None
        return ("cpu", "bf16" if arithmetic == "bf16" else "fp32")
    precision = getattr(target.runtime, "precision", None) or (target.info.precision if target.info else "fp32")
    return (target.runtime.device, {"fp16": "fp16", "bf16": "bf16"}.get(precision, "tf32"))


def host_memory(target: Target, batch: int) -> float:
    """A rough estimate of the host memory a target needs at `batch`: its pool of random inputs
    (`INPUT_POOL` batches, float32 before conversion) and, on the CPU, a few of the model's
    largest activations alive at once (none when the file has no architecture recorded)."""
    runtime = target.runtime
    image = math.prod(runtime.input_shape[1:])
    needed = batch * image * 4 * (INPUT_POOL + 1)
    info = target.info
    if runtime.device == "cpu" and info is not None:
        spec = info.input_spec
        needed += batch * 4 * 4 * info.architecture.largest_activation(spec.height, spec.width)
    return needed


def run_benchmark(
    targets: Sequence[Target],
    batches: Sequence[int],
    settings: LoopSettings = LoopSettings(),
    *,
    peak_tflops: float | None = None,
    measure_peak: bool = True,
    threads: int | None = None,
    seed: int = 0,
    progress: Callable[[BatchTimer, float], None] | None = None,
) -> BenchmarkRun:
    """Measure every target at every batch size (targets interleaved), then add FLOP rates,
    the fraction of peak (`peak_tflops`, or a measured matmul rate) and the ratios of the first
    target to the others. Every target needs its own label (`unique_labels`)."""
    labels = [t.label for t in targets]
    shared = next((label for label in labels if labels.count(label) > 1), None)
    if shared is not None:
        raise ToolkitError(f"two targets share the label {shared!r}; give each its own")
    for batch in batches:  # all batch sizes checked before anything runs
        for target in targets:
            target.runtime.check_batch(batch)
            check_memory(host_memory(target, batch), f"batch {batch} of {target.label}", "lower --batch")
    device = next((t.runtime.device for t in targets if t.runtime.device != "cpu"), "cpu")
    machine = describe_machine(threads, device)
    machine.int8_path = next((path for t in targets if (path := t.runtime.int8_path()) is not None), None)
    keys = [key for key in dict.fromkeys(peak_key(t) for t in targets) if key is not None]
    peaks: dict[tuple[str, str], tuple[float, str]] = {}
    if peak_tflops is not None:
        peaks = {key: (peak_tflops, "--peak-tflops") for key in keys}
    elif measure_peak:  # measured before and after the runs; the better one counts (shared machines drift)
        peaks = {key: measure_matmul_tflops(key[0], key[1], threads=threads) for key in keys}
    measurements = []
    for batch in batches:
        try:
            timers = [
                BatchTimer(t.label, t.runtime, batch, data_transfers=settings.data_transfers, seed=seed)
                for t in targets
            ]
            measurements += run_timers(timers, settings, progress)
        except Exception as error:  # noqa: BLE001 - torch's OutOfMemoryError, where torch runs the target
            if type(error).__name__ != "OutOfMemoryError":
                raise
            raise ToolkitError(f"batch {batch} does not fit in the GPU's memory; lower --batch") from None
    if peak_tflops is None and measure_peak:
        peaks = {key: max(peaks[key], measure_matmul_tflops(key[0], key[1], threads=threads)) for key in keys}
    if peaks:
        machine.peak_tflops, machine.peak_source = peaks.get(peak_key(targets[0])) or next(iter(peaks.values()))
    # Each measurement's target, by its label (every target has its own: checked above).
    figures = {t.label: (flops_per_image(t.info), peaks.get(peak_key(t), (None, ""))[0]) for t in targets}
    for m in measurements:
        flops, peak = figures[m.label]
        m.flops_per_image = flops
        if flops is not None:
            m.achieved_tflops = flops * m.images_per_second / 1e12
            if peak:
                m.peak_tflops = peak
                m.fraction_of_peak = m.achieved_tflops / peak
    return BenchmarkRun(machine, settings, measurements, compare(measurements))


def _sla_choice(run, label: str, target: str | None, budget_ms: float):
    """The best batch for the budget, with the measured file's checksum (what `--sla-from` checks)."""
    choice = choose_batch(run.measurements, label, budget_ms)
    if target is not None and Path(target).is_file():
        choice.model_sha256 = sha256_file(target)
    return choice


def benchmark_models(
    target: str | None,
    other: str | None,
    batches: Sequence[int] | None,
    options: RuntimeOptions = RuntimeOptions(),
    settings: LoopSettings = LoopSettings(),
    *,
    model: ModelOptions | None = None,
    peak_tflops: float | None = None,
    measure_peak: bool = True,
    seed: int = 0,
    progress: Callable[[BatchTimer, float], None] | None = None,
    profile: bool = False,
    sla_p99_ms: float | None = None,
) -> BenchmarkRun:
    """What `resnet-bench TARGET --vs OTHER` does: open the target (a file, or the registered
    `model` in PyTorch when `target` is None) and the other one (a file, on its own backend in
    FP32, or "pytorch": the target's architecture in PyTorch, in `options.precision`), measure
    both over `batches` (default: an engine's opt batch, else 1) with `run_benchmark`, and close
    them. `profile`: each measurement then carries its per-layer times (`benchmark.profile`);
    `sla_p99_ms`: the run carries the best batch for that p99 budget (`benchmark.sla`)."""
    options = replace(options, layer_times=True) if profile else options
    targets = [open_target(target, options, model=model)]
    try:
        if other is not None:
            # --backend and --precision are the first target's: a --vs file runs on its own backend
            # in FP32, and "pytorch" computes in the first target's precision (like with like); each
            # takes the options its backend uses (the others were the first target's).
            if other == PYTORCH_WORD:
                own = options.honoured_by("pytorch")
            else:
                own = replace(options, backend=None, precision="fp32").honoured_by(backend_of(other))
            targets.append(open_target(other, own, like=targets[0], model=model))
        unique_labels(targets, [target, other])
        if batches is None:
            engine_batches = getattr(targets[0].runtime, "batches", None)
            batches = [engine_batches.opt] if engine_batches is not None else [1]
        if sla_p99_ms is not None:
            check_number(sla_p99_ms, "--sla-p99-ms", low_open=True, limit="milliseconds")
        run = run_benchmark(
            targets,
            batches,
            settings,
            peak_tflops=peak_tflops,
            measure_peak=measure_peak,
            threads=options.threads,
            seed=seed,
            progress=progress,
        )
        if profile:  # after the timed runs, each target at each batch through its backend's profiler
            by_label = {t.label: t for t in targets}
            for measurement in run.measurements:
                runtime = by_label[measurement.label].runtime
                measurement.profile = profile_runtime(runtime, measurement.batch, seed=seed)
        if sla_p99_ms is not None:
            run.sla = _sla_choice(run, targets[0].label, target, sla_p99_ms)
        return run
    finally:
        for opened in targets:
            opened.runtime.close()


def unique_labels(targets: Sequence[Target], names: Sequence[str | None]) -> None:
    """Give targets whose labels collide labels of their own: the path as given (a/model.onnx and
    c/model.onnx), and a number for the same file twice."""
    labels = [t.label for t in targets]
    for index, target in enumerate(targets):
        if labels.count(target.label) > 1 and names[index] and Path(names[index]).name in target.label:
            target.label = target.label.replace(Path(names[index]).name, str(names[index]), 1)
    seen: dict[str, int] = {}
    for target in targets:
        seen[target.label] = seen.get(target.label, 0) + 1
        if seen[target.label] > 1:
            target.label = f"{target.label} #{seen[target.label]}"
