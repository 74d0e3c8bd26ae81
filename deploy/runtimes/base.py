"""One interface for running a model on a batch, whatever runs it: `Runtime` and `DeviceRuntime`.

A `Runtime` takes a NumPy batch in NCHW layout and returns the logits as a NumPy array. It knows
its input name, shape, element type and the batch sizes it accepts, and the `ModelInfo` of the
model inside (None for a file not made by resnet-export). Validation (export), the benchmark
and the Predictor all run models through these classes, so what is validated is what ships.

`run` is a template method, as Polygraphy's runners are: it checks the batch once (its size
against `batch_range`, its shape against the model's, its element type), then calls the
backend's `_run`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.numbers import check_number
from toolkit.precision import TORCH_PRECISIONS

from ..artifacts.metadata import ModelInfo
from .choices import (
    BACKEND_CHOICES,
    BACKEND_TITLES,
    CONV_SEARCHES,
    DEVICES,
    HONOURED,
    OPENVINO_HINTS,
    OPTION_FLAGS,
    ORT_PROVIDERS,
    PRECISIONS,
)


@dataclass(frozen=True)
class RuntimeOptions:
    """What a runtime is asked when it opens a model. Each backend honours some of these
    (`choices.HONOURED`); `open_runtime` refuses one that is set for a backend that would ignore it
    (`unhonoured`), so that nothing a user asks for is silently dropped.

    Two are capabilities: `outputs`, module names (`Architecture.module_points`: `layer1.0.conv1`,
    `layer2.0.add`, ...) whose outputs `Runtime.run_outputs` returns beside the logits, and
    `layer_times`, the backend's own profiler (`Runtime.time_layers`)."""

    backend: str | None = None  # which backend runs a file (choices.BACKEND_CHOICES; None: the file's own)
    provider: str | None = None  # ONNX Runtime: cpu, cuda, tensorrt (None: from `device`, else cuda when it can run)
    threads: int | None = None  # CPU backends (ONNX Runtime, OpenVINO, PyTorch)
    cuda_graphs: bool = False  # GPU backends: replay one CUDA graph per batch size
    device: str | None = None  # where it runs: cpu, cuda or cuda:N (None: cuda when it can run there)
    precision: str = (
        "fp32"  # arithmetic where the backend chooses it: OpenVINO (fp32, bf16), PyTorch (fp32, fp16, bf16)
    )
    openvino_hint: str = (
        "latency"  # OpenVINO: latency (one request per batch) or throughput (a batch split over streams)
    )
    compile: bool = False  # PyTorch: torch.compile
    channels_last: bool = False  # PyTorch
    buffer_rows: int = 256  # device runtimes (PyTorch, ONNX Runtime on CUDA): the rows their device buffers hold
    conv_search: str = "exhaustive"  # ONNX Runtime on CUDA: cuDNN's convolution algorithm search
    prefer_nhwc: bool = True  # ONNX Runtime on CUDA: channels-last convolutions
    outputs: tuple[str, ...] = ()  # module outputs to return beside the logits (`Runtime.run_outputs`)
    layer_times: bool = False  # the backend's profiler, for `Runtime.time_layers`

    def __post_init__(self) -> None:
        object.__setattr__(self, "outputs", tuple(self.outputs))
        _one_of(self.backend, BACKEND_CHOICES, "backend", optional=True)
        _one_of(self.openvino_hint, OPENVINO_HINTS, "OpenVINO hint")
        _one_of(self.provider, tuple(ORT_PROVIDERS), "provider", optional=True)
        _one_of(self.precision, TORCH_PRECISIONS, "precision")
        _one_of(self.conv_search, CONV_SEARCHES, "cuDNN search")
        if self.threads is not None:
            check_number(self.threads, "threads", integer=True, limit="threads")
        check_number(self.buffer_rows, "buffer rows", integer=True, limit="batch")
        kind, colon, index = self.device.partition(":") if isinstance(self.device, str) else ("", "", "")
        numbered = index.isascii() and index.isdigit()
        if self.device is not None and (kind not in DEVICES or (colon and (kind != "cuda" or not numbered))):
            raise ToolkitError(f"device must be cpu, cuda or cuda:N (N the GPU's index), got {self.device!r}")
        for name in ("cuda_graphs", "compile", "channels_last", "prefer_nhwc", "layer_times"):
            if not isinstance(getattr(self, name), bool):
                raise ToolkitError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not all(isinstance(name, str) for name in self.outputs):
            raise ToolkitError(f"outputs are module names (layer1.0.conv1, ...), got {list(self.outputs)!r}")

    def given(self) -> list[str]:
        """The options set to something other than their default."""
        return [f.name for f in fields(self) if getattr(self, f.name) != f.default]

    def honoured_by(self, backend: str) -> RuntimeOptions:
        """These options less those `backend` does not use, for a model opened beside another with
        options meant for both (a `--vs` file beside the first target; a served model, which may be
        an ONNX file or an engine): what was asked of the other is not lost, only not asked twice."""
        kept = {name: getattr(self, name) for name in self.given() if name in HONOURED[backend]}
        if self.precision not in PRECISIONS.get(backend, ("fp32",)):
            kept.pop("precision", None)
        return RuntimeOptions(**kept)

    @property
    def device_index(self) -> int:
        """The GPU's index `device` names ("cuda:1" -> 1; else 0)."""
        index = (self.device or "").partition(":")[2]
        return int(index) if index else 0

    def unhonoured(self, backend: str) -> str | None:
        """One sentence for the first option that `backend` would ignore (None: it honours all
        that are set): said before anything is opened, instead of a result that silently is not
        what was asked."""
        title = BACKEND_TITLES[backend]
        if self.precision != "fp32" and self.precision not in PRECISIONS.get(backend, ()):
            instead = {
                "bf16": "OpenVINO computes BF16 from an ONNX file on a CPU that has it: --backend openvino",
                "fp16": "export the file in FP16 (resnet-export --precision fp16) and run that",
            }[self.precision]
            return (
                f"{title} computes a file in the precision it was exported or built in, so --precision "
                f"{self.precision} would not change what it computes; {instead}"
            )
        device = (self.device or "").split(":")[0]
        if (backend, device) in (("openvino", "cuda"), ("tensorrt", "cpu")):
            return f"{title} runs on the {'CPU' if backend == 'openvino' else 'GPU'} here, not --device {self.device}"
        for name in self.given():
            if name not in HONOURED[backend] and name != "precision":
                return f"{title} does not use {OPTION_FLAGS[name]}; it applies to " + ", ".join(
                    BACKEND_TITLES[b] for b, honoured in HONOURED.items() if name in honoured
                )
        return None


@dataclass
class ProfilerReading:
    """What a backend's own profiler read over `len(latencies_ms)` timed runs of one batch: each
    step it timed, by the backend's name for it (which carries the module or tensor names the ONNX
    writer gave: `layer1.0.conv1`, `layer1.0.relu1`), its time summed over the runs (ms) and its op
    where the backend says; and each run's latency measured around it. `benchmark.profile` maps the
    names to the ResNet's units and stages."""

    profiler: str  # which profiler, in words
    steps: list[tuple[str, float, str | None]]
    latencies_ms: list[float]


def timed_runs(run, batch: np.ndarray, runs: int, warmup: int) -> list[float]:
    """`warmup` untimed runs of `run(batch)`, then `runs` timed ones: each one's latency in ms."""
    for _ in range(warmup):
        run(batch)
    latencies = []
    for _ in range(runs):
        started = time.perf_counter()
        run(batch)
        latencies.append((time.perf_counter() - started) * 1e3)
    return latencies


def _one_of(value, choices: tuple[str, ...], what: str, optional: bool = False) -> None:
    if (value is None and optional) or value in choices:
        return
    raise ToolkitError(f"{what} must be one of {', '.join(choices)}, got {value!r}")


class Runtime(ABC):
    """A loaded model that maps an input batch to logits."""

    backend: str  # "onnxruntime", "openvino", "tensorrt", "pytorch"
    device: str  # "cpu", "cuda", "cuda:0", ...
    input_name: str
    output_name: str
    input_dtype: np.dtype
    input_shape: tuple  # (N, C, H, W); N is None when the batch is dynamic
    info: ModelInfo | None

    @property
    def batch_range(self) -> tuple[int, int | None]:
        """Smallest and largest batch accepted (None: no upper limit)."""
        batch = self.input_shape[0]
        return (1, None) if batch is None else (batch, batch)

    def batch_limits(self) -> str:
        """The accepted batch sizes, in words, for error messages."""
        low, high = self.batch_range
        return f"exactly {low}" if low == high else f"{low} to {high}" if high else f"at least {low}"

    def check_batch(self, batch_size: int) -> None:
        """Raise a `ToolkitError` naming the accepted range when `batch_size` is outside it."""
        low, high = self.batch_range
        if batch_size < low or (high is not None and batch_size > high):
            raise ToolkitError(
                f"batch {batch_size} is outside what this {self.backend} model accepts ({self.batch_limits()})"
            )

    def pieces(self, batch: np.ndarray, largest: int | None = None) -> Iterator[tuple[np.ndarray, int]]:
        """`batch` in the pieces this runtime runs: at most `largest` rows each (default: the largest
        batch it takes, else all), a last piece below the smallest batch it takes padded with zeros
        up to it; each with the number of its rows that are the batch's (the padding's outputs are
        to be dropped)."""
        low, high = self.batch_range
        step = largest or high or max(len(batch), 1)
        for start in range(0, len(batch), step):
            piece = batch[start : start + step]
            count = len(piece)
            if count < low:
                piece = np.concatenate([piece, np.zeros((low - count, *piece.shape[1:]), piece.dtype)])
            yield piece, count

    def check_input(self, batch: np.ndarray) -> np.ndarray:
        """`batch` in the input's element type, after checking its shape and size."""
        batch = np.asarray(batch)
        if batch.dtype.kind not in "fiu":
            raise ToolkitError(
                f"input holds {batch.dtype} values; a model takes real numbers ({np.dtype(self.input_dtype).name})"
            )
        expected = tuple(self.input_shape[1:])
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            wanted = ", ".join(map(str, ("N", *expected)))
            raise ToolkitError(f"input of shape {tuple(batch.shape)} does not fit this model, which takes ({wanted})")
        self.check_batch(batch.shape[0])
        return batch if batch.dtype == self.input_dtype else batch.astype(self.input_dtype)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits for `batch` (N, C, H, W), as a host array."""
        return self._run(self.check_input(batch))

    # The two capabilities, asked for when the runtime is opened (`RuntimeOptions.outputs`,
    # `RuntimeOptions.layer_times`); each backend implements them its own way.
    outputs: tuple[str, ...] = ()  # the asked-for module outputs this form of the model holds

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Each of `outputs` (module name -> its output as a float host array) for `batch`."""
        raise ToolkitError(f"{self.describe()} was opened without named outputs (RuntimeOptions(outputs=...))")

    def time_layers(self, batch: np.ndarray, runs: int, warmup: int) -> ProfilerReading:
        """The backend's profiler over `runs` timed runs of `batch` (after `warmup` untimed ones)."""
        raise ToolkitError(f"{self.describe()} was opened without its profiler (RuntimeOptions(layer_times=True))")

    @abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray:
        """The backend's run, on a checked batch of the input's element type."""

    def settings(self) -> dict:
        """The options this runtime runs with that change speed, start-up time or results
        (recorded with every measurement)."""
        return {}

    def random_input(self, batch_size: int, seed: int = 0) -> np.ndarray:
        """A batch of standard-normal values (the range of normalised images) in the input dtype."""
        shape = (batch_size, *self.input_shape[1:])
        return np.random.default_rng(seed).standard_normal(shape, dtype=np.float32).astype(self.input_dtype)

    def close(self) -> None:  # noqa: B027 - a runtime that holds nothing needs no close
        """Free what the runtime holds (sessions, device memory)."""

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> str:
        shape = ", ".join("N" if d is None else str(d) for d in self.input_shape)
        return f"{self.backend} on {self.device}, input {self.input_name} [{shape}] {np.dtype(self.input_dtype).name}"

    def int8_path(self) -> str | None:
        """For an INT8 file on the CPU, how this CPU sums its products (`cpu.CpuFeatures.int8_path`:
        VNNI, AMX or int16 pair sums), printed beside accuracy and speed figures; else None."""
        if self.info is None or self.info.precision != "int8" or self.device != "cpu":
            return None
        from .cpu import CpuFeatures

        return CpuFeatures.probe().int8_path()


class DeviceRuntime(Runtime):
    """A runtime on a CUDA device, whose round trip is three queued steps on `stream`.

    `copy_in(host)` (host to device, after checking the batch; returns its size), `execute(n)`
    (the model on the first n inputs), `copy_out(n)` (device to a pinned host tensor, valid
    after `synchronize()`). The benchmark times them apart with CUDA events; `run` chains them.

    The buffers are this class's: `allocate` makes the device input and output (PyTorch CUDA
    tensors for the largest batch; a call uses their first n rows) and the pinned host copy of the
    output; the copies in and out are the same for every backend. A backend calls `allocate`
    once it knows its shapes, and implements `execute`.
    """

    stream = None  # a torch.cuda.Stream
    _input = _output = _host_output = None  # torch tensors, made by `allocate`

    def allocate(self, rows: int, classes: int, input_dtype, output_dtype) -> None:
        """Device input (rows, C, H, W) and output (rows, classes) buffers of the given
        torch dtypes, on `self.device`, and a pinned host tensor for the output."""
        import torch

        self._input = torch.empty((rows, *self.input_shape[1:]), dtype=input_dtype, device=self.device)
        self._output = torch.empty((rows, classes), dtype=output_dtype, device=self.device)
        self._host_output = torch.empty(self._output.shape, dtype=output_dtype, pin_memory=True)

    def pinned_input(self, batch: np.ndarray):
        """`batch` as a pinned host tensor of the input dtype (what `copy_in` reads fastest)."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(batch, dtype=self.input_dtype)).pin_memory()

    def copy_in(self, host) -> int:
        """Queue the host-to-device copy of a batch (NumPy array or pinned tensor); returns its size."""
        if isinstance(host, np.ndarray):
            host = self.pinned_input(self.check_input(host))
        else:
            self.check_batch(host.shape[0])
        self._copy_in(host)
        return host.shape[0]

    def _copy_in(self, host) -> None:
        """Queue the copy of a checked pinned batch into the first rows of the device input."""
        import torch

        with torch.cuda.stream(self.stream):
            self._input[: host.shape[0]].copy_(host, non_blocking=True)

    @abstractmethod
    def execute(self, n: int) -> None:
        """Queue the model on the first `n` images of the device input (n came from `copy_in`)."""

    def copy_out(self, n: int):
        """Queue the device-to-host copy of the first `n` outputs; returns the pinned host tensor
        (valid after `synchronize()`)."""
        import torch

        with torch.cuda.stream(self.stream):
            self._host_output[:n].copy_(self._output[:n], non_blocking=True)
        return self._host_output[:n]

    def synchronize(self) -> None:
        self.stream.synchronize()

    def _run(self, batch: np.ndarray) -> np.ndarray:
        host = self.pinned_input(batch)
        self._copy_in(host)
        n = batch.shape[0]
        self.execute(n)
        out = self.copy_out(n)
        self.synchronize()
        return out.numpy().copy()
