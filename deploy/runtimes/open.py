"""`open_runtime`: the one place that decides which backend runs a file.

    .plan, .engine   TensorRT            (TensorRTRuntime)
    .onnx            ONNX Runtime        (OrtCudaRuntime on a CUDA GPU, else OrtRuntime)
    .pt, .pth        PyTorch checkpoint  (architecture read from its keys; TorchCpuRuntime or TorchCudaRuntime)
    a resnet.ResNet  PyTorch             (the model as it is in memory)

OpenVINO runs ONNX files too, on CPUs, when asked (`backend="openvino"`, or "auto": `choose_backend`).

`RuntimeOptions` (`deploy.runtimes.base`) carries what a backend may be asked (provider,
threads, CUDA graphs, device, arithmetic, and the two capabilities: named outputs and the
profiler); each backend honours some (`choices.HONOURED`), and an option set for a backend that
would ignore it is refused here, in one sentence, before anything is loaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

from toolkit.errors import ArtifactError, ToolkitError
from toolkit.files import input_file

from ..artifacts.bundle import ENGINE_NAME, ONNX_NAME, ORT_NAME
from .base import Runtime, RuntimeOptions
from .choices import ALTERNATIVES, BACKEND_CHOICES, BACKEND_NAMES, BACKENDS  # noqa: F401 - the tables, re-exported


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
    docs/benchmark.md. On ARM no CPU qualifies (VNNI and those BF16 flags are x86's): ONNX Runtime,
    whose ARM INT8 kernels are exact on every ARMv8 CPU (`cpu` module), and OpenVINO's ARM plugin was
    never measured here."""
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
    from ..artifacts.onnx_file import metadata_props

    return "openvino" if metadata_props(path).get("precision") == "int8" and features.vnni else kind


def open_runtime(path, options: RuntimeOptions = RuntimeOptions(), *, backend: str | None = None) -> Runtime:
    """The runtime for a model file, by its suffix, or for a `resnet.ResNet` (PyTorch). `backend`
    (else `options.backend`), when given, is the backend the caller requires: "openvino" runs an
    ONNX file in OpenVINO, "auto" chooses (`choose_backend`); a file of another kind is an error
    that says what to do instead. An option the chosen backend would ignore is refused
    (`RuntimeOptions.unhonoured`) before anything is loaded."""
    if _is_torch_module(path):
        return _open_module(path, options)
    path = input_file(path, "model file", "a model file (.onnx, .plan, .engine, .pt, .pth)", ArtifactError)
    kind = backend_of(path)
    backend = backend or options.backend
    if backend == "auto":
        backend = choose_backend(path, options)
    if backend is not None and backend != kind and backend not in ALTERNATIVES.get(kind, ()):
        if backend == "tensorrt":
            raise ToolkitError(f"{path.name} is not an engine; build one with resnet-build {path}")
        raise ToolkitError(f"{path.name} runs in {kind}, not {backend}")
    chosen = backend or kind
    refusal = options.unhonoured(chosen)
    if refusal is not None:
        raise ToolkitError(f"{path.name}: {refusal}")
    if kind == "onnxruntime":  # an ONNX file, in whichever backend: its INT8 parameters are sane
        _check_quantization(path)
    return OPENERS[chosen](path, options)


def _open_openvino(path: Path, options: RuntimeOptions) -> Runtime:
    """OpenVINO on the CPU, for an ONNX file."""
    from .openvino import OpenVinoRuntime

    return OpenVinoRuntime(
        path,
        precision=options.precision,
        threads=options.threads,
        hint=options.openvino_hint,
        outputs=options.outputs,
        layer_times=options.layer_times,
    )


def _open_checkpoint(path: Path, options: RuntimeOptions) -> Runtime:
    """A PyTorch checkpoint: its model (the architecture read from its keys) in PyTorch."""
    from resnet.checkpoint import load_model

    return _open_module(load_model(path), options)


def _check_quantization(path: Path) -> None:
    """`check_quantization` of an ONNX file the wire reader can read (of one it can't, the backend
    says why, in its own words)."""
    from ..artifacts.onnx_file import check_quantization
    from ..artifacts.onnx_wire import read_onnx_facts

    try:
        facts = read_onnx_facts(path)
    except ArtifactError:
        return
    check_quantization(path, facts)


def _open_engine(path: Path, options: RuntimeOptions) -> Runtime:
    """TensorRT: on PyTorch's device tensors where PyTorch is installed (`TensorRTRuntime`: the
    copies timed apart, CUDA graphs, named outputs), else on the CUDA runtime library's own memory
    (`TensorRTHostRuntime`, a board's)."""
    from .gpu import torch_installed
    from .tensorrt import TensorRTHostRuntime, TensorRTRuntime

    if torch_installed():
        return TensorRTRuntime(
            path,
            cuda_graphs=options.cuda_graphs,
            device=options.device_index,
            outputs=options.outputs,
            layer_times=options.layer_times,
        )
    if options.cuda_graphs or options.outputs:
        what = "--cuda-graph" if options.cuda_graphs else "named outputs"
        raise ToolkitError(f"{what} with TensorRT need PyTorch's device tensors, and PyTorch is not installed here")
    return TensorRTHostRuntime(path, device=options.device_index, layer_times=options.layer_times)


def _is_torch_module(value) -> bool:
    """Whether `value` is a PyTorch module (a `resnet.ResNet`, say); without importing torch when no one has."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.nn.Module)


def _open_module(model, options: RuntimeOptions) -> Runtime:
    """A `resnet.ResNet` in PyTorch (`pytorch.torch_runtime`)."""
    refusal = options.unhonoured("pytorch")
    if refusal is not None:
        raise ToolkitError(refusal)
    from .pytorch import torch_runtime

    return torch_runtime(model, options)


def _open_onnx(path: Path, options: RuntimeOptions) -> Runtime:
    """ONNX Runtime: on CUDA with device buffers (`OrtCudaRuntime`) when the CUDA provider is
    asked for (by `provider`, or `device`), or chosen automatically, and PyTorch sees the GPU;
    else NumPy in and out (named outputs too: they come back as host arrays)."""
    from .gpu import cuda_available
    from .onnxruntime import OrtCudaRuntime, OrtRuntime, default_provider

    device = options.device.split(":")[0] if options.device else None
    provider = options.provider or device or default_provider()
    if provider == "cuda" and cuda_available() and not options.outputs:
        return OrtCudaRuntime(
            path,
            device=options.device_index,
            cuda_graphs=options.cuda_graphs,
            conv_search=options.conv_search,
            prefer_nhwc=options.prefer_nhwc,
            buffer_rows=options.buffer_rows,
            layer_times=options.layer_times,
        )
    if options.cuda_graphs:
        raise ToolkitError("--cuda-graph with ONNX Runtime needs its CUDA provider and a GPU that PyTorch sees")
    if options.device_index:
        raise ToolkitError(
            f"device {options.device}: ONNX Runtime with host arrays (named outputs, or no GPU that PyTorch sees) runs "
            "on the first GPU only; choose the GPU with CUDA_VISIBLE_DEVICES and give --device cuda"
        )
    return OrtRuntime(
        path,
        provider=options.provider or device,
        threads=options.threads,
        outputs=options.outputs,
        layer_times=options.layer_times,
    )


def open_bundle(
    bundle, *, backend: str | None = None, device: str | None = None, precision: str | None = None
) -> Runtime:
    """The runtime for an opened bundle (`deploy.artifacts.bundle.Bundle`): its engine when
    TensorRT and a compatible GPU are here, else its ONNX file, in the runtime the bundle names
    (OpenVINO, in its precision), falling back to ONNX Runtime (said on stderr) where that can't
    run here, else in ONNX Runtime: on the CPU, its `model.ort` where it carries one written for
    this machine.

    `backend` "tensorrt" demands the engine (an error, not a fallback, when it can't run);
    "openvino" demands OpenVINO; "onnxruntime" skips both; "auto" takes the engine where it can
    run, else the backend `--backend auto` chooses for the ONNX file (`choose_backend`). `device`
    ("cpu" or "cuda") is where ONNX Runtime runs; `precision` overrides the bundle's.
    """
    from toolkit.errors import MissingDependencyError
    from toolkit.files import notice

    from .choices import BUNDLE_BACKEND_CHOICES

    if backend not in (None, *BUNDLE_BACKEND_CHOICES):
        raise ToolkitError(
            f"a bundle holds an ONNX file (and an engine where one was built), no PyTorch checkpoint: it runs in "
            f"{', '.join(BUNDLE_BACKEND_CHOICES)}, not {backend}"
        )
    if backend in ("auto", "tensorrt") or (backend is None and bundle.engine is not None):
        if backend == "tensorrt" and bundle.engine is None:
            raise ArtifactError(
                f"bundle {bundle.folder} has no engine; build one on this machine: resnet-build {bundle.onnx}"
            )
        if bundle.engine is not None:
            bundle.verify(ENGINE_NAME)  # an altered engine is refused, never passed over for the ONNX file
            try:
                return open_runtime(bundle.engine, backend="tensorrt")
            except (MissingDependencyError, ArtifactError):
                if backend == "tensorrt":
                    raise
    named = bundle.runtime
    options = RuntimeOptions(device=device, precision=precision or named.get("precision", "fp32"))
    if backend == "auto":
        chosen = choose_backend(bundle.onnx, options)
        return _verified_while(bundle, ONNX_NAME, lambda: open_runtime(bundle.onnx, options, backend=chosen))
    if backend == "openvino" or (backend is None and named.get("backend") == "openvino" and device != "cuda"):
        try:
            return _verified_while(
                bundle,
                ONNX_NAME,
                lambda: open_runtime(bundle.onnx, RuntimeOptions(precision=options.precision), backend="openvino"),
            )
        except ToolkitError as error:
            if backend == "openvino" or ONNX_NAME not in bundle.verified:
                raise
            notice(f"the bundle names OpenVINO, which can't run here ({error}); running it in ONNX Runtime")
    if _runs_ort_format(bundle, device):
        return _verified_while(bundle, ORT_NAME, lambda: _open_onnx(bundle.ort, RuntimeOptions(device="cpu")))
    return _verified_while(
        bundle, ONNX_NAME, lambda: open_runtime(bundle.onnx, RuntimeOptions(device=device), backend="onnxruntime")
    )


def _runs_ort_format(bundle, device: str | None) -> bool:
    """Whether the bundle's `model.ort` runs here: it carries one, written for this machine
    (`ort_format.ort_format_problem`), and ONNX Runtime runs on the CPU (on a GPU its ONNX file
    runs: model.ort was optimized for the CPU)."""
    if bundle.ort is None:
        return False
    from .onnxruntime import default_provider
    from .ort_format import ort_format_problem

    return (device or default_provider()) == "cpu" and ort_format_problem(bundle.ort_format) is None


def _verified_while(bundle, model: str, opening) -> Runtime:
    """`opening()`, the runtime of the bundle's `model` file, while a thread verifies the checksums
    of that file and of what it reads (hashing lets go of the GIL: it overlaps the runtime's
    loading, on a board's second core); a file that fails is refused, and the runtime closed."""
    import threading

    failed: list[BaseException] = []

    def verify() -> None:
        try:
            bundle.verify(model)
        except BaseException as error:  # noqa: BLE001 - handed to the opening thread
            failed.append(error)

    checking = threading.Thread(target=verify, name="bundle-checksums", daemon=True)
    checking.start()
    try:
        runtime = opening()
    except BaseException:
        checking.join()
        if failed:  # the file was altered: that is the reason, not what the runtime made of it
            raise failed[0] from None
        raise
    checking.join()
    if failed:
        runtime.close()
        raise failed[0]
    return runtime


# The backend chosen for a file -> what opens it (`open_runtime`).
OPENERS = {
    "onnxruntime": _open_onnx,
    "openvino": _open_openvino,
    "tensorrt": _open_engine,
    "pytorch": _open_checkpoint,
}
