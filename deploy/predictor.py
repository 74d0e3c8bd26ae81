"""`Predictor`: images in, top-k classes out, whatever runs the model underneath."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from resnet.registry import ModelOptions
from toolkit.errors import ArtifactError, ToolkitError
from toolkit.numbers import check_number

from .artifacts.bundle import Bundle
from .artifacts.labels import resolve_labels
from .artifacts.metadata import ModelInfo
from .preprocess import ImageError, describe_image, preprocess
from .runtimes import Runtime, RuntimeOptions, backend_of, open_bundle, open_runtime
from .runtimes.choices import BACKEND_CHOICES, DEVICES

DEFAULT_CHUNK = 32  # images per run when the model takes any batch size


@dataclass
class Prediction:
    """The top-k classes of one image, best first; scores are softmax probabilities."""

    source: str
    indices: list[int]
    scores: list[float]
    labels: list[str] | None = None

    def to_dict(self) -> dict:
        return {"source": self.source, "indices": self.indices, "scores": self.scores, "labels": self.labels}


@dataclass
class UnreadableImage:
    """An image that could not be read, in the place of its prediction."""

    source: str
    error: str

    def to_dict(self) -> dict:
        return {"source": self.source, "error": self.error}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def open_model(
    path: str | Path,
    *,
    backend: str | None = None,
    device: str | None = None,
    model: ModelOptions | None = None,
    precision: str | None = None,
) -> tuple[Runtime, Bundle | None]:
    """The runtime for a model file or a bundle folder (and the bundle, if one).

    A file runs in the backend its suffix names (`deploy.runtimes.open_runtime`); a bundle in
    its engine when TensorRT and a compatible GPU are here, else its ONNX file
    (`deploy.runtimes.open_bundle`). ONNX Runtime and PyTorch run on CUDA when they can, else on the
    CPU. `backend` and `device` ("cpu" or "cuda") force a choice; a forced choice that can't
    be honoured is an error, not a fallback. `model` names the registered model a `.pt`/`.pth`
    checkpoint holds, for one that doesn't record it (its architecture is otherwise read from
    its keys). `precision` is the arithmetic where the backend chooses it (OpenVINO's fp32 or bf16,
    PyTorch's); None: FP32, or what a bundle names.
    """
    if backend is not None and backend not in BACKEND_CHOICES:
        raise ToolkitError(f"backend must be one of {', '.join(BACKEND_CHOICES)}, got {backend!r}")
    if device is not None and device not in DEVICES:
        raise ToolkitError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    path = Path(path)
    options = RuntimeOptions(device=device, precision=precision or "fp32")
    if model is not None:
        if backend_of(path) != "pytorch":
            raise ToolkitError("--depth describes a .pt/.pth checkpoint; other files record their model")
        from .runtimes.pytorch import torch_runtime

        return torch_runtime(replace(model, weights=path).create(), options), None
    if path.is_dir():
        bundle = Bundle.open(path, verify_models=False)  # the model file that runs: while it loads
        return open_bundle(bundle, backend=backend, device=device, precision=precision), bundle
    return open_runtime(path, options, backend=backend), None


class Predictor:
    """Top-k predictions for images, from an ONNX file, a TensorRT engine or a bundle folder.

        predictor = Predictor("bundle/")                  # or "resnet50.onnx", "resnet50.plan"
        for p in predictor.predict(["cat.jpg", "dog.png"], top_k=5):
            print(p.source, p.labels or p.indices, p.scores)

    Preprocessing follows the input spec stored in the model file (`deploy.preprocess`). Images
    are run in batches up to the model's limit (an engine's largest batch, a fixed ONNX batch,
    else 32 at a time). Labels come from `labels` (a list or a file) or the bundle's labels.txt.

    Threads: one Predictor may be shared between threads. Preprocessing runs in the calling
    thread; model execution is serialized by a lock, because a TensorRT execution context and
    this object's device buffers serve one call at a time. For parallel execution, create one
    Predictor per thread (each holds its own copy of the model) or serve with Triton.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        backend: str | None = None,
        device: str | None = None,
        labels: Sequence[str] | str | Path | None = None,
        model: ModelOptions | None = None,
        precision: str | None = None,
    ) -> None:
        started = time.perf_counter()
        runtime, bundle = open_model(path, backend=backend, device=device, model=model, precision=precision)
        self._attach(Path(path), runtime, bundle, labels)
        self.cold_start["open_s"] = time.perf_counter() - started

    @classmethod
    def from_runtime(
        cls, runtime: Runtime, *, name: str | Path = "the model", labels: Sequence[str] | str | Path | None = None
    ) -> Predictor:
        """A Predictor over a runtime opened elsewhere (a PyTorch model built with `resnet.create`, say)."""
        predictor = cls.__new__(cls)
        predictor._attach(Path(name), runtime, None, labels)
        return predictor

    def _attach(self, path: Path, runtime: Runtime, bundle: Bundle | None, labels) -> None:
        self.path, self.runtime, self.bundle = path, runtime, bundle
        info: ModelInfo | None = self.runtime.info
        if info is None:
            self.runtime.close()
            raise ArtifactError(
                f"{path} carries no input spec (export it with resnet-export, or build it with resnet-build)"
            )
        self.info = info
        self.spec = info.input_spec
        if labels is None and self.bundle is not None:
            labels = self.bundle.labels
        self.labels = resolve_labels(labels, self.spec.num_classes)
        high = self.runtime.batch_range[1]
        self.images_per_run = high if high is not None else DEFAULT_CHUNK
        self._lock = threading.Lock()
        # Seconds to open the model (reading it, the runtime's session) and of the first run (the
        # runtime's own first-run work included): what a process pays before its first prediction.
        self.cold_start: dict[str, float] = {}

    @property
    def backend(self) -> str:
        return self.runtime.describe()

    def preprocess(self, image: Any) -> np.ndarray:
        """One image as the model's input (C, H, W), float32."""
        return preprocess(image, self.spec)

    def predict(self, images: Iterable[Any] | Any, top_k: int = 5) -> list[Prediction]:
        """Top-k predictions for each image (paths, PIL images or arrays), in order.

        A single image (not in a list) is accepted too. An unreadable image raises
        `ImageError` naming it; `predict_each` carries on past one. Images are read and run a
        batch at a time, so memory does not grow with their number.
        """
        if isinstance(images, (str, Path, bytes, bytearray, np.ndarray)) or not isinstance(images, Iterable):
            images = [images]
        images, predictions = list(images), []
        for start in range(0, len(images), self.images_per_run):
            chunk = images[start : start + self.images_per_run]
            batch = np.stack([self.preprocess(image) for image in chunk])
            predictions += self.predict_arrays(batch, top_k=top_k, sources=[describe_image(i) for i in chunk])
        return predictions

    def predict_each(self, images: Sequence[Any], top_k: int = 5) -> list[Prediction | UnreadableImage]:
        """One result per image, in order (an image given twice gets two): its `Prediction`, or an
        `UnreadableImage` saying why it could not be read. Images are read and run a batch at a
        time, so memory does not grow with their number."""
        results: list[Prediction | UnreadableImage] = []
        for start in range(0, len(images), self.images_per_run):
            chunk = images[start : start + self.images_per_run]
            arrays, failed = {}, {}
            for position, image in enumerate(chunk):
                try:
                    arrays[position] = self.preprocess(image)
                except ImageError as error:
                    failed[position] = UnreadableImage(describe_image(image), str(error))
            sources = [describe_image(chunk[position]) for position in arrays]
            predicted = self.predict_arrays(np.stack(list(arrays.values())), top_k, sources) if arrays else []
            predicted = dict(zip(arrays, predicted, strict=True))
            results += [predicted[p] if p in predicted else failed[p] for p in range(len(chunk))]
        return results

    def predict_arrays(
        self, batch: np.ndarray, top_k: int = 5, sources: Sequence[str] | None = None
    ) -> list[Prediction]:
        """Top-k predictions for preprocessed inputs (N, C, H, W)."""
        sources = list(sources) if sources is not None else [f"#{i}" for i in range(len(batch))]
        if len(sources) != len(batch):
            raise ToolkitError(f"{len(sources)} sources for a batch of {len(batch)} inputs")
        return self.from_logits(self._logits(batch), top_k, sources)

    def from_logits(self, logits: np.ndarray, top_k: int = 5, sources: Sequence[str] | None = None) -> list[Prediction]:
        """Top-k predictions from the model's logits (N, classes), computed elsewhere (a server's
        batch, say): softmax probabilities, best first, with the labels."""
        top_k = min(check_number(top_k, "top_k", integer=True, limit="top-k"), self.spec.num_classes)
        sources = list(sources) if sources is not None else [f"#{i}" for i in range(len(logits))]
        predictions = []
        for source, row in zip(sources, self._softmax(logits, sources), strict=True):
            order = np.argsort(-row, kind="stable")[:top_k]
            predictions.append(
                Prediction(
                    source=source,
                    indices=[int(i) for i in order],
                    scores=[float(row[i]) for i in order],
                    labels=[self.labels[i] for i in order] if self.labels else None,
                )
            )
        return predictions

    def probabilities(self, batch: np.ndarray, sources: Sequence[str] | None = None) -> np.ndarray:
        """Softmax probabilities (N, classes) for preprocessed inputs (N, C, H, W); a model whose
        scores come out NaN or infinite is refused with a sentence naming it."""
        return self._softmax(self._logits(batch), sources)

    def _softmax(self, logits: np.ndarray, sources: Sequence[str] | None) -> np.ndarray:
        broken = ~np.isfinite(logits).all(axis=1)
        if broken.any():
            which = sources[int(np.argmax(broken))] if sources is not None else f"input #{int(np.argmax(broken))}"
            raise ArtifactError(
                f"{self.path} gives NaN or infinite scores (for {which}); its weights or the input "
                "hold non-finite values: check the input, or re-export the model with validation"
            )
        return softmax(logits) if len(logits) else logits

    def _logits(self, batch: np.ndarray) -> np.ndarray:
        outputs = []
        with self._lock:
            for piece, count in self.runtime.pieces(batch, self.images_per_run):  # padded where the runtime needs
                started = time.perf_counter()
                outputs.append(np.asarray(self.runtime.run(piece), dtype=np.float32)[:count])
                self.cold_start.setdefault("first_run_s", time.perf_counter() - started)
        return np.concatenate(outputs) if outputs else np.empty((0, self.spec.num_classes), np.float32)

    def close(self) -> None:
        self.runtime.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
