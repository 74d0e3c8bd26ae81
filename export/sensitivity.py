"""INT8 sensitivity: which blocks cost accuracy when quantized, and the smallest set to keep in
float (`resnet-compare sensitivity`).

The units are the stem's convolution (`conv1`), every residual block (`layer1.0` ...) and the
classifier (`fc`): the names `--keep-float` takes. For each unit the FP32 file is quantized twice
(ONNX Runtime's quantizer, calibrated once on the images for all of them: `CalibrationCache`): with only
that unit in INT8, and with everything but that unit in INT8. Each file's top-1 on the labelled
`--eval` images and its logits' cosine with the FP32 file's are measured in ONNX Runtime on the
same preprocessed images. A unit's cost is the top-1 it loses alone plus the top-1 the full INT8
file gains without it (points); the ranking is by that cost, then by the cosine both lose.

The proposal starts from the full INT8 file: when its drop is within `max_top1_drop`, nothing is
kept in float. Otherwise units are kept in float in rank order until the measured drop is within
the target, then each kept unit is dropped again if the target still holds without it. Every
figure of the proposal is measured on its own file, not predicted from the others.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from toolkit.errors import ToolkitError

from .quantize import CalibrationCache, Int8Options, quantize_onnx, weights_fingerprint

MAX_EVAL_IMAGES = 2000  # the preprocessed images are held in memory
DEFAULT_EVAL_IMAGES = 500


def sensitivity_units(architecture) -> list[str]:
    """`conv1`, every block (`layer1.0`, ...) and `fc`, in network order."""
    return ["conv1", *architecture.blocks(), "fc"]


@dataclass
class Measured:
    """One INT8 file's accuracy on the evaluation images, against the FP32 file."""

    keep_float: list[str]
    top1: float
    top1_drop: float  # points, against the FP32 file
    cosine: float  # mean per-image cosine of the logits with the FP32 file's

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BlockCost:
    name: str
    alone: Measured  # only this unit in INT8
    left_out: Measured  # everything but this unit in INT8
    cost: float  # points: lost alone + gained when left out

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "top1": self.alone.top1,
            "top1_drop": self.alone.top1_drop,
            "cosine": self.alone.cosine,
            "left_out_top1": self.left_out.top1,
            "left_out_cosine": self.left_out.cosine,
            "cost": self.cost,
        }


@dataclass
class SensitivityReport:
    model: str
    weights_sha256: str  # the FP32 file's weights (`weights_fingerprint`): --keep-float checks them
    target: str
    eval_data: str
    images: int
    fp32_top1: float
    int8: Measured  # everything in INT8
    blocks: list[BlockCost]  # ranked, most costly first
    proposal: Measured  # the proposed keep_float set, measured
    max_top1_drop: float
    files_quantized: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def keep_float(self) -> list[str]:
        return self.proposal.keep_float

    @property
    def met(self) -> bool:
        return self.proposal.top1_drop <= self.max_top1_drop

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k not in ("blocks", "int8", "proposal")}
        return data | {
            "int8": self.int8.to_dict(),
            "blocks": [block.to_dict() for block in self.blocks],
            "keep_float": self.keep_float,
            "proposal": self.proposal.to_dict(),
            "met": self.met,
        }


class _Evaluator:
    """The evaluation images, preprocessed once, and the FP32 file's logits on them."""

    def __init__(self, fp32_path: Path, eval_data: Path, max_images: int) -> None:
        from deploy.datasets import read_image_folder
        from deploy.predictor import Predictor
        from deploy.preprocess import ImageError, preprocess

        with Predictor(fp32_path) as predictor:
            spec, labels = predictor.spec, predictor.labels
        data = read_image_folder(eval_data, labels=labels, num_classes=spec.num_classes, labeled=True)
        data = data.subset(max_images)
        arrays, targets = [], []
        for path, target in zip(data.files, data.targets, strict=True):
            try:
                arrays.append(preprocess(path, spec))
                targets.append(target)
            except ImageError:
                continue
        if not arrays:
            raise ToolkitError(f"none of the {len(data)} images of {eval_data} could be read")
        self.images, self.targets = np.stack(arrays), np.asarray(targets)
        self.reference = self.logits(fp32_path)
        self.fp32_correct = int(np.sum(self.reference.argmax(1) == self.targets))
        self.fp32_top1 = self.fp32_correct / len(self.targets)

    def logits(self, path: Path) -> np.ndarray:
        from deploy.runtimes import RuntimeOptions, open_runtime

        with open_runtime(path, RuntimeOptions(device="cpu"), backend="onnxruntime") as runtime:
            return np.concatenate([runtime.run(self.images[i : i + 64]) for i in range(0, len(self.images), 64)])

    def measure(self, path: Path, keep_float: list[str]) -> Measured:
        out = self.logits(path).astype(np.float64)
        ref = self.reference.astype(np.float64)
        norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
        cosine = float(np.mean(np.sum(ref * out, axis=1) / np.where(norms == 0, 1.0, norms)))
        correct = int(np.sum(out.argmax(1) == self.targets))
        # From counts of images, so that a drop of exactly the target compares equal to it.
        drop = 100.0 * (self.fp32_correct - correct) / len(self.targets)
        return Measured(list(keep_float), correct / len(self.targets), drop, cosine)


class _Quantizer:
    """INT8 files of one FP32 file with different `keep_float` sets, measured (each set once)."""

    def __init__(self, fp32_path: Path, int8: Int8Options, evaluator: _Evaluator, folder: Path, progress) -> None:
        from deploy.artifacts.onnx_file import inspect_onnx

        signature = inspect_onnx(fp32_path)
        self.fp32_path, self.int8, self.evaluator, self.folder = fp32_path, int8, evaluator, folder
        self.spec, self.input_name = signature.info.input_spec, signature.input.name
        self.fixed_batch = signature.input.batch
        self.progress = progress or (lambda text: None)
        self.seen: dict[tuple[str, ...], Measured] = {}
        self.cache = CalibrationCache(folder / "calibration.json")  # calibrated once, for every file

    def measure(self, keep_float: list[str]) -> Measured:
        key = tuple(sorted(keep_float))
        if key not in self.seen:
            self.progress(f"quantizing with {len(keep_float)} units in float ({len(self.seen) + 1} files so far)")
            path = self.folder / f"int8_{len(self.seen)}.onnx"
            options = replace(self.int8, keep_float=tuple(keep_float))
            quantize_onnx(self.fp32_path, path, self.spec, self.input_name, options, self.fixed_batch, self.cache)
            self.seen[key] = self.evaluator.measure(path, keep_float)
            path.unlink()
        return self.seen[key]


def _rank(units: list[str], quantizer: _Quantizer, full: Measured) -> list[BlockCost]:
    """Each unit alone in INT8 and left out of INT8, ranked by what it costs."""
    costs = []
    for unit in units:
        alone = quantizer.measure([u for u in units if u != unit])
        left_out = quantizer.measure([unit])
        cost = alone.top1_drop + (full.top1_drop - left_out.top1_drop)
        costs.append(BlockCost(unit, alone, left_out, cost))
    # Most costly first; among equals, the one whose INT8 form moves the logits most.
    return sorted(costs, key=lambda b: (-b.cost, b.alone.cosine - (b.left_out.cosine - full.cosine)))


def _propose(ranked: list[BlockCost], quantizer: _Quantizer, full: Measured, target: float) -> Measured:
    """The smallest keep-float set found (see the module docstring), measured."""
    if full.top1_drop <= target:
        return full
    keep: list[str] = []
    measured = full
    for block in ranked:
        keep.append(block.name)
        measured = quantizer.measure(keep)
        if measured.top1_drop <= target:
            break
    if measured.top1_drop > target:
        return measured  # even everything in float misses the target: said by the report
    for name in reversed(list(keep)):
        trial = quantizer.measure([k for k in keep if k != name])
        if trial.top1_drop <= target:
            keep, measured = [k for k in keep if k != name], trial
    return measured


def int8_sensitivity(
    fp32_path: str | Path,
    int8: Int8Options,
    eval_data: str | Path,
    *,
    max_top1_drop: float = 1.0,
    max_images: int = DEFAULT_EVAL_IMAGES,
    progress: Callable[[str], None] | None = None,
) -> SensitivityReport:
    """Rank the units of an FP32 ONNX file by what INT8 costs them on `eval_data` and propose the
    smallest set to keep in float for a top-1 drop within `max_top1_drop` points (module docstring)."""
    from deploy.artifacts.onnx_file import inspect_onnx
    from toolkit.numbers import check_number

    started = time.perf_counter()
    check_number(max_images, "--max-images", integer=True, low=1, high=MAX_EVAL_IMAGES)
    fp32_path = Path(fp32_path)
    signature = inspect_onnx(fp32_path)
    if signature.info is None or signature.precision != "fp32":
        raise ToolkitError(
            f"resnet-compare sensitivity takes the FP32 file resnet-export wrote (its metadata names the model); {fp32_path.name} is "
            + ("not one" if signature.info is None else f"{signature.precision}")
        )
    import onnx

    fp32 = onnx.load(str(fp32_path))
    int8.check(next((o.version for o in fp32.opset_import if o.domain in ("", "ai.onnx")), 0))
    evaluator = _Evaluator(fp32_path, Path(eval_data), max_images)
    units = sensitivity_units(signature.info.architecture)
    with tempfile.TemporaryDirectory(prefix="resnet-sensitivity-") as folder:
        quantizer = _Quantizer(fp32_path, int8, evaluator, Path(folder), progress)
        full = quantizer.measure([])
        ranked = _rank(units, quantizer, full)
        proposal = _propose(ranked, quantizer, full, max_top1_drop)
    report = SensitivityReport(
        model=str(fp32_path),
        weights_sha256=weights_fingerprint(fp32.graph),
        target=int8.target,
        eval_data=str(eval_data),
        images=len(evaluator.targets),
        fp32_top1=evaluator.fp32_top1,
        int8=full,
        blocks=ranked,
        proposal=proposal,
        max_top1_drop=max_top1_drop,
        files_quantized=len(quantizer.seen),
        seconds=time.perf_counter() - started,
    )
    if not report.met:
        report.notes.append(
            f"no set of units reaches a top-1 drop of {max_top1_drop:g} points: with all of them in float the drop is "
            f"{proposal.top1_drop:.2f} (the inputs, pooling and the rest stay quantized); raise --max-top1-drop, or "
            "calibrate on more images (--calibration-size, --calibration-method)"
        )
    return report
