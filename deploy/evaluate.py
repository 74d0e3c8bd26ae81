"""Accuracy of an artifact on a folder of labelled images: the question a user asks after FP16 or
INT8 ("does my model still classify my images correctly?"), answered the way `resnet-eval` and
INT8 export validation answer it.

Images go through the Predictor's own preprocessing (from the model's input spec), in batches.
An image that can't be read is counted and named, never fatal. With a reference model (the FP32
ONNX file or the PyTorch checkpoint, say) both run on the same images and the report adds how
often their top-1 agree and the largest difference of any class probability.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from resnet.registry import ModelOptions
from toolkit.errors import ToolkitError

from .datasets import ImageSet, read_image_folder
from .predictor import Predictor
from .preprocess import ImageError


@dataclass
class Evaluation:
    """Accuracy figures of one model (and its agreement with a reference) on an image folder."""

    model: str
    backend: str
    data: str
    images: int  # images evaluated
    top1: float
    topk: float  # top-k accuracy, k = min(5, classes)
    k: int
    classes: int  # class folders of the data
    unreadable: list[dict] = field(default_factory=list)  # {"image", "error"} of each skipped image
    reference: str | None = None
    reference_backend: str | None = None
    reference_top1: float | None = None
    top1_agreement: float | None = None
    max_probability_difference: float | None = None
    seconds: float = 0.0
    int8_path: str | None = None  # an INT8 file on the CPU: how the CPU sums (VNNI, AMX, int16 pairs)

    def to_dict(self) -> dict:
        return asdict(self)


def _topk_hits(probabilities: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return (top == targets[:, None]).any(axis=1)


class _Counts:
    """Hits gathered batch by batch: the model's top-1 and top-k, and with a reference its top-1,
    the agreement and the largest probability difference."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.top1: list[np.ndarray] = []
        self.topk: list[np.ndarray] = []
        self.reference_top1: list[np.ndarray] = []
        self.agreement: list[np.ndarray] = []
        self.difference = 0.0
        self.unreadable: list[dict] = []  # {"image", "error"} of each skipped image

    def add(self, probabilities: np.ndarray, targets: np.ndarray, expected: np.ndarray | None) -> None:
        self.top1.append(probabilities.argmax(1) == targets)
        self.topk.append(_topk_hits(probabilities, targets, self.k))
        if expected is not None:
            self.reference_top1.append(expected.argmax(1) == targets)
            self.agreement.append(expected.argmax(1) == probabilities.argmax(1))
            self.difference = max(self.difference, float(np.abs(expected - probabilities).max()))

    @property
    def count(self) -> int:
        return sum(len(hits) for hits in self.top1)


def _rate(parts: list[np.ndarray]) -> float:
    return float(np.concatenate(parts).mean())


def _read(predictor: Predictor, reference: Predictor | None, data: ImageSet, start: int, batch: int, tally: _Counts):
    """The readable images of one batch, preprocessed for the model (and for the reference, when
    its input spec differs), with their targets and names; unreadable ones go to the tally."""
    arrays, other, targets, names = [], [], [], []
    for path, target in zip(data.files[start : start + batch], data.targets[start : start + batch], strict=True):
        try:
            array = predictor.preprocess(path)
            # An image only the reference's recipe refuses is skipped for both: the lists stay in step.
            second = array if reference is None or reference.spec == predictor.spec else reference.preprocess(path)
        except ImageError as error:
            tally.unreadable.append({"image": str(path), "error": str(error)})
            continue
        arrays.append(array)
        other.append(second)
        targets.append(target)
        names.append(str(path))
    return arrays, other, np.asarray(targets), names


def evaluate(
    predictor: Predictor,
    data: ImageSet,
    *,
    reference: Predictor | None = None,
    batch: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Top-1 and top-k accuracy of `predictor` on `data` (and agreement with `reference`)."""
    if data.targets is None:
        raise ToolkitError(
            f"{data.root} has no class folders, so there is nothing to score; use the layout DIR/<class>/<image>"
        )
    if reference is not None and reference.spec.num_classes != predictor.spec.num_classes:
        raise ToolkitError(
            f"the reference has {reference.spec.num_classes} classes and the model {predictor.spec.num_classes}"
        )
    started = time.perf_counter()
    tally = _Counts(k=min(5, predictor.spec.num_classes))
    for start in range(0, len(data), batch):
        arrays, other, targets, names = _read(predictor, reference, data, start, batch, tally)
        if arrays:
            expected = reference.probabilities(np.stack(other), names) if reference is not None else None
            tally.add(predictor.probabilities(np.stack(arrays), names), targets, expected)
        if progress is not None:
            progress(min(start + batch, len(data)), len(data))
    if tally.count == 0:
        first = tally.unreadable[0]["error"] if tally.unreadable else "no image"
        raise ToolkitError(f"none of the {len(data)} images of {data.root} could be read (the first: {first})")
    report = Evaluation(
        model=str(predictor.path),
        backend=predictor.backend,
        data=str(data.root),
        images=tally.count,
        top1=_rate(tally.top1),
        topk=_rate(tally.topk),
        k=tally.k,
        classes=len(data.classes),
        unreadable=tally.unreadable,
        int8_path=predictor.runtime.int8_path(),
    )
    if reference is not None:
        report.reference, report.reference_backend = str(reference.path), reference.backend
        report.reference_top1, report.top1_agreement = _rate(tally.reference_top1), _rate(tally.agreement)
        report.max_probability_difference = tally.difference
    report.seconds = time.perf_counter() - started
    return report


def evaluate_model(
    model: str | Path,
    data: str | Path,
    *,
    reference: str | Path | None = None,
    batch: int = 64,
    labels: Sequence[str] | str | Path | None = None,
    backend: str | None = None,
    device: str | None = None,
    architecture: ModelOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
    precision: str | None = None,
) -> Evaluation:
    """What `resnet-eval MODEL DATA` does: open the model (an ONNX file, an engine, a bundle, a
    checkpoint; `architecture` names the registered model of a checkpoint that doesn't record
    it; `backend`, `device` and `precision` as the Predictor's) and the `reference` model, if any
    (in its own default backend, FP32), read DATA's ImageFolder tree (class indices from the
    model's labels when they name every class folder), `evaluate`, and close both."""
    with Predictor(
        model, backend=backend, device=device, labels=labels, model=architecture, precision=precision
    ) as predictor:
        images = read_image_folder(
            data,
            labels=predictor.labels,
            num_classes=predictor.spec.num_classes,
            labeled=True,
            labels_required=labels is not None,
        )
        other = Predictor(reference, labels=predictor.labels) if reference is not None else None
        try:
            return evaluate(predictor, images, reference=other, batch=batch, progress=progress)
        finally:
            if other is not None:
                other.close()
