"""A PyTorch model behind the `Runtime` interface: eager, channels-last, torch.compile, CUDA graphs.

Used by the benchmark (the PyTorch baselines an engine must beat) and by `--vs pytorch`. On a
CPU a call is one forward pass; on a GPU it is a `DeviceRuntime`, whose host-to-device copy,
forward pass and device-to-host copy are timed apart.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence

import numpy as np
import torch

from resnet.model import ResNet
from toolkit.errors import ToolkitError
from toolkit.precision import PRECISIONS, TORCH_PRECISIONS, check_precision

from ..artifacts.metadata import ModelInfo
from .base import DeviceRuntime, ProfilerReading, Runtime, RuntimeOptions, timed_runs
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


class _PointHooks:
    """Forward hooks on the modules of a ResNet that keep the outputs of `points` (module names,
    `Architecture.module_points`) as float host arrays during a forward pass. A convolution's point
    is its BatchNorm's output (what export folds into it); a block's one ReLU module runs after each
    of its convolutions and after the residual sum, so its calls are told apart: `reluK` after
    convolution K, then `add` (the last call's input) and `relu`. Values are copied: ReLUs work in
    place."""

    def __init__(self, model: ResNet, points: Sequence[str]) -> None:
        self.wanted = set(points)
        self.captured: dict[str, np.ndarray] = {}
        self._calls: dict[str, int] = {}
        convs = model.architecture.convs_per_block
        targets = {"conv1": model.bn1, "relu": model.relu, "maxpool": model.maxpool, "avgpool": model.avgpool}
        targets["fc"] = model.fc
        self.handles = []
        for block_name, block in _blocks(model):
            for index in range(1, convs + 1):
                targets[f"{block_name}.conv{index}"] = getattr(block, f"bn{index}")
            if not isinstance(block.downsample, torch.nn.Identity):
                targets[f"{block_name}.downsample"] = block.downsample
            before, after = self._block_relu(block_name, convs)
            self.handles += [block.relu.register_forward_pre_hook(before), block.relu.register_forward_hook(after)]
        self.held = [
            p
            for p in model.architecture.module_points()
            if p in self.wanted and (p in targets or ".relu" in p or p.endswith(".add"))
        ]
        for point, module in targets.items():
            self.handles.append(module.register_forward_hook(lambda m, i, out, point=point: self._keep(point, out)))

    def _keep(self, name: str, tensor) -> None:
        if name in self.wanted:
            self.captured[name] = tensor.detach().float().cpu().numpy().copy()

    def _block_relu(self, block: str, convs: int):
        def before(module, inputs):
            self._calls[block] = self._calls.get(block, 0) + 1
            if self._calls[block] == convs:
                self._keep(f"{block}.add", inputs[0])

        def after(module, inputs, output):
            call = self._calls[block]
            self._keep(f"{block}.relu" if call == convs else f"{block}.relu{call}", output)

        return before, after

    def forward(self, run, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.captured, self._calls = {}, {}
        run(batch)
        return dict(self.captured)


class _ModuleTimes:
    """Forward hooks around each leaf module of a ResNet, summing each one's time under its name
    while `counting` (on a GPU, synchronized around it). A block's ReLU calls are named as
    `_PointHooks` names them (`reluK` after convolution K, `relu` after the sum)."""

    def __init__(self, model: ResNet, cuda: bool) -> None:
        self.cuda, self.convs = cuda, model.architecture.convs_per_block
        self.totals: dict[str, float] = {}
        self.ops: dict[str, str] = {}
        self.counting = False
        self._started: dict[str, float] = {}
        self._calls: dict[str, int] = {}
        leaves = [
            (n, m)
            for n, m in model.named_modules()
            if n and not any(True for _ in m.children()) and not isinstance(m, torch.nn.Identity)
        ]
        self.handles = [m.register_forward_pre_hook(self._before(n)) for n, m in leaves]
        self.handles += [m.register_forward_hook(self._after(n, type(m).__name__)) for n, m in leaves]

    def _name(self, name: str) -> str:
        parts = name.split(".")
        if name.endswith(".relu") and len(parts) == 3:
            block = ".".join(parts[:2])
            self._calls[block] = self._calls.get(block, 0) % self.convs + 1
            return name if self._calls[block] == self.convs else f"{name}{self._calls[block]}"
        return name

    def _before(self, name: str):
        def hook(module, inputs):
            if self.cuda:
                torch.cuda.synchronize()
            self._started[name] = time.perf_counter()

        return hook

    def _after(self, name: str, op: str):
        def hook(module, inputs, output):
            if self.cuda:
                torch.cuda.synchronize()
            step = self._name(name)
            if self.counting:
                self.totals[step] = self.totals.get(step, 0.0) + (time.perf_counter() - self._started[name]) * 1e3
                self.ops[step] = op

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _blocks(model: ResNet):
    """(module name, block) of every residual block, in network order."""
    for stage_index, stage in enumerate(model.stages):
        for position, block in enumerate(stage):
            yield f"layer{stage_index + 1}.{position}", block


class _Capabilities:
    """Named outputs and layer times of the PyTorch runtimes (hooks on their own copy of the model)."""

    def _open_capabilities(self, outputs: Sequence[str], layer_times: bool) -> None:
        if (outputs or layer_times) and self.compiled:
            raise ToolkitError("named outputs and layer times hook PyTorch's modules: run eager PyTorch (no --compile)")
        self._points = _PointHooks(self.model, outputs) if outputs else None
        self.outputs = tuple(self._points.held) if self._points else ()
        self.layer_times = layer_times

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self._points is None:
            return super().run_outputs(batch)
        return self._points.forward(self.run, batch)

    def time_layers(self, batch: np.ndarray, runs: int, warmup: int) -> ProfilerReading:
        if not self.layer_times:
            return super().time_layers(batch, runs, warmup)
        cuda = str(self.device).startswith("cuda")
        timer = _ModuleTimes(self.model, cuda)
        try:
            timed_runs(self.run, batch, 0, warmup)
            timer.counting = True
            latencies = timed_runs(self.run, batch, runs, 0)
        finally:
            timer.remove()
        steps = [(name, ms, timer.ops[name]) for name, ms in timer.totals.items()]
        profiler = "forward hooks around each module (perf_counter" + (", synchronized)" if cuda else ")")
        return ProfilerReading(profiler, steps, latencies)


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
    common = dict(
        precision=options.precision,
        channels_last=options.channels_last,
        compile=options.compile,
        outputs=options.outputs,
        layer_times=options.layer_times,
    )
    if device.startswith("cuda"):
        return TorchCudaRuntime(
            model, device=device, cuda_graphs=options.cuda_graphs, buffer_rows=options.buffer_rows, **common
        )
    if device != "cpu":
        raise ToolkitError(f"device must be cpu or cuda, got {device!r}")
    if options.cuda_graphs:
        raise ToolkitError("CUDA graphs need a GPU (--device cuda)")
    return TorchCpuRuntime(model, threads=options.threads, **common)


class TorchCpuRuntime(_Capabilities, Runtime):
    """A ResNet on the CPU. `threads` sets torch's intra-op threads (process-wide). `outputs` and
    `layer_times`: the capabilities (`_PointHooks`, `_ModuleTimes`)."""

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
        outputs: Sequence[str] = (),
        layer_times: bool = False,
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
        self._open_capabilities(outputs, layer_times)

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


class TorchCudaRuntime(_Capabilities, DeviceRuntime):
    """A ResNet on a CUDA GPU, with static device buffers for batches up to `buffer_rows` and,
    when `cuda_graphs=True`, one CUDA graph captured per batch size. `outputs` and `layer_times`:
    the capabilities (hooks, which a replayed CUDA graph does not call: refused with it)."""

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
        buffer_rows: int = 256,
        outputs: Sequence[str] = (),
        layer_times: bool = False,
    ) -> None:
        require_cuda("PyTorch on --device cuda")
        if cuda_graphs and (outputs or layer_times):
            raise ToolkitError("named outputs and layer times hook PyTorch's modules, which a CUDA graph replay skips")
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
        self.buffer_rows = buffer_rows
        self.stream = torch.cuda.Stream(device=device)
        # The device input holds the host's dtype; the model's dtype and layout are made from it
        # inside `execute` (`_model_input`), as eager code converts on the device.
        self.allocate(buffer_rows, spec.num_classes, getattr(torch, self.input_dtype.name), torch.float32)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._model_input = torch.empty(
            (buffer_rows, *self.input_shape[1:]), dtype=TORCH_DTYPES[precision], device=device
        ).contiguous(memory_format=memory_format)
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._open_capabilities(outputs, layer_times)

    @property
    def batch_range(self) -> tuple[int, int]:
        return (1, self.buffer_rows)

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
