"""Running and shipping artifacts.

Two layers, each in a room of its own:

- `deploy.artifacts`: what artifacts say about themselves (ONNX metadata, engine manifests,
  tensor descriptions, labels);
- `deploy.runtimes`: one runtime interface over ONNX Runtime, TensorRT and PyTorch, and
  `open_runtime`, which picks the backend a file needs;

and on top of them the deployment formats: the `Predictor` (images in, classes out), bundles
for boards (`deploy.bundle`), Triton model repositories (`deploy.triton`), and `resnet-deploy`.

Imports `resnet` and `toolkit` only. Optional dependencies (onnxruntime, tensorrt, PIL) are
imported inside the functions that need them.
"""

from toolkit.errors import ArtifactError, MissingDependencyError

from .artifacts import ModelInfo, OnnxSignature, TensorInfo, inspect_onnx, read_onnx_info
from .predictor import Prediction, Predictor
from .runtimes import DeviceRuntime, OrtRuntime, Runtime, RuntimeOptions, available_ort_providers, open_runtime

__all__ = [
    "ArtifactError",
    "DeviceRuntime",
    "MissingDependencyError",
    "ModelInfo",
    "OnnxSignature",
    "OrtRuntime",
    "Prediction",
    "Predictor",
    "Runtime",
    "RuntimeOptions",
    "TensorInfo",
    "available_ort_providers",
    "inspect_onnx",
    "open_runtime",
    "read_onnx_info",
]
