"""Numerical comparison of an artifact with the PyTorch model it came from.

The candidate runs through `deploy`'s runtimes (the same classes the Predictor and the benchmark
use), on several random batches; the reference is the PyTorch model in FP32, eval mode. What
counts as passing depends on the precision of the artifact, decided in one place
(`criterion_for`, which returns a `Criterion`):

- FP32: every logit within `atol x scale + rtol x |reference|`, where scale is the largest
  |logit| of the reference (so the tolerance follows the logits' magnitude). Default atol 1e-4.
- FP16: minimum per-sample cosine similarity >= 0.999 and top-1 agreement >= 99%, and, when
  the reference is the PyTorch model, every intermediate activation within FP16's range
  (65504; a failure names the first module beyond it, and the block that holds it). ONNX
  Runtime on a CPU computes an FP16 graph in FP32 (its logits equal those of the
  graph with the same weights in FP32, bit for bit), so on a CPU the comparison measures the
  weight rounding; an activation that overflows FP16 on a GPU must be caught from the range.
  On a GPU (`validation_device`: ONNX Runtime's CUDA provider) FP16 arithmetic itself is
  checked, and the report says which device validated.
- FP32 on a GPU (and TF32 engines): judged like FP16 (cosine and top-1), because cuDNN may use
  TF32 tensor cores for FP32 convolutions.
- INT8 against the FP32 model: random inputs lie outside the calibration range, so only finite
  outputs are required (the agreement is reported); accuracy on real images (`check_accuracy`,
  `--eval`) decides. An INT8 engine against its own Q/DQ file in ONNX Runtime: like FP16.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from deploy.runtimes.base import Runtime
from toolkit.errors import ToolkitError
from toolkit.numbers import check_number, shown_apart
from toolkit.precision import FP16_MAX


@dataclass(frozen=True)
class Thresholds:
    atol: float = 1e-4  # FP32: in units of the logits' scale (largest |logit|)
    rtol: float = 0.0  # FP32: relative to each reference logit
    min_cosine: float = 0.999  # FP16
    min_top1: float = 0.99  # FP16
    max_top1_drop: float = 1.0  # accuracy on real images (--eval): points of top-1 the file may lose

    def __post_init__(self) -> None:
        for name in ("atol", "rtol"):
            object.__setattr__(self, name, check_number(getattr(self, name), name, low=0))
        object.__setattr__(self, "max_top1_drop", check_number(self.max_top1_drop, "max-top1-drop", low=0, high=100))
        for name in ("min_cosine", "min_top1"):
            object.__setattr__(self, name, check_number(getattr(self, name), name.replace("_", "-"), low=0, high=1))


@dataclass
class Check:
    """One figure against its limit, e.g. cosine 0.9991 >= 0.999."""

    name: str
    value: float
    relation: str  # "<=" or ">="
    limit: float
    passed: bool
    where: str = ""  # which layer, when the figure is one layer's (the FP16 range: the first module beyond it)

    def __str__(self) -> str:
        value, limit = f"{self.value:.6g}", f"{self.limit:.6g}"
        if value == limit and self.value != self.limit:  # as many digits as it takes to tell them apart
            value, limit = shown_apart(self.value, self.limit)
        return f"{self.name} {value} (must be {self.relation} {limit})" + (f", {self.where}" if self.where else "")


@dataclass
class ValidationReport:
    """Figures of one comparison; `failures` names each figure that missed its threshold."""

    reference: str
    candidate: str
    precision: str
    batch_sizes: list[int]
    samples: int
    max_abs_error: float
    max_rel_error: float  # over logits with |reference| >= 1% of the scale
    logits_scale: float  # largest |reference logit|
    scaled_error: float  # max_abs_error / logits_scale
    cosine: float  # smallest per-sample cosine similarity
    top1_agreement: float
    top5_agreement: float  # fraction of samples whose top-5 sets are equal
    activation_peak: float | None = None  # largest |activation| inside the PyTorch model, when measured
    beyond_fp16: list[str] = field(default_factory=list)  # modules whose output exceeded FP16's range, in order
    checks: list[Check] = field(default_factory=list)
    device: str = "cpu"  # where the candidate ran
    notes: list[str] = field(default_factory=list)  # what the comparison could not exercise
    accuracy: dict | None = None  # on real images (--eval): both top-1s, the drop, agreement

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[str]:
        return [str(check) for check in self.checks if not check.passed]

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed, "failures": self.failures}

    def summary(self) -> str:
        return (
            f"{self.samples} images in batches of {', '.join(map(str, self.batch_sizes))}: "
            f"max abs error {self.max_abs_error:.3g} ({self.scaled_error:.2g} of logit scale {self.logits_scale:.3g}), "
            f"max rel error {self.max_rel_error:.3g}, cosine {self.cosine:.7f}, "
            f"top-1 {self.top1_agreement:.1%}, top-5 {self.top5_agreement:.1%}"
            + (f", activation peak {self.activation_peak:.3g}" if self.activation_peak is not None else "")
        )


class ValidationFailed(ToolkitError):
    """An artifact whose outputs do not match the reference; `.report` has the figures."""

    def __init__(self, report: ValidationReport, what: str = "the model") -> None:
        self.report = report
        self.exported = None  # export_onnx(engine=...): the report of the ONNX file, written before the engine failed
        super().__init__(f"validation of {what} failed: {'; '.join(report.failures)}")


@dataclass(frozen=True)
class Criterion:
    """How a candidate's logits are judged against the reference's (chosen by `criterion_for`)."""

    name: str  # recorded as the report's "precision": fp32, tf32, fp16, int8, int8 engine
    elementwise: bool = False  # every logit within atol x scale + rtol x |reference|
    agreement: bool = False  # smallest cosine and top-1 agreement
    fp16_range: bool = False  # the reference model's activations within FP16's range, when measured
    note: str | None = None  # what such a comparison cannot show


INT8_RANDOM_NOTE = (
    "an INT8 file was compared with the FP32 model on random inputs only (agreement, not accuracy); "
    "pass --eval DIR, a folder of labelled images, to check its accuracy"
)
CRITERIA = {
    c.name: c
    for c in (
        Criterion("fp32", elementwise=True),
        Criterion("tf32", agreement=True),  # FP32 where tensor cores may compute in TF32
        Criterion("fp16", agreement=True, fp16_range=True),
        # BF16 (OpenVINO or PyTorch on a CPU with AVX512_BF16 or AMX): FP32's range with 8 bits of
        # mantissa, so judged by agreement as FP16 is, with no range to check.
        Criterion(
            "bf16", agreement=True, note="BF16 arithmetic was exercised (8-bit mantissa, FP32's range), not FP16's"
        ),
        # Random inputs lie far outside the calibration range, so agreement on them says little
        # about INT8: it is reported, and judged on real images (`check_accuracy`).
        Criterion("int8", note=INT8_RANDOM_NOTE),
        Criterion("int8 engine", agreement=True),  # an INT8 engine against its own Q/DQ file
        # resnet-compare: two INT8 files in the same runtime compute the same integer arithmetic,
        # and INT8 against a float model on real images is judged by agreement, layer by layer.
        Criterion("int8 same arithmetic", elementwise=True),
        Criterion("int8 on images", agreement=True),
    )
}


def criterion_for(
    reference: str, candidate: str, *, same_arithmetic: bool = False, gpu: bool = False, real_images: bool = False
) -> Criterion:
    """The one choice of how a candidate of precision `candidate` is judged against a reference of
    precision `reference` (logits, or each layer's output in `export.compare`): FP16 or BF16 on
    either side by agreement and FP16's range; two INT8 models elementwise when they compute the same
    Q/DQ arithmetic in one runtime (`same_arithmetic`), else by agreement (an engine against its
    file); INT8 against a float model by agreement on real images (`real_images`), by finite values
    only on random ones (they lie outside the calibration range); FP32 elementwise, or by agreement
    where it may compute in TF32 (`gpu`)."""
    precisions = {reference, candidate}
    for reduced in ("fp16", "bf16"):
        if reduced in precisions:
            return CRITERIA[reduced]
    if precisions == {"int8"}:
        return CRITERIA["int8 same arithmetic" if same_arithmetic else "int8 engine"]
    if "int8" in precisions:
        return CRITERIA["int8 on images" if real_images else "int8"]
    if precisions != {"fp32"}:
        raise ToolkitError(f"no validation criterion for {candidate} against {reference}")
    return CRITERIA["tf32" if gpu else "fp32"]


def tensor_checks(
    criterion: Criterion, thresholds: Thresholds, *, error_of_scale: float, cosine: float, peak: float
) -> list[Check]:
    """The checks of one intermediate tensor (a layer's output), by the same criterion and
    thresholds as the logits: elementwise (error in units of the tensor's largest |value|, atol;
    rtol does not apply), agreement (smallest per-image cosine; top-1 is the logits' alone), the
    FP16 range (`peak`, the larger |value| of either side), or finite values."""
    finite = bool(np.isfinite(error_of_scale) and np.isfinite(cosine))
    checks = []
    if criterion.elementwise:
        atol = thresholds.atol
        checks.append(Check("max-error/scale", error_of_scale, "<=", atol, finite and error_of_scale <= atol))
    if criterion.agreement:
        low = thresholds.min_cosine
        checks.append(Check("cosine", cosine, ">=", low, finite and cosine >= low))
    if criterion.fp16_range:
        checks.append(Check("activation-peak", peak, "<=", FP16_MAX, bool(peak <= FP16_MAX)))
    if not checks:
        checks.append(Check("finite values", float(finite), ">=", 1.0, finite))
    return checks


def compare_logits(
    reference: np.ndarray,
    candidate: np.ndarray,
    *,
    criterion: Criterion,
    thresholds: Thresholds = Thresholds(),
    reference_name: str = "reference",
    candidate_name: str = "candidate",
    batch_sizes: Sequence[int] = (),
    activation_peak: float | None = None,
    beyond_fp16: Sequence[str] = (),
) -> ValidationReport:
    """The figures of `candidate` logits against `reference` logits (N, classes), and the checks
    `criterion` asks for. `activation_peak`, the largest |activation| the reference model
    produced, is checked against FP16's range where the criterion says so; `beyond_fp16` names
    the modules whose output exceeded it, in the order they ran (the failure names the first)."""
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(candidate, dtype=np.float64)
    if ref.shape != out.shape:
        raise ToolkitError(f"output shapes differ: reference {ref.shape}, candidate {out.shape}")
    if not np.isfinite(ref).all():
        raise ToolkitError(
            f"the {reference_name} logits are not finite (NaN or inf) on random inputs, so there is nothing to "
            "compare against; the weights overflow (a randomly initialised very deep model does), or pass --no-validate"
        )
    report = ValidationReport(
        reference=reference_name,
        candidate=candidate_name,
        precision=criterion.name,
        batch_sizes=list(batch_sizes),
        activation_peak=activation_peak,
        beyond_fp16=list(beyond_fp16),
        **_figures(ref, out),
    )
    report.checks += _checks(criterion, thresholds, report, np.abs(out - ref), ref)
    if criterion.note:
        report.notes.append(criterion.note)
    return report


def _figures(ref: np.ndarray, out: np.ndarray) -> dict:
    """Errors, cosine and agreement of `out` against `ref` (the `ValidationReport` figures)."""
    finite = bool(np.isfinite(out).all())
    diff = np.abs(out - ref)
    scale = float(np.abs(ref).max()) or 1.0
    significant = np.abs(ref) >= 0.01 * scale
    max_rel = float((diff[significant] / np.abs(ref[significant])).max()) if significant.any() else 0.0
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cosine = float(np.min(np.sum(ref * out, axis=1) / np.where(norms == 0, 1.0, norms))) if finite else float("nan")
    k = min(5, ref.shape[1])
    ref_top = np.sort(np.argsort(-ref, axis=1)[:, :k], axis=1)
    out_top = np.sort(np.argsort(-out, axis=1)[:, :k], axis=1)
    max_abs = float(diff.max()) if finite else float("inf")
    return {
        "samples": int(ref.shape[0]),
        "max_abs_error": max_abs,
        "max_rel_error": max_rel if finite else float("inf"),
        "logits_scale": scale,
        "scaled_error": max_abs / scale,
        "cosine": cosine,
        "top1_agreement": float(np.mean(ref.argmax(1) == out.argmax(1))),
        "top5_agreement": float(np.mean(np.all(ref_top == out_top, axis=1))),
    }


def _checks(
    criterion: Criterion, thresholds: Thresholds, report: ValidationReport, diff: np.ndarray, ref: np.ndarray
) -> list[Check]:
    finite = bool(np.isfinite(report.max_abs_error))
    checks = []
    if criterion.elementwise:
        # Elementwise, as numpy.allclose: |error| <= atol * scale + rtol * |reference|. The figure
        # shown is the error in units of the scale, which is the whole test when rtol is 0.
        scale = report.logits_scale
        within = finite and bool(np.all(diff <= thresholds.atol * scale + thresholds.rtol * np.abs(ref)))
        name = "max-error/scale" if not thresholds.rtol else f"max-error/scale (rtol {thresholds.rtol:g})"
        checks.append(Check(name, report.scaled_error, "<=", thresholds.atol, within))
    if criterion.agreement:
        cosine, top1 = report.cosine, report.top1_agreement
        checks.append(Check("cosine", cosine, ">=", thresholds.min_cosine, finite and cosine >= thresholds.min_cosine))
        checks.append(Check("top-1 agreement", top1, ">=", thresholds.min_top1, top1 >= thresholds.min_top1))
    if criterion.fp16_range and report.activation_peak is not None:
        peak = report.activation_peak
        checks.append(Check("activation-peak", peak, "<=", FP16_MAX, peak <= FP16_MAX, _where(report.beyond_fp16)))
    if not checks:  # nothing to compare closely: the outputs must at least be numbers
        checks.append(Check("finite outputs", float(finite), ">=", 1.0, finite))
    return checks


def _where(beyond: Sequence[str]) -> str:
    """Where the activations first left FP16's range: "first in layer2.1.bn2 (block layer2.1), then 9 more modules"."""
    if not beyond:
        return ""
    first, parts = beyond[0], beyond[0].split(".")
    where = f"first in {first}" + (
        f" (block {parts[0]}.{parts[1]})" if first.startswith("layer") and len(parts) > 2 else ""
    )
    more = len(beyond) - 1
    return where + (f", then {more} more module{'s' if more > 1 else ''}" if more else "")


VALIDATION_DEVICES = ("auto", "cpu", "cuda")


def check_accuracy(report: ValidationReport, evaluation, thresholds: Thresholds) -> None:
    """Add the accuracy of the file on real images (a `deploy.evaluate.Evaluation` with the
    PyTorch FP32 model as its reference) and the check that it loses at most
    `thresholds.max_top1_drop` points of top-1."""
    drop = 100.0 * (evaluation.reference_top1 - evaluation.top1)
    report.accuracy = {
        "data": evaluation.data,
        "images": evaluation.images,
        "unreadable": len(evaluation.unreadable),
        "reference_top1": evaluation.reference_top1,
        "top1": evaluation.top1,
        "top1_drop_points": drop,
        "top1_agreement": evaluation.top1_agreement,
        "max_probability_difference": evaluation.max_probability_difference,
        "int8_path": evaluation.int8_path,
    }
    report.notes = [note for note in report.notes if note != INT8_RANDOM_NOTE]
    chance = 1.0 / evaluation.classes if evaluation.classes else 0.0
    if evaluation.reference_top1 <= 2 * chance:  # the folders can't be the model's classes, in its order
        report.notes.append(
            f"PyTorch's own top-1 on {evaluation.data} is {evaluation.reference_top1:.1%}, near chance "
            f"({chance:.1%} for {evaluation.classes} classes): the class folders may not be the model's classes in "
            "its order (name them after its labels), or the weights are not trained, so this comparison says little"
        )
    report.checks.append(
        Check("top-1 drop (points)", drop, "<=", thresholds.max_top1_drop, drop <= thresholds.max_top1_drop)
    )


FP16_ON_CPU_NOTE = (
    "FP16 arithmetic itself was not exercised: ONNX Runtime on a CPU computes an FP16 graph in FP32, so this "
    "checked the FP16 rounding of the weights and the activation range; validate on a GPU (--validate-on cuda) for the arithmetic"
)


def validation_device(validate_on: str, precision: str) -> str:
    """Where ONNX Runtime validates an export: "cpu" or "cuda".

    "auto" is CUDA for FP16 graphs where ONNX Runtime's automatic choice is CUDA (a GPU is here
    and its CUDA provider can run: `deploy.runtimes.default_provider`), since it computes them in
    FP16 where a CPU computes them in FP32; else the CPU. "cuda" insists, with one sentence naming
    what is missing when it can't run.
    """
    from deploy.runtimes.onnxruntime import default_provider, require_provider

    if validate_on not in VALIDATION_DEVICES:
        raise ToolkitError(f"--validate-on must be one of {', '.join(VALIDATION_DEVICES)}, got {validate_on!r}")
    if validate_on == "cuda":
        return require_provider("cuda")
    if validate_on == "cpu":
        return "cpu"
    return "cuda" if precision == "fp16" and default_provider() == "cuda" else "cpu"


def validation_batches(example_batch: int, dynamic_batch: bool) -> list[int]:
    """Batch sizes to validate with: 1, the example batch and another one when the batch is
    dynamic (so the symbolic axis is exercised); three batches of the fixed size otherwise."""
    if not dynamic_batch:
        return [example_batch] * 3
    return [1, example_batch, example_batch + 3]


def reference_logits(model, batches: Sequence[np.ndarray]) -> tuple[np.ndarray, float, list[str]]:
    """The PyTorch model's FP32 eval-mode logits for `batches`, concatenated, the largest |value|
    any of its modules produced on the way, and the leaf modules whose output exceeded FP16's
    range, in the order they first ran. The model's mode is restored afterwards."""
    import torch

    peak, beyond = 0.0, {}

    def recorder(name: str, leaf: bool):
        def record(module, inputs, output):
            nonlocal peak
            if isinstance(output, torch.Tensor) and output.numel():
                largest = float(output.detach().abs().max())
                peak = max(peak, largest)
                if leaf and largest > FP16_MAX:
                    beyond.setdefault(name, largest)

        return record

    handles = [
        m.register_forward_hook(recorder(name, not any(True for _ in m.children())))
        for name, m in model.named_modules()
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            outputs = [
                model(torch.from_numpy(np.asarray(b, dtype=np.float32)).to(device)).float().cpu().numpy()
                for b in batches
            ]
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return np.concatenate(outputs), peak, list(beyond)


def _compare_on_random_batches(
    reference_fn,
    reference_name: str,
    runtime: Runtime,
    *,
    criterion: Criterion,
    batch_sizes: Sequence[int],
    thresholds: Thresholds,
    seed: int,
) -> ValidationReport:
    """`reference_fn(batches)` gives (logits, activation peak or None, modules beyond FP16's range)."""
    batches = [runtime.random_input(n, seed=seed + i).astype(np.float32) for i, n in enumerate(batch_sizes)]
    candidate = np.concatenate([runtime.run(b) for b in batches])
    reference, peak, beyond = reference_fn(batches)
    return compare_logits(
        reference,
        candidate,
        activation_peak=peak,
        beyond_fp16=beyond,
        criterion=criterion,
        thresholds=thresholds,
        reference_name=reference_name,
        candidate_name=runtime.describe(),
        batch_sizes=batch_sizes,
    )


def validate_runtime(
    model,
    runtime: Runtime,
    *,
    criterion: Criterion,
    batch_sizes: Sequence[int],
    thresholds: Thresholds = Thresholds(),
    seed: int = 0,
) -> ValidationReport:
    """Run `runtime` and the PyTorch `model` (FP32, eval) on the same random batches and compare."""
    return _compare_on_random_batches(
        lambda batches: reference_logits(model, batches),
        "pytorch fp32 (eval)",
        runtime,
        criterion=criterion,
        batch_sizes=batch_sizes,
        thresholds=thresholds,
        seed=seed,
    )


def compare_runtimes(
    reference: Runtime,
    runtime: Runtime,
    *,
    criterion: Criterion,
    batch_sizes: Sequence[int],
    thresholds: Thresholds = Thresholds(),
    seed: int = 0,
) -> ValidationReport:
    """Run `runtime` and a `reference` runtime (an FP32 ONNX in ONNX Runtime, say) on the same
    random batches and compare."""
    return _compare_on_random_batches(
        lambda batches: (np.concatenate([reference.run(b) for b in batches]), None, []),
        reference.describe(),
        runtime,
        criterion=criterion,
        batch_sizes=batch_sizes,
        thresholds=thresholds,
        seed=seed,
    )
