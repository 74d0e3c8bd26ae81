"""Running and shipping artifacts.

The foundation every stage runs on (export and benchmark build on it):

- `deploy.artifacts`: what artifacts say about themselves (ONNX metadata, engine manifests, tensor
  descriptions, labels, bundles read and verified);
- `deploy.runtimes`: one runtime interface over ONNX Runtime, OpenVINO, TensorRT and PyTorch, and
  `open_runtime` (and `open_bundle`), which picks the backend a file needs;
- images to inputs (`deploy.preprocess`), image folders (`deploy.datasets`), the `Predictor` (images
  in, classes out) and accuracy on labelled images (`deploy.evaluate`);

then what every deployment target ships (`deploy.shipping`), and one room per target: bundles
for boards (`deploy.bundle`), Triton (`deploy.triton`: repositories, the server `nvidia-pytriton`
ships, Kubernetes manifests of NVIDIA's container), Ray Serve (`deploy.ray_serve`); the commands
`resnet-deploy` and `resnet-eval` (`deploy.cli`). No target imports another.

Imports `resnet` and `toolkit` only. Optional dependencies (onnxruntime, openvino, tensorrt, PIL,
tritonclient, ray) are imported inside the functions that need them.
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
