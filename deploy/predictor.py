"""`Predictor`: images in, top-k classes out, whatever runs the model underneath."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from resnet.errors import ToolkitError

from .artifact import ModelInfo
from .errors import ArtifactError, MissingDependencyError
from .preprocess import describe_image, preprocess
from .runtime import OrtRuntime, Runtime, available_ort_providers

if TYPE_CHECKING:
    from .bundle import Bundle

BACKENDS = ("tensorrt", "onnxruntime")
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


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def read_labels(path: str | Path) -> list[str]:
    """One label per line (blank lines at the end ignored)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"labels file {path} does not exist")
    labels = path.read_text(encoding="utf-8").splitlines()
    while labels and not labels[-1].strip():
        labels.pop()
    return labels


def _open_engine(path: Path) -> Runtime:
    from .tensorrt_runtime import TensorRTRuntime

    return TensorRTRuntime(path)


def _open_onnx(path: Path, device: str | None) -> Runtime:
    if device is None:
        device = "cuda" if "cuda" in available_ort_providers() else "cpu"
    return OrtRuntime(path, provider=device)


def open_runtime(
    path: str | Path, *, backend: str | None = None, device: str | None = None
) -> tuple[Runtime, Bundle | None]:
    """The runtime for an ONNX file, an engine or a bundle folder (and the bundle, if one).

    Automatic choice: a bundle's engine when TensorRT and a compatible GPU are here, else its
    ONNX file in ONNX Runtime on CUDA when onnxruntime-gpu is installed, else on the CPU.
    `backend` ("tensorrt" or "onnxruntime") and `device` ("cpu" or "cuda", for ONNX Runtime)
    force a choice; a forced choice that can't be honoured is an error, not a fallback.
    """
    from .bundle import Bundle

    if backend is not None and backend not in BACKENDS:
        raise ToolkitError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if device is not None and device not in ("cpu", "cuda"):
        raise ToolkitError(f"device must be cpu or cuda, got {device!r}")
    path = Path(path)
    if path.is_dir():
        bundle = Bundle.open(path)
        if backend == "tensorrt" or (backend is None and bundle.engine is not None):
            if bundle.engine is None:
                raise ArtifactError(
                    f"bundle {path} has no engine; build one on this machine: resnet-build {bundle.onnx}"
                )
            try:
                return _open_engine(bundle.engine), bundle
            except (MissingDependencyError, ArtifactError):
                if backend == "tensorrt":
                    raise
        return _open_onnx(bundle.onnx, device), bundle
    if not path.exists():
        raise ArtifactError(f"model {path} does not exist")
    if path.suffix.lower() in (".plan", ".engine"):
        if backend == "onnxruntime":
            raise ToolkitError(f"{path.name} is a TensorRT engine; ONNX Runtime runs .onnx files")
        return _open_engine(path), None
    if backend == "tensorrt":
        raise ToolkitError(f"{path.name} is not an engine; build one with resnet-build {path}")
    return _open_onnx(path, device), None


class Predictor:
    """Top-k predictions for images, from an ONNX file, a TensorRT engine or a bundle folder.

        predictor = Predictor("bundle/")                  # or "resnet50.onnx", "resnet50.plan"
        for p in predictor.predict(["cat.jpg", "dog.png"], top_k=5):
            print(p.source, p.labels or p.indices, p.scores)

    Preprocessing follows the input spec stored in the model file (`deploy.preprocess`). Images
    are run in batches up to the model's limit (an engine's profile maximum, a fixed ONNX batch,
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
    ) -> None:
        self.runtime, self.bundle = open_runtime(path, backend=backend, device=device)
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
        if isinstance(labels, (str, Path)):
            labels = read_labels(labels)
        if labels is not None and len(labels) != self.spec.num_classes:
            raise ArtifactError(f"{len(labels)} labels for a model with {self.spec.num_classes} classes")
        self.labels = list(labels) if labels is not None else None
        low, high = self.runtime.batch_range
        self.min_batch = low
        self.max_batch = high if high is not None else DEFAULT_CHUNK
        self._lock = threading.Lock()

    @property
    def backend(self) -> str:
        return self.runtime.describe()

    def preprocess(self, image: Any) -> np.ndarray:
        """One image as the model's input (C, H, W), float32."""
        return preprocess(image, self.spec)

    def predict(self, images: Iterable[Any] | Any, top_k: int = 5) -> list[Prediction]:
        """Top-k predictions for each image (paths, PIL images or arrays), in order.

        A single image (not in a list) is accepted too. An unreadable image raises
        `ImageError` naming it; `resnet-deploy predict` shows how to carry on past one.
        """
        if isinstance(images, (str, Path, np.ndarray)) or not isinstance(images, Iterable):
            images = [images]
        images = list(images)
        batch = (
            np.stack([self.preprocess(image) for image in images])
            if images
            else np.empty((0, *self.runtime.input_shape[1:]), np.float32)
        )
        return self.predict_arrays(batch, top_k=top_k, sources=[describe_image(i) for i in images])

    def predict_arrays(
        self, batch: np.ndarray, top_k: int = 5, sources: Sequence[str] | None = None
    ) -> list[Prediction]:
        """Top-k predictions for preprocessed inputs (N, C, H, W)."""
        if top_k < 1:
            raise ToolkitError(f"top_k must be at least 1, got {top_k}")
        top_k = min(top_k, self.spec.num_classes)
        sources = list(sources) if sources is not None else [f"#{i}" for i in range(len(batch))]
        logits = self._logits(batch)
        probabilities = softmax(logits) if len(logits) else logits
        predictions = []
        for source, row in zip(sources, probabilities):
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

    def _logits(self, batch: np.ndarray) -> np.ndarray:
        outputs = []
        with self._lock:
            for start in range(0, len(batch), self.max_batch):
                chunk = batch[start : start + self.max_batch]
                count = len(chunk)
                if (
                    count < self.min_batch
                ):  # a fixed batch or an engine profile's minimum: pad, then drop the padding's outputs
                    chunk = np.concatenate([chunk, np.zeros((self.min_batch - count, *chunk.shape[1:]), chunk.dtype)])
                outputs.append(np.asarray(self.runtime.run(chunk), dtype=np.float32)[:count])
        return np.concatenate(outputs) if outputs else np.empty((0, self.spec.num_classes), np.float32)

    def close(self) -> None:
        self.runtime.close()

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
