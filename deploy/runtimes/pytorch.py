"""A PyTorch model behind the `Runtime` interface: eager, channels-last, torch.compile, CUDA graphs.

Used by the benchmark (the PyTorch baselines an engine must beat) and by `--vs pytorch`. On a
CPU a call is one forward pass; on a GPU it is a `DeviceRuntime`, whose host-to-device copy,
forward pass and device-to-host copy are timed apart.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from resnet.model import ResNet
from toolkit.errors import ToolkitError
from toolkit.precision import PRECISIONS, TORCH_PRECISIONS, check_precision

from ..artifacts.metadata import ModelInfo
from .base import DeviceRuntime, Runtime, RuntimeOptions
from .gpu import cuda_available, require_cuda

TORCH_DTYPES = {name: getattr(torch, PRECISIONS[name].torch_dtype) for name in TORCH_PRECISIONS}


def _prepare(model: ResNet, device: str, precision: str, channels_last: bool, compile: bool):
    """A copy of `model` in eval mode, on `device`, in `precision` (and channels-last, compiled):
    the caller's model is left as it was (mode, dtype, layout), so it can still be exported."""
    check_precision(precision, TORCH_PRECISIONS)
    if not isinstance(model, ResNet):
        raise ToolkitError(f"a PyTorch runtime takes a resnet.ResNet (see resnet.create), got {type(model).__name__}")
    model = copy.deepcopy(model).eval().to(device=device, dtype=TORCH_DTYPES[precision])
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if compile else model
    return model, forward


def _settings(runtime) -> dict:
    return {
        "precision": runtime.precision,
        "channels_last": runtime.channels_last,
        "compile": runtime.compiled,
        "cuda_graphs": getattr(runtime, "cuda_graphs", False),
        "threads": getattr(runtime, "threads", None),
    }


def _describe_options(runtime) -> str:
    options = [runtime.precision]
    if runtime.channels_last:
        options.append("channels-last")
    if runtime.compiled:
        options.append("torch.compile")
    if getattr(runtime, "cuda_graphs", False):
        options.append("CUDA graphs")
    return ", ".join(options)


def torch_runtime(model: ResNet, options: RuntimeOptions = RuntimeOptions()) -> Runtime:
    """The right PyTorch runtime for `options.device` ("cpu", "cuda[:i]"; None: cuda when available)."""
    device = options.device or ("cuda" if cuda_available() else "cpu")
    common = dict(precision=options.precision, channels_last=options.channels_last, compile=options.compile)
    if device.startswith("cuda"):
        return TorchCudaRuntime(
            model, device=device, cuda_graphs=options.cuda_graphs, max_batch=options.max_batch, **common
        )
    if device != "cpu":
        raise ToolkitError(f"device must be cpu or cuda, got {device!r}")
    if options.cuda_graphs:
        raise ToolkitError("CUDA graphs need a GPU (--device cuda)")
    return TorchCpuRuntime(model, threads=options.threads, **common)


class TorchCpuRuntime(Runtime):
    """A ResNet on the CPU. `threads` sets torch's intra-op threads (process-wide)."""

    backend = "pytorch"
    device = "cpu"

    def __init__(
        self,
        model: ResNet,
        *,
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool = False,
        threads: int | None = None,
    ) -> None:
        if threads is not None:
            if threads < 1:
                raise ToolkitError(f"threads must be at least 1, got {threads}")
            torch.set_num_threads(threads)
        self.precision, self.channels_last, self.compiled, self.threads = precision, channels_last, compile, threads
        self.model, self._forward = _prepare(model, "cpu", precision, channels_last, compile)
        spec = model.input_spec
        self.input_name, self.output_name = "input", "logits"
        self.input_shape = (None, spec.channels, spec.height, spec.width)
        self.input_dtype = np.dtype(np.float32)
        self.info = ModelInfo.from_model(model, precision=precision)
        self._dtype = TORCH_DTYPES[precision]

    def _run(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self._dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self._forward(x).float().numpy()

    def settings(self) -> dict:
        return _settings(self)

    def describe(self) -> str:
        return f"pytorch {torch.__version__} on cpu ({_describe_options(self)}, {torch.get_num_threads()} threads)"


class TorchCudaRuntime(DeviceRuntime):
    """A ResNet on a CUDA GPU, with static device buffers for batches up to `max_batch` and,
    when `cuda_graphs=True`, one CUDA graph captured per batch size."""

    backend = "pytorch"

    def __init__(
        self,
        model: ResNet,
        *,
        device: str = "cuda",
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool = False,
        cuda_graphs: bool = False,
        max_batch: int = 256,
    ) -> None:
        require_cuda("PyTorch on --device cuda")
        self.device = device
        self.precision, self.channels_last, self.compiled, self.cuda_graphs = (
            precision,
            channels_last,
            compile,
            cuda_graphs,
        )
        self.model, self._forward = _prepare(model, device, precision, channels_last, compile)
        spec = model.input_spec
        self.input_name, self.output_name = "input", "logits"
        self.input_shape = (None, spec.channels, spec.height, spec.width)
        # FP16 models take FP16 from the host (half the transfer); BF16 has no NumPy type.
        self.input_dtype = np.dtype(np.float16 if precision == "fp16" else np.float32)
        self.info = ModelInfo.from_model(model, precision=precision)
        self.max_batch = max_batch
        self.stream = torch.cuda.Stream(device=device)
        # The device input holds the host's dtype; the model's dtype and layout are made from it
        # inside `execute` (`_model_input`), as eager code converts on the device.
        self.allocate(max_batch, spec.num_classes, getattr(torch, self.input_dtype.name), torch.float32)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._model_input = torch.empty(
            (max_batch, *self.input_shape[1:]), dtype=TORCH_DTYPES[precision], device=device
        ).contiguous(memory_format=memory_format)
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}

    @property
    def batch_range(self) -> tuple[int, int]:
        return (1, self.max_batch)

    def _step(self, n: int) -> None:
        # Conversion to the model's dtype and layout is part of the model's work, as in eager code.
        self._model_input[:n].copy_(self._input[:n])
        self._output[:n].copy_(self._forward(self._model_input[:n]))

    def execute(self, n: int) -> None:
        with torch.cuda.stream(self.stream), torch.inference_mode():
            if not self.cuda_graphs:
                self._step(n)
                return
            graph = self._graphs.get(n)
            if graph is None:
                graph = self._capture(n)
            graph.replay()

    def _capture(self, n: int) -> torch.cuda.CUDAGraph:
        for _ in range(3):  # warm up cuDNN's algorithm choice (and torch.compile) before capture
            self._step(n)
        self.stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            self._step(n)
        self._graphs[n] = graph
        return graph

    def close(self) -> None:
        self._graphs.clear()

    def settings(self) -> dict:
        return _settings(self)

    def describe(self) -> str:
        return f"pytorch {torch.__version__} on {torch.cuda.get_device_name(self.device)} ({_describe_options(self)})"
