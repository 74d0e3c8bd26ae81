"""What a benchmark argument names, opened as a `Runtime`.

`.plan`/`.engine` -> TensorRT; `.onnx` -> ONNX Runtime; `.pt`/`.pth` checkpoint -> PyTorch
(architecture read from the checkpoint); the word `pytorch` -> PyTorch with the architecture of
the other target (random weights, the same arithmetic); no file but `--depth` -> PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from deploy.artifact import ModelInfo
from deploy.errors import ArtifactError
from deploy.runtime import OrtRuntime, Runtime
from deploy.torch_runtime import torch_runtime
from resnet.checkpoint import load_model
from resnet.errors import ToolkitError
from resnet.model import ResNet
from resnet.registry import create
from resnet.summary import count_macs

ENGINE_SUFFIXES = (".plan", ".engine")
CHECKPOINT_SUFFIXES = (".pt", ".pth")
PYTORCH_WORD = "pytorch"


@dataclass(frozen=True)
class TargetOptions:
    provider: str | None = None  # ONNX Runtime: cpu, cuda, tensorrt (None: best installed)
    device: str | None = None  # PyTorch: cpu or cuda (None: cuda when available)
    precision: str = "fp32"  # PyTorch
    compile: bool = False
    channels_last: bool = False
    cuda_graphs: bool = False  # PyTorch on a GPU, TensorRT engines
    threads: int | None = None  # CPU backends
    max_batch: int = 256  # PyTorch on a GPU: the largest batch its buffers hold


@dataclass
class Target:
    label: str
    runtime: Runtime
    info: ModelInfo | None


def _pytorch(model: ResNet, label: str, options: TargetOptions) -> Target:
    device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    runtime = torch_runtime(
        model,
        device=device,
        precision=options.precision,
        channels_last=options.channels_last,
        compile=options.compile,
        cuda_graphs=options.cuda_graphs,
        threads=options.threads,
        max_batch=options.max_batch,
    )
    suffix = " ".join(
        filter(
            None,
            [
                "compiled" if options.compile else "eager",
                options.precision if options.precision != "fp32" else "",
                "channels-last" if options.channels_last else "",
                "cuda-graphs" if options.cuda_graphs else "",
            ],
        )
    )
    return Target(f"{label} (pytorch {suffix})", runtime, runtime.info)


def open_target(
    spec: str | None, options: TargetOptions, *, like: Target | None = None, model_args: dict | None = None
) -> Target:
    """Open one benchmark target (see the module docstring). `like` is the target `pytorch` copies."""
    if spec is None:
        if not model_args or model_args.get("depth") is None:
            raise ToolkitError("name a model file (.plan, .engine, .onnx, .pt, .pth) or give --depth")
        model = create(**model_args)
        return _pytorch(model, model.name, options)
    if spec == PYTORCH_WORD:
        if like is None or like.info is None or like.info.to_architecture() is None:
            raise ToolkitError(
                "'pytorch' compares with the PyTorch model of the other target, which needs a file made by resnet-export or resnet-build"
            )
        info = like.info
        model = ResNet.from_architecture(info.to_architecture(), dataset=info.dataset, input_spec=info.input_spec)
        return _pytorch(model, info.name, options)
    path = Path(spec)
    if not path.is_file():
        raise ArtifactError(f"model file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in ENGINE_SUFFIXES:
        from deploy.tensorrt_runtime import TensorRTRuntime

        runtime = TensorRTRuntime(path, cuda_graphs=options.cuda_graphs)
        return Target(f"{path.name} (tensorrt)", runtime, runtime.info)
    if suffix == ".onnx":
        runtime = OrtRuntime(path, provider=options.provider, threads=options.threads)
        return Target(f"{path.name} (onnxruntime {runtime.provider})", runtime, runtime.info)
    if suffix in CHECKPOINT_SUFFIXES:
        return _pytorch(load_model(path), path.name, options)
    raise ToolkitError(
        f"cannot tell the backend of {path.name}: use .plan or .engine (TensorRT), .onnx (ONNX Runtime), .pt or .pth (PyTorch)"
    )


def flops_per_image(info: ModelInfo | None) -> float | None:
    """2 x the multiply-accumulates of one image through the model (None when unknown)."""
    if info is None or info.to_architecture() is None:
        return None
    spec = info.input_spec
    with torch.device("meta"):
        model = ResNet.from_architecture(info.to_architecture(), dataset=info.dataset, input_spec=spec)
    macs, _ = count_macs(model, (1, spec.channels, spec.height, spec.width))
    return 2.0 * macs
