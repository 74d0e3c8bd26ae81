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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from toolkit.errors import ToolkitError

from .datasets import ImageSet
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
    unreadable: list[dict] = field(default_factory=list)  # {"image", "error"} of each skipped image
    reference: str | None = None
    reference_backend: str | None = None
    reference_top1: float | None = None
    top1_agreement: float | None = None
    max_probability_difference: float | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _topk_hits(probabilities: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return (top == targets[:, None]).any(axis=1)


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
    k = min(5, predictor.spec.num_classes)
    unreadable, top1, topk, targets_seen = [], [], [], []
    reference_hits, agreement, difference = [], [], 0.0
    for start in range(0, len(data), batch):
        arrays, other, targets, names = [], [], [], []
        for path, target in zip(data.files[start : start + batch], data.targets[start : start + batch], strict=True):
            try:
                arrays.append(predictor.preprocess(path))
                if reference is not None:
                    other.append(arrays[-1] if reference.spec == predictor.spec else reference.preprocess(path))
            except ImageError as error:
                unreadable.append({"image": str(path), "error": str(error)})
                continue
            targets.append(target)
            names.append(str(path))
        if arrays:
            goal = np.asarray(targets)
            probabilities = predictor.probabilities(np.stack(arrays), names)
            top1.append(probabilities.argmax(1) == goal)
            topk.append(_topk_hits(probabilities, goal, k))
            targets_seen.append(goal)
            if reference is not None:
                expected = reference.probabilities(np.stack(other), names)
                reference_hits.append(expected.argmax(1) == goal)
                agreement.append(expected.argmax(1) == probabilities.argmax(1))
                difference = max(difference, float(np.abs(expected - probabilities).max()))
        if progress is not None:
            progress(min(start + batch, len(data)), len(data))
    count = sum(len(hits) for hits in top1)
    if count == 0:
        raise ToolkitError(f"none of the {len(data)} images of {data.root} could be read")

    def rate(parts: list[np.ndarray]) -> float:
        return float(np.concatenate(parts).mean())

    report = Evaluation(
        model=str(predictor.path),
        backend=predictor.backend,
        data=str(data.root),
        images=count,
        top1=rate(top1),
        topk=rate(topk),
        k=k,
        unreadable=unreadable,
    )
    if reference is not None:
        report.reference, report.reference_backend = str(reference.path), reference.backend
        report.reference_top1, report.top1_agreement = rate(reference_hits), rate(agreement)
        report.max_probability_difference = difference
    report.seconds = time.perf_counter() - started
    return report
