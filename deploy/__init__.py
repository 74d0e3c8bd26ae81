"""Running artifacts: one runtime interface (ONNX Runtime, TensorRT, PyTorch), the Predictor,
bundles, Triton repositories, the artifact metadata and engine manifests, atomic files.

Imports `resnet` only (DESIGN.md). Optional dependencies (onnxruntime, tensorrt, PIL) are
imported inside the functions that need them.
"""

from .artifact import ModelInfo, OnnxInterface, inspect_onnx, read_onnx_info
from .errors import ArtifactError, MissingDependencyError
from .predictor import Prediction, Predictor
from .runtime import DeviceRuntime, OrtRuntime, Runtime, available_ort_providers

__all__ = [
    "ArtifactError",
    "DeviceRuntime",
    "MissingDependencyError",
    "ModelInfo",
    "OrtRuntime",
    "Prediction",
    "Predictor",
    "Runtime",
    "OnnxInterface",
    "available_ort_providers",
    "inspect_onnx",
    "read_onnx_info",
]
