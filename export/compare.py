"""Where a conversion loses accuracy: two models compared layer by layer (`resnet-compare`).

Validation says whether a file's logits moved too far; this says where. Every intermediate
tensor that is a module's output is captured on both sides, matched by module name (the ONNX
writer names nodes and tensors after the modules: `layer2.0.conv1`, `layer2.0.downsample.pad`),
and compared on the same inputs, in network order (`Architecture.module_points`). Each side is a
`Runtime` opened with those points as named outputs (`RuntimeOptions(outputs=...)`); how a backend
finds them is its own:

- PyTorch (a checkpoint, or a `ResNet`): forward hooks, in FP32 on the CPU. A convolution's
  point is its BatchNorm's output (the file folds BatchNorm into the convolution), a block's
  `add` the input of its last ReLU, a block's `relu` its output.
- ONNX (FP32, FP16, INT8 Q/DQ for either target): a temporary copy of the file lists each
  point's tensor as an extra graph output, run in ONNX Runtime. In a Q/DQ file the tensor
  observed is the dequantized one after the point's QuantizeLinear (what the next layer reads);
  points that the quantizer fused away (for the "cpu" target a convolution and its ReLU become
  one tensor, named after the ReLU) are absent from that file and listed as unmatched.
- A TensorRT engine: rebuilt from the ONNX file its manifest names, with the same points marked
  as network outputs, on this GPU. Marking outputs stops TensorRT from fusing across them, so
  those figures are of that rebuilt engine, which computes like the shipped one layer by layer
  but not bit for bit (the report says so).

Each layer is judged by the criterion validation uses for the pair (`export.validate.criterion_for`)
with the same `Thresholds`: elementwise (error in units of that tensor's largest |value|) or by
agreement (cosine), plus FP16's range for FP16. The first layer, in network order, that misses
it is named; everything before it is within tolerance.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from deploy.artifacts import read_onnx_info
from deploy.artifacts.metadata import ModelInfo
from deploy.runtimes import Runtime, RuntimeOptions, backend_of, open_runtime
from resnet.architecture import stage_of
from toolkit.errors import ToolkitError
from toolkit.files import input_file, notice
from toolkit.numbers import check_memory, check_number
from toolkit.optional import require
from toolkit.precision import FP16_MAX

from .validate import Check, Thresholds, criterion_for, tensor_checks

DEFAULT_BATCH = 8
DEFAULT_RANDOM = 16
DEFAULT_MAX_IMAGES = 64  # --images: read at most this many
RANDOM_INT8_NOTE = (
    "INT8 against a float model on random inputs, which lie outside the calibration range: layers are judged by "
    "finite values only; pass --images DIR (real images) to judge them by cosine"
)


# ---- the sides -------------------------------------------------------------------------------


@dataclass
class _Side:
    """One side of a comparison: a runtime opened with the module points as named outputs
    (`RuntimeOptions.outputs`), what it is called in the report, and what the report must say of it."""

    runtime: Runtime
    name: str
    precision: str
    notes: tuple[str, ...] = ()
    folder: tempfile.TemporaryDirectory | None = None  # where an engine was rebuilt with its layers as outputs

    @property
    def info(self) -> ModelInfo:
        return self.runtime.info

    def close(self) -> None:
        self.runtime.close()
        if self.folder is not None:
            self.folder.cleanup()


def open_side(model, *, provider: str | None = None, threads: int | None = None) -> _Side:
    """The side for `model`: a `ResNet`, or a file by its suffix: a checkpoint (.pt, .pth: PyTorch,
    FP32, eval, CPU), an ONNX file (ONNX Runtime), an engine (.plan, .engine: rebuilt from the
    ONNX file its manifest names with every point marked as an output, `export.engine_taps.build_tapped`;
    needs TensorRT and the GPU the engine is for). Every side is opened with the model's module
    points (`Architecture.module_points`) as named outputs."""
    name = "pytorch fp32 (eval)"
    if isinstance(model, (str, bytes, os.PathLike)):
        path = input_file(model, "model file", "a model file (.onnx, .plan, .engine, .pt, .pth)")
        backend = backend_of(path)
        if backend == "tensorrt":
            return _engine_side(path)
        if backend == "onnxruntime":
            info = read_onnx_info(path)
            if info is None:
                raise ToolkitError(f"{path.name} has no resnet-export metadata, so its layers can't be named")
            options = RuntimeOptions(provider=provider, threads=threads, outputs=info.architecture.module_points())
            runtime = open_runtime(path, options)
            return _Side(runtime, f"{path.name} ({info.precision}, onnxruntime {runtime.provider})", info.precision)
        from resnet.checkpoint import load_model

        model, name = load_model(path), f"{path.name} (pytorch fp32, eval)"
    if not hasattr(model, "architecture"):
        raise ToolkitError(f"a side is a resnet.ResNet or a model file path, got {type(model).__name__}")
    points = model.architecture.module_points()
    return _Side(open_runtime(model, RuntimeOptions(device="cpu", outputs=points)), name, "fp32")


def _engine_side(path: Path) -> _Side:
    from deploy.artifacts.manifest import read_manifest

    from .engine_taps import build_tapped

    manifest = read_manifest(path)
    if manifest is None or manifest.model is None:
        raise ToolkitError(f"{path.name} has no resnet-build manifest naming its ONNX file, so it can't be tapped")
    points = manifest.model.architecture.module_points()
    folder = tempfile.TemporaryDirectory(prefix="resnet-compare-")
    try:
        rebuilt, source = build_tapped(path, points, Path(folder.name))
        runtime = open_runtime(rebuilt, RuntimeOptions(outputs=points))
    except BaseException:
        folder.cleanup()
        raise
    precision = manifest.precision
    note = (
        f"{path.name}'s layers come from an engine rebuilt from {source.name} with each layer marked as an "
        "output, which keeps TensorRT from fusing across them: it computes each layer as the shipped engine "
        "does, not bit for bit"
    )
    name = f"{path.name} ({precision}, TensorRT, rebuilt from {source.name} with its layers as outputs)"
    return _Side(runtime, name, precision, (note,), folder)


# ---- the comparison --------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerInputs:
    """What both models see: the images of a folder (preprocessed by the model's input spec; at
    most `max_images`, spread evenly over the sorted list), or `random` standard-normal inputs."""

    images: Path | None = None
    random: int | None = None
    max_images: int = DEFAULT_MAX_IMAGES
    seed: int = 0

    def __post_init__(self) -> None:
        if self.images is not None and self.random is not None:
            raise ToolkitError("give --images DIR or --random N, not both")
        if self.random is not None:
            check_number(self.random, "--random", integer=True, limit="images")
        check_number(self.max_images, "--max-images", integer=True, limit="images")

    @property
    def count(self) -> int:
        return self.random if self.random is not None else DEFAULT_RANDOM

    def batches(self, spec, batch: int):
        """Float32 batches of at most `batch` inputs (an image that cannot be read is skipped)."""
        if self.images is None:
            rng = np.random.default_rng(self.seed)
            shape = (spec.channels, spec.height, spec.width)
            for start in range(0, self.count, batch):
                yield rng.standard_normal((min(batch, self.count - start), *shape), dtype=np.float32)
            return
        from deploy.datasets import read_image_folder
        from deploy.preprocess import ImageError, preprocess

        files = read_image_folder(self.images).subset(self.max_images).files
        arrays, unreadable = [], []
        for index, path in enumerate(files):
            try:
                arrays.append(preprocess(path, spec))
            except ImageError as error:
                unreadable.append(str(error))
            if arrays and (len(arrays) == batch or index == len(files) - 1):
                yield np.stack(arrays)
                arrays = []
        if len(unreadable) == len(files):
            raise ToolkitError(f"none of the {len(files)} images in {self.images} could be read: {unreadable[0]}")
        if unreadable:
            more = f" and {len(unreadable) - 2} more" if len(unreadable) > 2 else ""
            notice(f"skipped {len(unreadable)} of {len(files)} images: {'; '.join(unreadable[:2])}{more}")


@dataclass
class LayerFigures:
    """One layer's output on both sides: errors, agreement, ranges and the checks of the criterion."""

    name: str
    stage: str
    shape: list[int]  # per input
    max_abs: float
    scale: float  # largest |value| of the reference's tensor
    error_of_scale: float  # max_abs / scale
    cosine: float  # smallest per-input cosine similarity
    range: list[float]  # the reference's [min, max]
    candidate_range: list[float]
    fp16_overflow: bool  # either side beyond FP16's range (65504)
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["checks"] = [str(check) for check in self.checks]
        return data | {"passed": self.passed}


class _LayerErrors:
    """A layer's errors and ranges on both sides, gathered batch by batch (memory: one batch of activations)."""

    def __init__(self) -> None:
        self.max_abs, self.scale, self.cosine = 0.0, 0.0, 1.0
        self.ref_range, self.cand_range = [np.inf, -np.inf], [np.inf, -np.inf]
        self.shape: list[int] | None = None

    def add(self, name: str, reference: np.ndarray, candidate: np.ndarray) -> None:
        if reference.shape != candidate.shape:
            raise ToolkitError(
                f"layer {name} has shape {reference.shape} in one model and {candidate.shape} in the other"
            )
        self.shape = list(reference.shape[1:])
        ref = reference.reshape(len(reference), -1).astype(np.float64)
        out = candidate.reshape(len(candidate), -1).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            self.max_abs = max(self.max_abs, float(np.max(np.abs(out - ref), initial=0.0)))
            self.scale = max(self.scale, float(np.max(np.abs(ref), initial=0.0)))
            dot = np.einsum("ij,ij->i", ref, out)
            norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
            both_zero = (np.linalg.norm(ref, axis=1) == 0) & (np.linalg.norm(out, axis=1) == 0)
            cosine = np.where(both_zero, 1.0, dot / np.where(norms == 0, np.inf, norms))
        self.cosine = min(self.cosine, float(np.min(cosine)) if np.isfinite(cosine).all() else float("nan"))
        for kept, values in ((self.ref_range, ref), (self.cand_range, out)):
            kept[0], kept[1] = min(kept[0], float(values.min())), max(kept[1], float(values.max()))

    def figures(self, name: str, criterion, thresholds: Thresholds) -> LayerFigures:
        scale = self.scale or 1.0
        peak = max(abs(v) for v in self.ref_range + self.cand_range)
        error = self.max_abs / scale if np.isfinite(self.max_abs) else float("inf")
        cosine = self.cosine if self.cosine == self.cosine else float("nan")
        return LayerFigures(
            name=name,
            stage=stage_of(name),
            shape=self.shape or [],
            max_abs=self.max_abs,
            scale=self.scale,
            error_of_scale=error,
            cosine=cosine,
            range=self.ref_range,
            candidate_range=self.cand_range,
            fp16_overflow=bool(peak > FP16_MAX),
            checks=tensor_checks(criterion, thresholds, error_of_scale=error, cosine=cosine, peak=peak),
        )


@dataclass
class LayerComparison:
    """Two models compared layer by layer; `first_divergent` is the first layer, in network order,
    that misses the criterion (None when none does)."""

    reference: str
    candidate: str
    criterion: str
    inputs: str
    samples: int
    batch: int
    layers: list[LayerFigures]
    unmatched: dict  # {"reference": [...], "candidate": [...]}: points only one side holds
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def first_divergent(self) -> str | None:
        return next((layer.name for layer in self.layers if not layer.passed), None)

    @property
    def passed(self) -> bool:
        return self.first_divergent is None

    def sentence(self) -> str:
        """The finding in one sentence."""
        first = self.first_divergent
        if first is None:
            return f"no layer diverges: all {len(self.layers)} matched layers are within tolerance ({self.criterion})"
        index = next(i for i, layer in enumerate(self.layers) if layer.name == first)
        failures = "; ".join(str(c) for c in self.layers[index].checks if not c.passed)
        before = f"the {index} layers before it are within tolerance" if index else "it is the first layer compared"
        return f"the first divergent layer is {first} ({failures}); {before}"

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "layers"}
        return data | {
            "layers": [layer.to_dict() for layer in self.layers],
            "first_divergent": self.first_divergent,
            "passed": self.passed,
            "finding": self.sentence(),
        }


def _common_input(reference: _Side, candidate: _Side):
    """The input spec both models take (a file's metadata before a checkpoint's defaults), after
    checking that they are the same architecture."""
    a, b = reference.info, candidate.info
    if a.architecture != b.architecture:
        differ = [
            f"{field} {getattr(a.architecture, field)} against {getattr(b.architecture, field)}"
            for field in ("stem", "block", "layers", "widths", "shortcut", "num_classes")
            if getattr(a.architecture, field) != getattr(b.architecture, field)
        ]
        raise ToolkitError(
            f"the two models are different networks ({a.name} and {b.name}: {', '.join(differ)}); compare two forms of "
            "one model"
        )
    files = [side.info.input_spec for side in (reference, candidate) if side.runtime.backend != "pytorch"]
    if len(files) == 2 and (files[0].height, files[0].width) != (files[1].height, files[1].width):
        raise ToolkitError(
            f"the two files take different input sizes ({files[0].height}x{files[0].width} and {files[1].height}x{files[1].width})"
        )
    return files[0] if files else a.input_spec


def _run_both(ref: _Side, cand: _Side, array: np.ndarray, batch: int) -> tuple[dict, dict]:
    """Every layer's output of both sides; running out of memory is a sentence (exit 2), never a
    runtime's traceback (exit 1 means a layer diverges)."""
    try:
        return ref.runtime.run_outputs(array), cand.runtime.run_outputs(array)
    except ToolkitError:
        raise
    except Exception as error:  # noqa: BLE001 - each runtime raises its own allocation failure
        if isinstance(error, MemoryError) or "alloc" in str(error).lower():
            raise ToolkitError(f"ran out of memory comparing every layer at --batch {batch}; lower --batch") from None
        raise


def _check_compare_memory(architecture, spec, batch: int) -> None:
    check_memory(
        compare_memory(architecture, spec, batch),
        f"comparing every layer at --batch {batch}",
        "lower --batch (the figures are the same at any batch)",
    )


def compare_memory(architecture, spec, batch: int) -> float:
    """A rough estimate of the bytes a comparison at `batch` holds: every layer's output of a
    batch on both sides at once (float32), and a quarter more for the runtimes' own buffers
    (measured: ResNet-50 at batch 32 peaked at 7.5 GB, estimated 8.1; ResNet-20 at 1024, 5.0 GB,
    estimated 5.0)."""
    return 1.25 * 2 * 4 * batch * architecture.tapped_elements(spec.height, spec.width)


def compare_models(
    reference,
    candidate,
    inputs: LayerInputs = LayerInputs(),
    *,
    batch: int = DEFAULT_BATCH,
    thresholds: Thresholds = Thresholds(),
    provider: str | None = None,
    threads: int | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> LayerComparison:
    """Compare `candidate` with `reference` layer by layer on the same inputs (see the module
    docstring). Each is a `ResNet` or a model file; `provider` and `threads` are ONNX Runtime's."""
    check_number(batch, "--batch", integer=True, low=1, high=4096)
    started = time.perf_counter()
    sides = []
    try:
        for model in (reference, candidate):  # one by one: a side that opened is closed if the next fails
            sides.append(open_side(model, provider=provider, threads=threads))
        ref, cand = sides
        spec = _common_input(ref, cand)
        _check_compare_memory(ref.info.architecture, spec, batch)
        order = ref.info.architecture.module_points()
        held_ref, held_cand = (set(side.runtime.outputs) for side in sides)
        common = [p for p in order if p in held_ref and p in held_cand]
        same = ref.runtime.backend == cand.runtime.backend and ref.runtime.device == cand.runtime.device
        gpu = any(side.runtime.device.startswith("cuda") for side in sides)
        criterion = criterion_for(
            ref.precision, cand.precision, same_arithmetic=same, gpu=gpu, real_images=inputs.images is not None
        )
        tallies, samples = {p: _LayerErrors() for p in common}, 0
        expected = inputs.count if inputs.images is None else None
        for array in inputs.batches(spec, batch):
            a, b = _run_both(ref, cand, array, batch)
            for point in common:
                tallies[point].add(point, a[point], b[point])
            samples += len(array)
            if progress is not None:
                progress("comparing layers", samples / expected if expected else 0.5)
        notes = [RANDOM_INT8_NOTE] if criterion.name == "int8" else []
        notes += [note for side in sides for note in side.notes]
    finally:
        for side in sides:
            side.close()
    return LayerComparison(
        reference=ref.name,
        candidate=cand.name,
        criterion=criterion.name,
        inputs=f"{samples} {f'images of {inputs.images}' if inputs.images else f'random inputs (seed {inputs.seed})'}",
        samples=samples,
        batch=batch,
        layers=[tallies[p].figures(p, criterion, thresholds) for p in common],
        unmatched={
            "reference": [p for p in order if p in held_ref and p not in held_cand],
            "candidate": [p for p in order if p in held_cand and p not in held_ref],
        },
        notes=notes,
        seconds=time.perf_counter() - started,
    )


# ---- the plot --------------------------------------------------------------------------------


def plot_layers(report: LayerComparison, path: str | Path) -> None:
    """Error per layer on a log scale, in network order: error in units of each tensor's scale and
    1 - cosine, the threshold the criterion judges, stage boundaries, the first divergent layer
    marked. PNG, SVG or PDF by the suffix, written atomically."""
    require("matplotlib", "plots (--plot)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from toolkit.files import atomic_path

    layers = report.layers
    x = np.arange(len(layers))
    floor = 1e-12
    panels = [
        ("error / scale", [max(layer.error_of_scale, floor) for layer in layers], "max-error/scale"),
        (
            "1 - cosine",
            [max(1 - layer.cosine, floor) if layer.cosine == layer.cosine else 1.0 for layer in layers],
            "cosine",
        ),
    ]
    figure, axes = plt.subplots(2, 1, figsize=(max(8, len(layers) * 0.07 + 4), 6), sharex=True)
    for axis, (label, values, check_name) in zip(axes, panels, strict=True):
        axis.semilogy(x, values, marker=".", linewidth=1, color="tab:blue")
        limits = {c.limit for layer in layers for c in layer.checks if c.name == check_name}
        for limit in limits:
            line = limit if check_name != "cosine" else max(1 - limit, floor)
            axis.axhline(
                line, color="tab:red", linestyle="--", linewidth=1, label=f"threshold ({check_name} {limit:g})"
            )
        failed = [i for i, layer in enumerate(layers) if not layer.passed]
        axis.scatter(failed, [values[i] for i in failed], color="tab:red", zorder=3, s=12, label="outside tolerance")
        axis.set_ylabel(label)
        axis.grid(True, which="major", alpha=0.3)
        _mark_stages(axis, layers)
        if report.first_divergent is not None:
            first = failed[0]
            axis.axvline(first, color="tab:red", alpha=0.4)
        if limits or failed:
            axis.legend(loc="lower right", fontsize=8)
    title = f"{report.candidate}\nagainst {report.reference}, {report.inputs}"
    first = report.first_divergent
    axes[0].set_title(title + (f"\nfirst divergent layer: {first}" if first else "\nno layer diverges"), fontsize=9)
    axes[-1].set_xlabel("layer, in network order")
    figure.tight_layout()
    with atomic_path(path) as staged:
        figure.savefig(staged, dpi=110, format=Path(path).suffix.lstrip(".").lower() or "png")
    plt.close(figure)


def _mark_stages(axis, layers: list[LayerFigures]) -> None:
    """A vertical line where each stage starts, labelled at the top."""
    previous = None
    for index, layer in enumerate(layers):
        if layer.stage != previous:
            axis.axvline(index - 0.5, color="grey", linewidth=0.6, alpha=0.6)
            axis.text(
                index, 1.0, f" {layer.stage}", transform=axis.get_xaxis_transform(), fontsize=7, va="top", color="grey"
            )
            previous = layer.stage
