"""`open_runtime`: the one place that decides which backend runs a file.

    .plan, .engine   TensorRT            (TensorRTRuntime)
    .onnx            ONNX Runtime        (OrtCudaRuntime on a CUDA GPU, else OrtRuntime)
    .pt, .pth        PyTorch checkpoint  (architecture read from its keys; TorchCpuRuntime or TorchCudaRuntime)

`RuntimeOptions` (`deploy.runtimes.base`) carries what each backend may be asked (provider,
threads, CUDA graphs, PyTorch's device and arithmetic); options a backend doesn't use are
ignored by it.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.errors import ArtifactError, ToolkitError
from toolkit.files import input_file

from .base import Runtime, RuntimeOptions

BACKENDS = {".plan": "tensorrt", ".engine": "tensorrt", ".onnx": "onnxruntime", ".pt": "pytorch", ".pth": "pytorch"}
BACKEND_NAMES = tuple(dict.fromkeys(BACKENDS.values()))  # "tensorrt", "onnxruntime", "pytorch"


def backend_of(path: str | Path) -> str:
    """ "tensorrt", "onnxruntime" or "pytorch", from the file's suffix (see the module docstring)."""
    path = Path(path)
    backend = BACKENDS.get(path.suffix.lower())
    if backend is None:
        raise ToolkitError(
            f"cannot tell the backend of {path.name}: use .plan or .engine (TensorRT), .onnx (ONNX Runtime), .pt or .pth (PyTorch)"
        )
    return backend


def open_runtime(
    path: str | Path, options: RuntimeOptions = RuntimeOptions(), *, backend: str | None = None
) -> Runtime:
    """The runtime for a model file, by its suffix. `backend`, when given, is the backend the
    caller requires; a file of another kind is an error that says what to do instead."""
    path = input_file(path, "model file", "a model file (.onnx, .plan, .engine, .pt, .pth)", ArtifactError)
    kind = backend_of(path)
    if backend is not None and backend != kind:
        if backend == "tensorrt":
            raise ToolkitError(f"{path.name} is not an engine; build one with resnet-build {path}")
        raise ToolkitError(f"{path.name} runs in {kind}, not {backend}")
    if kind == "tensorrt":
        from .tensorrt import TensorRTRuntime

        return TensorRTRuntime(path, cuda_graphs=options.cuda_graphs)
    if kind == "onnxruntime":
        return _open_onnx(path, options)
    from resnet.checkpoint import load_model

    from .pytorch import torch_runtime

    return torch_runtime(load_model(path), options)


def _open_onnx(path: Path, options: RuntimeOptions) -> Runtime:
    """ONNX Runtime: on CUDA with device buffers (`OrtCudaRuntime`) when the CUDA provider is
    asked for, or chosen automatically, and PyTorch sees the GPU; else NumPy in and out."""
    from .gpu import cuda_available
    from .onnxruntime import OrtCudaRuntime, OrtRuntime, default_provider

    provider = options.provider or default_provider()
    if provider == "cuda" and cuda_available():
        return OrtCudaRuntime(
            path,
            cuda_graphs=options.cuda_graphs,
            conv_search=options.conv_search,
            prefer_nhwc=options.prefer_nhwc,
            max_batch=options.max_batch,
        )
    if options.cuda_graphs:
        raise ToolkitError("--cuda-graph with ONNX Runtime needs its CUDA provider and a GPU that PyTorch sees")
    return OrtRuntime(path, provider=options.provider, threads=options.threads)
