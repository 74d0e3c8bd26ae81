"""One interface for running a model on a batch: ONNX Runtime here; TensorRT and PyTorch beside it.

A `Runtime` takes a NumPy batch in NCHW layout and returns the logits as a NumPy array. It knows
its input name, shape, element type and the batch sizes it accepts, and the `ModelInfo` of the
model inside (None for a file not made by resnet-export). Validation (export), the benchmark
and the Predictor all run models through these classes, so what is validated is what ships.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from resnet.errors import ToolkitError

from .artifact import ModelInfo
from .errors import ArtifactError, MissingDependencyError, require

ORT_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
ORT_INSTALL = "pip install '.[cpu]' (or '.[gpu]' for onnxruntime-gpu on a CUDA machine)"
_ORT_ELEMENT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class Runtime(ABC):
    """A loaded model that maps an input batch to logits."""

    backend: str  # "onnxruntime", "tensorrt", "pytorch"
    device: str  # "cpu", "cuda", ...
    input_name: str
    output_name: str
    input_dtype: np.dtype
    input_shape: tuple  # (N, C, H, W); N is None when the batch is dynamic
    info: ModelInfo | None

    @property
    def batch_range(self) -> tuple[int, int | None]:
        """Smallest and largest batch accepted (None: no upper limit)."""
        batch = self.input_shape[0]
        return (1, None) if batch is None else (batch, batch)

    def check_batch(self, batch_size: int) -> None:
        """Raise a `ToolkitError` naming the accepted range when `batch_size` is outside it."""
        low, high = self.batch_range
        if batch_size < low or (high is not None and batch_size > high):
            accepted = f"exactly {low}" if low == high else f"{low} to {high}" if high else f"at least {low}"
            raise ToolkitError(f"batch {batch_size} is outside what this {self.backend} model accepts ({accepted})")

    def random_input(self, batch_size: int, seed: int = 0) -> np.ndarray:
        """A batch of standard-normal values (the range of normalised images) in the input dtype."""
        shape = (batch_size, *self.input_shape[1:])
        return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32).astype(self.input_dtype)

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits for `batch` (N, C, H, W), as a host array."""

    def close(self) -> None:
        """Free what the runtime holds (sessions, device memory)."""

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> str:
        shape = ", ".join("N" if d is None else str(d) for d in self.input_shape)
        return f"{self.backend} on {self.device}, input {self.input_name} [{shape}] {np.dtype(self.input_dtype).name}"


def import_onnxruntime():
    return require("onnxruntime", ORT_INSTALL, "running an ONNX model")


def available_ort_providers() -> list[str]:
    """Our names ("cpu", "cuda", "tensorrt") of the ONNX Runtime providers installed here."""
    installed = set(import_onnxruntime().get_available_providers())
    return [name for name, chain in ORT_PROVIDERS.items() if chain[0] in installed]


class OrtRuntime(Runtime):
    """An ONNX file in ONNX Runtime.

    `provider` is "cpu", "cuda" or "tensorrt" (ONNX Runtime's execution providers; the GPU ones
    need onnxruntime-gpu); None picks the best installed. `threads` sets intra-op threads
    (None: ONNX Runtime's default, one per physical core).
    """

    backend = "onnxruntime"

    def __init__(self, path: str | Path, *, provider: str | None = None, threads: int | None = None) -> None:
        ort = import_onnxruntime()
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"model file {path} does not exist")
        available = available_ort_providers()
        if provider is None:
            provider = next(p for p in ("tensorrt", "cuda", "cpu") if p in available)
        if provider not in ORT_PROVIDERS:
            raise ToolkitError(f"provider must be one of {', '.join(ORT_PROVIDERS)}, got {provider!r}")
        if provider not in available:
            raise MissingDependencyError(
                f"ONNX Runtime provider {provider!r} is not available here (available: {', '.join(available)}); "
                "the GPU providers need onnxruntime-gpu: pip install '.[gpu]'"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            if threads < 1:
                raise ToolkitError(f"threads must be at least 1, got {threads}")
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=ORT_PROVIDERS[provider])
        except Exception as error:  # noqa: BLE001 - ORT raises its own exception types for bad files
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ArtifactError(f"ONNX Runtime cannot load {path}: {first[:200]}") from None
        self.path = path
        self.provider = provider
        self.device = "cpu" if provider == "cpu" else "cuda"
        self.threads = threads
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ArtifactError(
                f"{path} has {len(inputs)} inputs and {len(outputs)} outputs; a classifier has one of each"
            )
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        if inputs[0].type not in _ORT_ELEMENT_TYPES:
            raise ArtifactError(f"{path} takes {inputs[0].type} input; only float and float16 images are supported")
        self.input_dtype = np.dtype(_ORT_ELEMENT_TYPES[inputs[0].type])
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inputs[0].shape)
        if len(self.input_shape) != 4 or None in self.input_shape[1:]:
            raise ArtifactError(
                f"{path} takes input of shape {inputs[0].shape}; expected (N, C, H, W) with fixed C, H, W"
            )
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.info = ModelInfo.from_metadata(metadata, source=str(path)) if "model_name" in metadata else None
        self._outputs = [self.output_name]

    def run(self, batch: np.ndarray) -> np.ndarray:
        if batch.dtype != self.input_dtype:
            batch = batch.astype(self.input_dtype)
        return self.session.run(self._outputs, {self.input_name: batch})[0]

    def describe(self) -> str:
        return super().describe() + f" ({self.session.get_providers()[0]})"


class DeviceRuntime(Runtime):
    """A runtime on a CUDA device, whose round trip is three queued steps on `stream`.

    `copy_in(host)` (host to device; returns the batch size), `execute(n)` (the model on the
    first n inputs), `copy_out(n)` (device to a pinned host tensor, valid after
    `synchronize()`). The benchmark times them apart with CUDA events; `run` chains them.
    """

    stream = None  # a torch.cuda.Stream

    def pinned_input(self, batch: np.ndarray):
        """`batch` as a pinned host tensor of the input dtype (what `copy_in` reads fastest)."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(batch, dtype=self.input_dtype)).pin_memory()

    @abstractmethod
    def copy_in(self, host) -> int:
        """Queue the host-to-device copy of a batch (NumPy array or pinned tensor)."""

    @abstractmethod
    def execute(self, n: int) -> None:
        """Queue the model on the first `n` images of the device input."""

    @abstractmethod
    def copy_out(self, n: int):
        """Queue the device-to-host copy of the first `n` outputs; returns the pinned tensor."""

    def synchronize(self) -> None:
        self.stream.synchronize()

    def run(self, batch: np.ndarray) -> np.ndarray:
        n = self.copy_in(batch)
        self.execute(n)
        host = self.copy_out(n)
        self.synchronize()
        return host.numpy().copy()
