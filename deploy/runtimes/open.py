"""`open_runtime`: the one place that decides which backend runs a file.

    .plan, .engine   TensorRT            (TensorRTRuntime)
    .onnx            ONNX Runtime        (OrtCudaRuntime on a CUDA GPU, else OrtRuntime)
    .pt, .pth        PyTorch checkpoint  (architecture read from its keys; TorchCpuRuntime or TorchCudaRuntime)

OpenVINO runs ONNX files too, on CPUs, when asked (`backend="openvino"`, or "auto": `choose_backend`).

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
# Backends that run a kind of file besides its default one: OpenVINO runs ONNX files on CPUs.
ALTERNATIVES = {"onnxruntime": ("openvino",)}
# "tensorrt", "onnxruntime", "pytorch", "openvino"; "auto" picks among a file's (see `choose_backend`).
BACKEND_NAMES = (*dict.fromkeys(BACKENDS.values()), "openvino")
BACKEND_CHOICES = (*BACKEND_NAMES, "auto")


def backend_of(path: str | Path) -> str:
    """ "tensorrt", "onnxruntime" or "pytorch", from the file's suffix (see the module docstring)."""
    path = Path(path)
    backend = BACKENDS.get(path.suffix.lower())
    if backend is None:
        raise ToolkitError(
            f"cannot tell the backend of {path.name}: use .plan or .engine (TensorRT), .onnx (ONNX Runtime), .pt or .pth (PyTorch)"
        )
    return backend


def choose_backend(path: Path, options: RuntimeOptions) -> str:
    """`--backend auto`: the backend for a file, by a documented rule. A file only one backend runs
    gets it; an ONNX file runs in OpenVINO, where it is installed, no CUDA GPU is the default and
    the CPU computes the asked arithmetic natively in it (INT8 files on a CPU with VNNI; BF16 on
    one with AVX512_BF16 or AMX: ONNX Runtime has no BF16 on CPUs), and in ONNX Runtime otherwise
    (FP32 and FP16 files: OpenVINO FP32 measured level with it). Measured on the 2-core EPYC:
    docs/benchmark.md."""
    import importlib.util

    from .cpu import CpuFeatures
    from .gpu import cuda_available

    kind = backend_of(path)
    if kind != "onnxruntime" or cuda_available() or options.provider not in (None, "cpu"):
        return kind
    if importlib.util.find_spec("openvino") is None:
        return kind
    features = CpuFeatures.probe()
    if options.precision == "bf16":
        return "openvino"  # the only backend here that computes BF16 (refused without the flags)
    from ..artifacts.onnx_file import inspect_onnx

    return "openvino" if inspect_onnx(path).precision == "int8" and features.vnni else kind


def open_runtime(
    path: str | Path, options: RuntimeOptions = RuntimeOptions(), *, backend: str | None = None
) -> Runtime:
    """The runtime for a model file, by its suffix. `backend` (else `options.backend`), when
    given, is the backend the caller requires: "openvino" runs an ONNX file in OpenVINO, "auto"
    chooses (`choose_backend`); a file of another kind is an error that says what to do instead."""
    path = input_file(path, "model file", "a model file (.onnx, .plan, .engine, .pt, .pth)", ArtifactError)
    kind = backend_of(path)
    backend = backend or options.backend
    if backend == "auto":
        backend = choose_backend(path, options)
    if backend in ALTERNATIVES.get(kind, ()):
        from .openvino import OpenVinoRuntime

        return OpenVinoRuntime(path, precision=options.precision, threads=options.threads, hint=options.openvino_hint)
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
