"""TensorRT engines: loading one (`load_engine`) and running it behind the `Runtime` interface.

Loading and running are apart, as Polygraphy keeps loaders apart from runners: `load_engine`
reads an engine and its manifest, refuses a foreign one, and deserializes it; a runtime runs it.
Building engines is `export.engine`'s work; the logger both use (`shared_logger`, one per
process) lives here.

Two runtimes, by what the machine has. Where PyTorch is installed (the workshop, a GPU server),
`TensorRTRuntime`: device memory, streams, events and CUDA graphs from PyTorch (its caching
allocator and pinned host tensors are well tested, `torch.cuda.CUDAGraph` captures TensorRT's
launches on our stream, a tensor's `data_ptr()` is all `set_tensor_address` needs), so the
benchmark times the copies and the compute apart. On a board without PyTorch,
`TensorRTHostRuntime`: NumPy in and out, device memory and a stream from the CUDA runtime library
itself (`deploy.runtimes.cuda`, ctypes), one round trip per run. And by what TensorRT is there: the
full `tensorrt`, or only its lean runtime (`tensorrt_lean`), which runs engines built
`--version-compatible` (checked against TensorRT 11.4's lean bindings too).

TensorRT is imported inside the functions that need it. TensorRT objects live in variables named
after their class (`engine`, `context`, `trt_runtime`, ...): tests/deploy/test_tensorrt_api.py
reads this file and checks every name used on them against TensorRT 11.4's and 10.13's bindings.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from toolkit.errors import ArtifactError, MissingDependencyError, ToolkitError
from toolkit.files import input_file, notice
from toolkit.optional import require

from ..artifacts.manifest import BatchRange, EngineEnvironment, EngineManifest, check_compatible, read_manifest
from .base import DeviceRuntime, ProfilerReading, Runtime, timed_runs
from .gpu import describe_gpu, require_cuda, torch_installed


def import_tensorrt():
    """The `tensorrt` module, or a `MissingDependencyError` saying what to install."""
    return require("tensorrt", "building or running a TensorRT engine")


def import_tensorrt_runtime(manifest: EngineManifest | None = None):
    """What runs an engine: the full `tensorrt` where it is installed, else TensorRT's lean runtime
    (`tensorrt_lean`, a board's), which runs only engines built `--version-compatible`."""
    if importlib.util.find_spec("tensorrt") is not None or importlib.util.find_spec("tensorrt_lean") is None:
        return import_tensorrt()
    if manifest is None or not manifest.version_compatible:
        raise MissingDependencyError(
            "only TensorRT's lean runtime (tensorrt_lean) is installed here, and it runs engines built "
            "--version-compatible: rebuild with resnet-build --version-compatible, or install tensorrt"
        )
    return importlib.import_module("tensorrt_lean")


def _set_device(device: int) -> None:
    if torch_installed():
        require_cuda().cuda.set_device(device)
    else:
        from .cuda import set_device

        set_device(device)


def engine_environment(device: int = 0, trt=None) -> EngineEnvironment:
    """The TensorRT release (of `trt`, the module that runs engines here) and GPU of this machine."""
    trt = trt or import_tensorrt()
    gpu = describe_gpu(device)
    return EngineEnvironment(
        tensorrt_version=trt.__version__,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        cuda_version=gpu.cuda,
        driver_version=gpu.driver,
    )


def _torch_dtype(trt, dtype):
    import torch

    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
    if dtype not in table:
        raise ArtifactError(f"engine tensor type {dtype} is not supported (float32 and float16 are)")
    return table[dtype]


class _Messages:
    """What TensorRT said (warnings and errors), numbered, so that a failure quotes what was said
    during its own call: `mark()` before the call, `since(mark)` after it."""

    def __init__(self, keep: int = 256) -> None:
        self._lock = threading.Lock()
        self._said: deque[tuple[int, str]] = deque(maxlen=keep)
        self._count = 0

    def add(self, message: str) -> None:
        with self._lock:
            self._count += 1
            self._said.append((self._count, message))

    def mark(self) -> int:
        with self._lock:
            return self._count

    def since(self, mark: int, last: int = 3) -> str:
        """The last `last` messages after `mark`, joined; "no reason given" when there are none."""
        with self._lock:
            said = [message for number, message in self._said if number > mark]
        return "; ".join(said[-last:]) or "no reason given"


_LOGGER_LOCK = threading.Lock()


def shared_logger(trt=None):
    """The process's one TensorRT logger (created on first use), of `trt` (default: the full
    `tensorrt`; the lean runtime's module where only it is installed).

    TensorRT keeps the first logger it is given for the whole process (a later Builder or Runtime
    with another one gets a warning, and its messages go to the first), so every Builder, Runtime
    and OnnxParser of the toolkit is given this one. It keeps warnings and errors in
    `logger.messages` (a `_Messages`) so that a failure can quote them.
    """
    with _LOGGER_LOCK:
        return _logger_of(trt or import_tensorrt())


@functools.cache
def _logger_of(trt):
    """One logger per TensorRT module (a process uses one of them: the full or the lean runtime)."""

    class KeepingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.messages = _Messages()

        def log(self, severity, message):
            if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR, trt.ILogger.WARNING):
                self.messages.add(str(message))

    return KeepingLogger()


def load_engine(path: str | Path, device: int = 0):
    """Read an engine file, check its manifest against this machine, deserialize it.

    Returns (engine, manifest or None, warnings, the TensorRT runtime that owns the engine).
    The manifest (`NAME.plan.json`) must describe this very engine (its checksum), and an engine
    built for another TensorRT release or GPU architecture is refused with a sentence saying to
    rebuild it here; softer differences come back as warnings. An engine without a manifest
    (from trtexec, say) is loaded as is, and TensorRT itself judges it.
    """
    path = input_file(path, "engine file", "an engine file", ArtifactError)
    manifest: EngineManifest | None = read_manifest(path)
    data = path.read_bytes()
    if manifest is not None and hashlib.sha256(data).hexdigest() != manifest.engine_sha256:
        raise ArtifactError(
            f"{path.name}.json describes another engine (checksum differs); rebuild {path.name} with resnet-build"
        )
    trt = import_tensorrt_runtime(manifest)
    warnings = check_compatible(manifest, engine_environment(device, trt), path) if manifest is not None else []
    _set_device(device)
    logger = shared_logger(trt)
    mark = logger.messages.mark()
    trt_runtime = trt.Runtime(logger)
    if manifest is not None and manifest.carries_lean_runtime:
        trt_runtime.engine_host_code_allowed = True  # the engine's own lean runtime: host code we built
    engine = trt_runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise ArtifactError(
            f"TensorRT cannot load engine {path} ({logger.messages.since(mark, 2)}); "
            "rebuild it on this machine with resnet-build"
        )
    return engine, manifest, warnings, trt_runtime


class _EngineRuntime:
    """What both TensorRT runtimes share: the engine loaded and checked (`load_engine`), its one
    input and its logits (an engine rebuilt with marked outputs has more outputs: `taps`), the
    batch range, and TensorRT's profiler on the execution context."""

    backend = "tensorrt"

    def _load(self, path: str | Path, device: int, announce: bool, taps) -> None:
        self.engine, self.manifest, self.warnings, self.trt_runtime = load_engine(path, device)
        if announce:  # the Predictor, resnet-bench, resnet-eval: said on stderr (resnet-build reports them itself)
            for warning in self.warnings:
                notice(warning)
        trt = self._trt = import_tensorrt_runtime(self.manifest)
        self.path, self.device = Path(path), f"cuda:{device}"
        self._messages = shared_logger(trt).messages
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        engine_outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self._taps = taps(engine_outputs)
        logits = [n for n in engine_outputs if n not in self._taps.values() or n == self._logits_name()]
        if len(inputs) != 1 or len(logits) != 1:
            raise ArtifactError(
                f"engine {path} has {len(inputs)} inputs and {len(engine_outputs)} outputs; a classifier has one of each"
            )
        self.input_name, self.output_name = inputs[0], logits[0]
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.output_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        shape = tuple(self.engine.get_tensor_shape(self.input_name))
        self.input_shape = (None if shape[0] < 0 else shape[0], *shape[1:])
        low, opt, high = (tuple(s) for s in self.engine.get_tensor_profile_shape(self.input_name, 0))
        self.batches = BatchRange(low[0], opt[0], high[0])
        self.num_classes = tuple(self.engine.get_tensor_shape(self.output_name))[-1]
        self.info = self.manifest.model if self.manifest is not None else None

    def _logits_name(self) -> str | None:
        """The classifier's output as the manifest names it (an engine rebuilt with marked outputs has more)."""
        return self.manifest.outputs[0].name if self.manifest is not None and self.manifest.outputs else None

    @property
    def batch_range(self) -> tuple[int, int]:
        return (self.batches.min, self.batches.max)

    def check_batch(self, batch_size: int) -> None:
        if not self.batches.min <= batch_size <= self.batches.max:
            raise ToolkitError(
                f"batch {batch_size} is outside engine {self.path.name}'s batch range ({self.batches}); "
                "rebuild with resnet-build --min-batch/--max-batch to cover it"
            )

    def _set_shape(self, context, n: int) -> None:
        if not context.set_input_shape(self.input_name, (n, *self.input_shape[1:])):
            raise ToolkitError(
                f"TensorRT refused input shape batch {n} for {self.path.name} (batch range {self.batches})"
            )

    def _new_context(self, buffers: list[tuple[str, int]]):
        """An execution context whose tensors are at these device addresses."""
        mark = self._messages.mark()
        context = self.engine.create_execution_context()
        if context is None:
            raise ToolkitError(
                f"TensorRT could not create an execution context for {self.path.name} ({self._messages.since(mark)}); "
                "the GPU may be out of memory: close other programs on it, or use fewer CUDA-graph batch sizes"
            )
        for name, address in buffers:
            if not context.set_tensor_address(name, address):
                raise ToolkitError(
                    f"TensorRT refused the device buffer of tensor {name} of {self.path.name} ({self._messages.since(mark)})"
                )
        return context

    def time_layers(self, batch: np.ndarray, runs: int, warmup: int) -> ProfilerReading:
        """TensorRT's `IProfiler` on the execution context (`report_layer_time`, after each run);
        its fused layer names ("layer1.0.conv1 + layer1.0.relu1") carry the ONNX node names."""
        if not self.layer_times:
            return super().time_layers(batch, runs, warmup)
        trt = self._trt
        batch = self.check_input(batch)
        steps: list[tuple[str, float, None]] = []
        counting = {"on": False}

        class LayerTimes(trt.IProfiler):
            def __init__(self):
                trt.IProfiler.__init__(self)  # pybind11: the base's constructor, explicitly

            def report_layer_time(self, layer_name, ms):
                if counting["on"]:
                    steps.append((layer_name, ms, None))

        profiler = LayerTimes()
        context = self.context
        context.profiler = profiler
        try:
            timed_runs(self.run, batch, 0, warmup)
            counting["on"] = True
            latencies = timed_runs(self.run, batch, runs, 0)
        finally:
            context.profiler = None
        return ProfilerReading("TensorRT's IProfiler (report_layer_time)", steps, latencies)


class TensorRTRuntime(_EngineRuntime, DeviceRuntime):
    """A serialized TensorRT engine on the GPU (loaded and checked by `load_engine`).

    `run(batch)` is the whole round trip; `copy_in`, `execute` and `copy_out` are its three
    steps (see `DeviceRuntime`). With `cuda_graphs=True`, `execute(n)` replays a CUDA graph
    captured for batch size n, each on an execution context of its own: whether a graph
    captured on a context stays valid after that context's input shape changes is not
    documented, so no context's shape ever changes after its capture (trtexec too captures
    after setting the shape, one graph per context). Each context holds its own activation
    memory. `warnings` (an engine built on another GPU of the same architecture, say) are said
    through `toolkit.files.notice` unless `announce=False`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        cuda_graphs: bool = False,
        device: int = 0,
        announce: bool = True,
        outputs: Sequence[str] = (),
        layer_times: bool = False,
    ) -> None:
        if cuda_graphs and (outputs or layer_times):
            raise ToolkitError("named outputs and layer times are read from plain runs: run without --cuda-graph")
        self._load(path, device, announce, lambda names: self._tapped(names, list(outputs)) if outputs else {})
        torch = require_cuda()
        trt = self._trt
        self.cuda_graphs, self._torch = cuda_graphs, torch
        input_torch_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self.input_name))
        output_torch_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self.output_name))
        self.stream = torch.cuda.Stream()
        self.allocate(self.batches.max, self.num_classes, input_torch_dtype, output_torch_dtype)
        self._tap_buffers = {
            name: torch.empty(
                (self.batches.max, *tuple(self.engine.get_tensor_shape(name))[1:]),
                dtype=_torch_dtype(trt, self.engine.get_tensor_dtype(name)),
                device=self.device,
            )
            for name in dict.fromkeys(self._taps.values())
            if name != self.output_name
        }
        self.outputs, self.layer_times = tuple(self._taps), layer_times
        self.context = self._new_context(self._buffers())
        self._shape_set: int | None = None
        self._graphs: dict[int, tuple[object, object]] = {}  # batch -> (CUDA graph, its execution context)

    def _buffers(self) -> list[tuple[str, int]]:
        buffers = [(self.input_name, self._input), (self.output_name, self._output), *self._tap_buffers.items()]
        return [(name, buffer.data_ptr()) for name, buffer in buffers]

    def _enqueue(self, context, n: int, what: str = "run") -> None:
        mark = self._messages.mark()
        if not context.execute_async_v3(self.stream.cuda_stream):
            raise ToolkitError(f"TensorRT failed to {what} {self.path.name} on batch {n}: {self._messages.since(mark)}")

    def execute(self, n: int) -> None:
        """Queue the engine for the first `n` images of the input buffer."""
        torch = self._torch
        if self.cuda_graphs:
            graph = self._graphs.get(n) or self._capture(n)
            with torch.cuda.stream(self.stream):
                graph[0].replay()
            return
        if self._shape_set != n:
            self._set_shape(self.context, n)
            self._shape_set = n
        self._enqueue(self.context, n)

    def _capture(self, n: int):
        """Capture the engine at batch n into a CUDA graph, on a context of its own."""
        torch = self._torch
        context = self._new_context(self._buffers())
        self._set_shape(context, n)
        self._enqueue(context, n, "set up")  # the first run: TensorRT allocates and sets itself up
        self.stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        mark = self._messages.mark()
        with torch.cuda.graph(graph, stream=self.stream):
            # A failure inside the capture is checked after it ends: an empty graph would
            # otherwise replay without error and leave stale outputs.
            captured = context.execute_async_v3(self.stream.cuda_stream)
        if not captured:
            raise ToolkitError(
                f"TensorRT could not be captured in a CUDA graph for {self.path.name} at batch {n} "
                f"({self._messages.since(mark)}); run without --cuda-graph"
            )
        self._graphs[n] = (graph, context)
        return self._graphs[n]

    def _tapped(self, engine_outputs: list[str], points: list[str]) -> dict[str, str]:
        """point -> engine output, for an engine built from a tapped ONNX file (`export.engine_taps.build_tapped`,
        which its manifest names): the tensors of `points` in that file (`module_tensors`) that are outputs."""
        import onnx

        from ..artifacts.onnx_file import module_tensors

        source = Path(self.manifest.source_onnx.get("file", "")) if self.manifest is not None else Path()
        if not source.is_file():
            raise ArtifactError(
                f"{self.path.name}'s manifest names no ONNX file here ({source}); named outputs need the engine "
                "export.engine_taps.build_tapped made, beside the file it was built from"
            )
        taps = module_tensors(onnx.load(str(source), load_external_data=False), points)
        return {point: tensor for point, tensor in taps.items() if tensor in engine_outputs}

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if not self._taps:
            return super().run_outputs(batch)
        logits = self.run(batch)
        n = len(batch)
        found = {name: buffer[:n].float().cpu().numpy() for name, buffer in self._tap_buffers.items()}
        found[self.output_name] = logits.astype(np.float32)
        return {point: found[tensor] for point, tensor in self._taps.items()}

    def close(self) -> None:
        self._graphs.clear()
        for name in ("context", "engine", "trt_runtime"):
            if hasattr(self, name):
                delattr(self, name)

    def settings(self) -> dict:
        return {"cuda_graphs": self.cuda_graphs, "batches": str(self.batches)}

    def describe(self) -> str:
        graphs = ", CUDA graphs" if self.cuda_graphs else ""
        return super().describe() + f" (engine batches {self.batches}{graphs})"


class TensorRTHostRuntime(_EngineRuntime, Runtime):
    """An engine on the GPU of a board without PyTorch: NumPy in and out, device memory and a
    stream from the CUDA runtime library itself (`deploy.runtimes.cuda`, ctypes). Each run is one
    round trip (copy in, execute, copy out, synchronize), timed as a whole; CUDA graphs and named
    outputs need `TensorRTRuntime` (PyTorch's device tensors). Written against TensorRT 11.4's and
    10.13's bindings and the lean runtime's (tests/deploy/test_tensorrt_api.py), not run here."""

    def __init__(self, path: str | Path, *, device: int = 0, announce: bool = True, layer_times: bool = False) -> None:
        from .cuda import DeviceArray, Stream

        self._load(path, device, announce, lambda names: {})
        self.layer_times, self.outputs = layer_times, ()
        self.stream = Stream()
        self._input = DeviceArray((self.batches.max, *self.input_shape[1:]), self.input_dtype)
        self._output = DeviceArray((self.batches.max, self.num_classes), self.output_dtype)
        self.context = self._new_context([(self.input_name, self._input.ptr), (self.output_name, self._output.ptr)])
        self._shape_set: int | None = None

    def _run(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        self._input.copy_from(batch, self.stream)
        if self._shape_set != n:
            self._set_shape(self.context, n)
            self._shape_set = n
        mark = self._messages.mark()
        if not self.context.execute_async_v3(self.stream.handle):
            raise ToolkitError(f"TensorRT failed to run {self.path.name} on batch {n}: {self._messages.since(mark)}")
        logits = np.empty((n, self.num_classes), self.output_dtype)
        self._output.copy_to(logits, self.stream)
        self.stream.synchronize()
        return logits

    def close(self) -> None:
        for name in ("context", "engine", "trt_runtime"):
            if hasattr(self, name):
                delattr(self, name)
        for memory in (getattr(self, "_input", None), getattr(self, "_output", None), getattr(self, "stream", None)):
            if memory is not None:
                memory.close()

    def settings(self) -> dict:
        return {"cuda_graphs": False, "batches": str(self.batches), "buffers": "CUDA runtime (no PyTorch)"}

    def describe(self) -> str:
        return super().describe() + f" (engine batches {self.batches}; NumPy in and out, no PyTorch)"
