"""The runtimes every stage uses: one `Runtime` interface over ONNX Runtime, OpenVINO, TensorRT
and PyTorch (running a batch; and, asked for when opened, named intermediate outputs and the
backend's own profiler), and `open_runtime`, which picks the backend a file needs and refuses the
options it would ignore. The choice tables live in the leaf `choices`.

Imports `deploy.artifacts`, `resnet` and `toolkit`; the deployment formats (Predictor, bundles,
Triton) and the other packages build on it, and reach a backend only through `open_runtime`.
Optional packages (onnxruntime, openvino, tensorrt, torch) are imported inside the functions that
need them.
"""

from .base import DeviceRuntime, Runtime, RuntimeOptions
from .onnxruntime import (
    OrtCudaRuntime,
    OrtRuntime,
    available_ort_providers,
    default_provider,
    provider_problem,
    usable_ort_providers,
)
from .open import BACKEND_NAMES, BACKENDS, backend_of, open_bundle, open_runtime

__all__ = [
    "BACKENDS",
    "BACKEND_NAMES",
    "DeviceRuntime",
    "OrtCudaRuntime",
    "OrtRuntime",
    "Runtime",
    "RuntimeOptions",
    "available_ort_providers",
    "backend_of",
    "default_provider",
    "open_bundle",
    "open_runtime",
    "provider_problem",
    "usable_ort_providers",
]
