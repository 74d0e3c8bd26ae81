"""ONNX files in ONNX Runtime behind the `Runtime` interface."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.errors import ArtifactError, MissingDependencyError, ToolkitError
from toolkit.optional import require

from ..artifacts.metadata import ModelInfo
from .base import Runtime

ORT_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
DEVICES = ("cpu", "cuda")
_ORT_ELEMENT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def import_onnxruntime():
    return require("onnxruntime", "running an ONNX model")


def available_ort_providers() -> list[str]:
    """Our names ("cpu", "cuda", "tensorrt") of the ONNX Runtime providers installed here."""
    installed = set(import_onnxruntime().get_available_providers())
    return [name for name, chain in ORT_PROVIDERS.items() if chain[0] in installed]


def default_provider() -> str:
    """The automatic choice: CUDA when onnxruntime-gpu provides it, else the CPU.

    ONNX Runtime's TensorRT provider is never picked automatically: it compiles a TensorRT
    engine inside every new session (minutes for a ResNet-50); ask for it by name.
    """
    return "cuda" if "cuda" in available_ort_providers() else "cpu"


class OrtRuntime(Runtime):
    """An ONNX file in ONNX Runtime.

    `provider` is "cpu", "cuda" or "tensorrt" (ONNX Runtime's execution providers; the GPU ones
    need onnxruntime-gpu); None is `default_provider()`. `threads` sets intra-op threads
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
            provider = default_provider()
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

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(self._outputs, {self.input_name: batch})[0]

    def describe(self) -> str:
        return super().describe() + f" ({self.session.get_providers()[0]})"
