"""What a benchmark argument names, opened as a `Runtime`.

A file runs in the backend its suffix names (`deploy.runtimes.open_runtime`: `.plan`/`.engine`
TensorRT, `.onnx` ONNX Runtime, `.pt`/`.pth` PyTorch); the word `pytorch` is PyTorch with the
architecture of the other target (random weights, the same arithmetic); no file but `--depth`
is a registered model in PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy.artifacts.metadata import ModelInfo
from deploy.runtimes import Runtime, RuntimeOptions, open_runtime
from deploy.runtimes.gpu import torch_installed
from resnet.registry import ModelOptions
from toolkit.errors import MissingDependencyError, ToolkitError
from toolkit.optional import INSTALL

PYTORCH_WORD = "pytorch"


@dataclass
class Target:
    label: str
    runtime: Runtime
    info: ModelInfo | None


def _pytorch_label(name: str, options: RuntimeOptions) -> str:
    words = [
        "compiled" if options.compile else "eager",
        options.precision if options.precision != "fp32" else "",
        "channels-last" if options.channels_last else "",
        "cuda-graphs" if options.cuda_graphs else "",
    ]
    return f"{name} (pytorch {' '.join(filter(None, words))})"


def _pytorch(model, name: str, options: RuntimeOptions) -> Target:
    runtime = open_runtime(model, options)
    return Target(_pytorch_label(name, options), runtime, runtime.info)


def open_target(
    name: str | None, options: RuntimeOptions, *, like: Target | None = None, model: ModelOptions | None = None
) -> Target:
    """Open one benchmark target (see the module docstring): the file `name`, or `pytorch` (the
    architecture of `like` in PyTorch), or, without a name, the registered `model` in PyTorch."""
    if (name is None or name == PYTORCH_WORD) and not torch_installed():
        what = "--vs pytorch" if name == PYTORCH_WORD else "--depth (a model in PyTorch)"
        raise MissingDependencyError(f"{what} needs PyTorch, which is not installed here: {INSTALL['torch']}")
    if name is None:
        if model is None:
            raise ToolkitError("name a model file (.plan, .engine, .onnx, .pt, .pth) or give --depth")
        network = model.create()
        return _pytorch(network, network.name, options)
    if name == PYTORCH_WORD:
        if like is None or like.info is None:
            raise ToolkitError(
                "'pytorch' compares with the PyTorch model of the other target, which needs a file made by resnet-export or resnet-build"
            )
        from resnet.model import ResNet

        info = like.info
        network = ResNet.from_architecture(info.architecture, dataset=info.dataset, input_spec=info.input_spec)
        return _pytorch(network, info.name, options)
    path = Path(name)
    runtime = open_runtime(path, options)
    if runtime.backend == "pytorch":
        label = _pytorch_label(path.name, options)
    elif runtime.backend == "onnxruntime":
        label = f"{path.name} (onnxruntime {runtime.provider}{' cuda-graphs' if options.cuda_graphs else ''})"
    elif runtime.backend == "openvino":
        hint = "" if runtime.hint == "latency" else f" {runtime.hint}"
        label = f"{path.name} (openvino cpu {runtime.arithmetic}{hint})"
    else:
        label = f"{path.name} ({runtime.backend})"
    return Target(label, runtime, runtime.info)


def flops_per_image(info: ModelInfo | None) -> float | None:
    """2 x the multiply-accumulates of one image through the model (None when unknown), from its
    architecture (`Architecture.macs`: no PyTorch needed)."""
    if info is None:
        return None
    spec = info.input_spec
    return 2.0 * info.architecture.macs(spec.height, spec.width, spec.channels)
