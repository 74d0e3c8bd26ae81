"""Running artifacts: one runtime interface, the artifact metadata, atomic files.

Imports `resnet` only (DESIGN.md). Optional dependencies (onnxruntime, tensorrt, PIL) are
imported inside the functions that need them.
"""
from .artifact import ModelInfo, read_onnx_info
from .errors import ArtifactError, MissingDependencyError
from .runtime import OrtRuntime, Runtime, available_ort_providers

__all__ = ["ArtifactError", "MissingDependencyError", "ModelInfo", "OrtRuntime", "Runtime", "available_ort_providers", "read_onnx_info"]
