"""ONNX files in ONNX Runtime: `OrtRuntime` (NumPy in and out, any provider) and `OrtCudaRuntime`
(device buffers on a CUDA GPU, behind the `DeviceRuntime` interface), and an honest provider choice.

Which providers can run. onnxruntime-gpu lists its CUDA and TensorRT providers as "available"
whether or not the libraries they need can be loaded; a session asked for one that can't load
prints ONNX Runtime's "EP Error" and silently runs on the next provider of the list. Here a
provider is usable only if its shared library (and so every library it links against) loads
(`provider_problem`); a provider that can't run is never asked for automatically, a forced one
is refused with one sentence naming the missing library, and every runtime reports the provider
its session really runs on (`session.get_providers()`), not the one it asked for.

The automatic choice is CUDA when it can run, else the CPU. ONNX Runtime's TensorRT provider is
used only when asked for by name: it compiles a TensorRT engine inside every new session
(minutes for a ResNet-50), and `resnet-build` makes a reusable engine instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import json
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from toolkit.errors import ArtifactError, MissingDependencyError, ToolkitError, clip
from toolkit.files import input_file
from toolkit.optional import INSTALL, require

from ..artifacts.onnx_file import OnnxSignature, classifier_signature, tapped_onnx
from ..artifacts.tensors import TensorInfo
from .base import DeviceRuntime, ProfilerReading, Runtime, timed_runs
from .choices import CONV_SEARCHES, ORT_PROVIDERS
from .cpu import CpuFeatures, note_int8_saturation

PROVIDER_NAMES = {ep: name for name, ep in ORT_PROVIDERS.items()}
_LIBRARIES = {"cuda": "libonnxruntime_providers_cuda.so", "tensorrt": "libonnxruntime_providers_tensorrt.so"}
_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64"}
_FLOAT_TYPES = ("float32", "float16")
_DEFAULT_LOG_SEVERITY = 2  # ONNX Runtime's own default: warnings and above


def import_onnxruntime():
    return require("onnxruntime", "running an ONNX model")


@functools.cache
def provider_problem(provider: str) -> str | None:
    """Why ONNX Runtime's `provider` ("cpu", "cuda", "tensorrt") can't run here; None when
    nothing stands against it.

    A GPU provider needs onnxruntime-gpu and every library its provider library links against
    (CUDA, cuDNN; TensorRT for "tensorrt"). The library is loaded the way ONNX Runtime loads it,
    so a missing dependency is named exactly. Whether a GPU is present is for the session to
    find out (`OrtRuntime` reports what it found); `default_provider` asks `gpu.cuda_available` first.
    """
    if provider not in ORT_PROVIDERS:
        raise ToolkitError(f"provider must be one of {', '.join(ORT_PROVIDERS)}, got {provider!r}")
    if provider == "cpu":
        return None
    ort = import_onnxruntime()
    if ORT_PROVIDERS[provider] not in ort.get_available_providers():
        return f"this onnxruntime has no {ORT_PROVIDERS[provider]}; install onnxruntime-gpu in its place: {INSTALL['onnxruntime-gpu']}"
    capi = Path(ort.__file__).parent / "capi"
    library = capi / _LIBRARIES[provider]
    if not library.is_file():
        return None  # a build that links its providers in: nothing to probe
    try:
        shared = capi / "libonnxruntime_providers_shared.so"
        if shared.is_file():
            ctypes.CDLL(str(shared), mode=os.RTLD_LAZY | os.RTLD_GLOBAL)
        ctypes.CDLL(str(library), mode=os.RTLD_LAZY)
    except OSError as error:
        missing = re.search(r"(\S+\.so[.\d]*): cannot open shared object file", str(error))
        if missing:
            needs = "CUDA and cuDNN" if provider == "cuda" else "TensorRT, CUDA and cuDNN"
            return f"{missing.group(1)} can't be loaded (it needs {needs} libraries of the versions onnxruntime-gpu was built for)"
        return None  # loads differently inside ONNX Runtime: let the session decide
    return None


def usable_ort_providers() -> list[str]:
    """Our names of the ONNX Runtime providers that can run here ("cpu" always)."""
    return [name for name in ORT_PROVIDERS if provider_problem(name) is None]


def available_ort_providers() -> list[str]:
    """Our names of the providers this onnxruntime build lists, usable or not."""
    installed = set(import_onnxruntime().get_available_providers())
    return [name for name, ep in ORT_PROVIDERS.items() if ep in installed]


def default_provider() -> str:
    """The automatic choice: "cuda" when a CUDA GPU is here (`gpu.cuda_available`) and ONNX
    Runtime's CUDA provider can run, else "cpu"."""
    from .gpu import cuda_available

    return "cuda" if cuda_available() and provider_problem("cuda") is None else "cpu"


def require_provider(provider: str) -> str:
    """`provider`, after checking that it can run here (one sentence naming what is missing)."""
    problem = provider_problem(provider)
    if problem is not None:
        raise MissingDependencyError(f"ONNX Runtime's {provider} provider can't run here: {problem}")
    return provider


def _create_session(path: Path, options, providers: list, requested: str | None):
    """An InferenceSession, with ONNX Runtime's own fallback chatter ("EP Error", library load
    errors) kept off the terminal; a forced provider the session did not get is one sentence."""
    ort = import_onnxruntime()
    said = io.StringIO()
    ort.set_default_logger_severity(4)  # fatal only, while the providers load
    try:
        with contextlib.redirect_stdout(said):
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as error:  # noqa: BLE001 - ORT raises its own exception types for bad files
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ArtifactError(f"ONNX Runtime cannot load {path}: {clip(first)}") from None
    finally:
        ort.set_default_logger_severity(_DEFAULT_LOG_SEVERITY)
    running = PROVIDER_NAMES.get(session.get_providers()[0], session.get_providers()[0])
    if requested is not None and running != requested:
        reason = re.search(r"EP Error (.+?) when using", said.getvalue(), re.S)
        why = f" ({clip(reason.group(1))})" if reason else ""
        raise MissingDependencyError(
            f"ONNX Runtime could not start its {requested} provider for {path.name} and would run on {running}{why}"
        )
    return session, running


def _signature(session, path: Path, taps: Sequence[str] = ()) -> OnnxSignature:
    """The classifier signature of a loaded session: the checks `inspect_onnx` applies to a file
    (`deploy.artifacts.classifier_signature`), on what the session read, so the file is not parsed
    a second time; the input must be float32 or float16 images. `taps` are extra outputs, not
    the classifier's."""
    metadata = session.get_modelmeta().custom_metadata_map
    inputs = [_tensor_info(arg) for arg in session.get_inputs()]
    outputs = [_tensor_info(arg) for arg in session.get_outputs() if arg.name not in taps]
    signature = classifier_signature(path, inputs, outputs, metadata, precision="fp32")
    if signature.input.dtype not in _FLOAT_TYPES:
        raise ArtifactError(
            f"{path} takes {signature.input.dtype} input; only float32 and float16 images are supported"
        )
    return signature


def _tensor_info(arg) -> TensorInfo:
    """A session input or output: "tensor(float)" is float32; a symbolic dimension ("batch") is None."""
    dtype = _ORT_TYPES.get(arg.type, arg.type.removeprefix("tensor(").removesuffix(")"))
    return TensorInfo(arg.name, dtype, tuple(d if isinstance(d, int) and d >= 0 else None for d in arg.shape))


def _adopt(runtime: Runtime, signature: OnnxSignature) -> None:
    """Give a runtime the interface of its file: input and output names, input type and shape, metadata."""
    runtime.input_name, runtime.output_name = signature.input.name, signature.output.name
    runtime.input_dtype, runtime.input_shape = np.dtype(signature.input.dtype), signature.input.shape
    runtime.info = signature.info


def _session_options(threads: int | None = None):
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        if threads < 1:
            raise ToolkitError(f"threads must be at least 1, got {threads}")
        options.intra_op_num_threads = threads
    return options


class OrtRuntime(Runtime):
    """An ONNX file in ONNX Runtime, NumPy in and out.

    `provider` is "cpu", "cuda" or "tensorrt" (ONNX Runtime's execution providers; the GPU ones
    need onnxruntime-gpu and their libraries); None is the automatic choice (`default_provider`).
    `provider` afterwards says what the session really runs on. `threads` sets intra-op threads
    (None: ONNX Runtime's default, one per physical core). The capabilities: `outputs` (module
    names) runs a temporary copy of the file that lists their tensors as extra outputs
    (`run_outputs`); `layer_times` lets `time_layers` run a second session with ONNX Runtime's
    profiler, on the same provider and threads. `features`: the CPU's (default: this one's), for
    the note on 8-bit INT8 weights (`cpu.note_int8_saturation`). On a GPU, `OrtCudaRuntime` keeps
    the data on the device and is what the benchmark and the Predictor use.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        *,
        provider: str | None = None,
        threads: int | None = None,
        outputs: Sequence[str] = (),
        layer_times: bool = False,
        features: CpuFeatures | None = None,
    ) -> None:
        import_onnxruntime()
        path = input_file(path, "model file", "a model file (.onnx)", ArtifactError)
        requested = provider
        provider = require_provider(provider) if provider is not None else default_provider()
        chain = [ORT_PROVIDERS[provider]] + (["CUDAExecutionProvider"] if provider == "tensorrt" else [])
        self._chain = chain + ([] if provider == "cpu" else ["CPUExecutionProvider"])
        self.path, self.threads, self.layer_times = path, threads, layer_times
        self._folder, self._taps = None, {}
        session_path = path
        if outputs:
            self._folder = tempfile.TemporaryDirectory(prefix="resnet-outputs-")
            session_path, self._taps = tapped_onnx(path, list(outputs), Path(self._folder.name))
        self.session, self.provider = _create_session(session_path, _session_options(threads), self._chain, requested)
        self.device = "cpu" if self.provider == "cpu" else "cuda"
        _adopt(self, _signature(self.session, path, [t for t in self._taps.values() if t != _output_of(self.session)]))
        self.outputs = tuple(self._taps)
        if self.provider == "cpu":
            note_int8_saturation(self, features)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if not self._taps:
            return super().run_outputs(batch)
        batch = self.check_input(batch)
        tensors = list(dict.fromkeys(self._taps.values()))
        found = dict(zip(tensors, self.session.run(tensors, {self.input_name: batch}), strict=True))
        return {point: found[tensor] for point, tensor in self._taps.items()}

    def time_layers(self, batch: np.ndarray, runs: int, warmup: int) -> ProfilerReading:
        if not self.layer_times:
            return super().time_layers(batch, runs, warmup)
        batch = self.check_input(batch)
        threads = "default threads" if self.threads is None else f"{self.threads} thread{'s' * (self.threads != 1)}"
        return ort_profiler_reading(
            self.path, _session_options(self.threads), self._chain, lambda s, x: s.run(None, {self.input_name: x}),
            batch, runs, warmup, f"{self.provider}, {threads}",
        )  # fmt: skip

    def settings(self) -> dict:
        return {"provider": self.provider, "threads": self.threads}

    def describe(self) -> str:
        form = f", ONNX Runtime's format: {self.path.name}" if self.path.suffix == ".ort" else ""
        return super().describe() + f" ({self.session.get_providers()[0]}{form})"

    def close(self) -> None:
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None


def _output_of(session) -> str:
    return session.get_outputs()[0].name


def ort_profiler_reading(path: Path, options, providers, run, batch: np.ndarray, runs: int, warmup: int, how: str):
    """ONNX Runtime's profiler on a session of its own (`providers`, `options`) over `runs` timed
    calls of `run(session, batch)`: the node events (`kernel_time`) of the timed runs only (the
    warm-up runs, and everything before them, the profiler's own first-run events included, are
    dropped by the `model_run` windows they fall in)."""
    with tempfile.TemporaryDirectory(prefix="resnet-profile-") as folder:
        options.enable_profiling, options.profile_file_prefix = True, str(Path(folder) / "ort")
        session, _ = _create_session(path, options, providers, None)
        latencies = timed_runs(lambda x: run(session, x), batch, runs, warmup)
        events = json.loads(Path(session.end_profiling()).read_text())
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    if len(windows) < warmup + runs:
        raise ToolkitError(f"ONNX Runtime's profiler recorded {len(windows)} runs of {warmup + runs}")
    start = windows[warmup][0]
    steps = [
        (e["name"].removesuffix("_kernel_time"), e["dur"] / 1e3, e.get("args", {}).get("op_name"))
        for e in events
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= start
    ]
    return ProfilerReading(f"ONNX Runtime's profiler (kernel_time events; {how})", steps, latencies)


class OrtCudaRuntime(DeviceRuntime):
    """An ONNX file in ONNX Runtime's CUDA provider, on device buffers (IOBinding).

    The input and output live in PyTorch CUDA tensors for batches up to `buffer_rows` (a fixed
    batch file: its batch), bound to the session with IOBinding; ONNX Runtime computes on this
    runtime's CUDA stream (`user_compute_stream`), so `copy_in`, `execute` and `copy_out` queue
    in order on one stream and the benchmark times them apart with CUDA events. Options that
    change speed, start-up time or results:

    - `conv_search`: cuDNN's convolution algorithm search, "exhaustive" (fastest kernels, a
      slower first run per batch size), "heuristic" or "default";
    - `prefer_nhwc`: let ONNX Runtime run convolutions channels-last (faster on tensor cores);
    - `cuda_graphs`: replay one CUDA graph per batch size, each in a session of its own (ONNX
      Runtime captures a session's graph on its first run, for one input shape).
    """

    backend = "onnxruntime"
    provider = "cuda"

    def __init__(
        self,
        path: str | Path,
        *,
        device: int = 0,
        cuda_graphs: bool = False,
        conv_search: str = "exhaustive",
        prefer_nhwc: bool = True,
        buffer_rows: int = 256,
        layer_times: bool = False,
    ) -> None:
        from .gpu import require_cuda

        ort = import_onnxruntime()
        path = input_file(path, "model file", "a model file (.onnx)", ArtifactError)
        require_provider("cuda")
        torch = require_cuda("ONNX Runtime on CUDA with device buffers (PyTorch's)")
        if conv_search not in CONV_SEARCHES:
            raise ToolkitError(f"cuDNN search must be one of {', '.join(CONV_SEARCHES)}, got {conv_search!r}")
        if buffer_rows < 1:
            raise ToolkitError(f"buffer rows must be at least 1, got {buffer_rows}")
        self._ort, self._torch = ort, torch
        self.path, self.device, self.layer_times = path, f"cuda:{device}", layer_times
        self.cuda_graphs, self.conv_search, self.prefer_nhwc = cuda_graphs, conv_search, prefer_nhwc
        self.stream = torch.cuda.Stream(device=self.device)
        # One session runs every batch size; with CUDA graphs, each batch size has its own.
        session = self._shared = self._new_session()
        self._graph_sessions: dict[int, object] = {}
        signature = _signature(session, path)
        _adopt(self, signature)
        if signature.output.dtype not in _FLOAT_TYPES:
            raise ArtifactError(
                f"{path} gives {signature.output.dtype} output; float32 or float16 logits are supported"
            )
        self.buffer_rows = self.input_shape[0] or buffer_rows
        self._output_dtype = np.dtype(signature.output.dtype)
        self.allocate(
            self.buffer_rows,
            signature.output.shape[-1],
            getattr(torch, self.input_dtype.name),
            getattr(torch, self._output_dtype.name),
        )
        self._bindings: dict[int, object] = {}
        self._run_options = ort.RunOptions()
        # The stream is ours: synchronize() waits for it; ONNX Runtime need not block each run.
        self._run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")

    def _provider_options(self) -> dict:
        return {
            "device_id": self.device.split(":")[1],
            "has_user_compute_stream": "1",
            "user_compute_stream": str(self.stream.cuda_stream),
            "cudnn_conv_algo_search": self.conv_search.upper(),
            "prefer_nhwc": "1" if self.prefer_nhwc else "0",
            "enable_cuda_graph": "1" if self.cuda_graphs else "0",
        }

    def _new_session(self):
        providers = [("CUDAExecutionProvider", self._provider_options()), "CPUExecutionProvider"]
        return _create_session(self.path, _session_options(), providers, "cuda")[0]

    def _session(self, n: int):
        """The session for batch size n: the shared one, or with CUDA graphs one per size."""
        if not self.cuda_graphs:
            return self._shared
        if n not in self._graph_sessions:
            self._graph_sessions[n] = self._new_session()
        return self._graph_sessions[n]

    @property
    def batch_range(self) -> tuple[int, int]:
        fixed = self.input_shape[0]
        return (fixed, fixed) if fixed else (1, self.buffer_rows)

    def _binding(self, n: int):
        """(session, IOBinding) of batch size n: the first n rows of the device buffers."""
        if n not in self._bindings:
            session = self._session(n)
            binding = session.io_binding()
            device_id = int(self.device.split(":")[1])
            binding.bind_input(
                self.input_name, "cuda", device_id, self.input_dtype, (n, *self.input_shape[1:]), self._input.data_ptr()
            )
            binding.bind_output(
                self.output_name,
                "cuda",
                device_id,
                self._output_dtype,
                (n, self._output.shape[1]),
                self._output.data_ptr(),
            )
            self._bindings[n] = (session, binding)
        return self._bindings[n]

    def execute(self, n: int) -> None:
        """Queue the model on the first `n` inputs (the CUDA graph of batch size n, when on)."""
        session, binding = self._binding(n)
        session.run_with_iobinding(binding, self._run_options)

    def time_layers(self, batch: np.ndarray, runs: int, warmup: int) -> ProfilerReading:
        """ONNX Runtime's profiler on a CUDA session of its own with this runtime's provider options
        (NumPy in and out, so each run's latency includes its copies)."""
        if not self.layer_times:
            return super().time_layers(batch, runs, warmup)
        batch = self.check_input(batch)
        options = self._provider_options() | {"enable_cuda_graph": "0"}  # a profiled run is not a replay
        providers = [("CUDAExecutionProvider", options), "CPUExecutionProvider"]
        return ort_profiler_reading(
            self.path, _session_options(), providers, lambda s, x: s.run(None, {self.input_name: x}),
            batch, runs, warmup, f"cuda, cuDNN search {self.conv_search}",
        )  # fmt: skip

    def close(self) -> None:
        self._bindings.clear()
        self._graph_sessions.clear()
        self._shared = None

    def settings(self) -> dict:
        return {
            "provider": "cuda",
            "io_binding": True,
            "cudnn_conv_algo_search": self.conv_search,
            "prefer_nhwc": self.prefer_nhwc,
            "cuda_graphs": self.cuda_graphs,
        }

    def describe(self) -> str:
        name = self._torch.cuda.get_device_name(self.device)
        options = [f"cuDNN search {self.conv_search}", "NHWC" if self.prefer_nhwc else "NCHW"]
        if self.cuda_graphs:
            options.append("CUDA graphs")
        return (
            f"onnxruntime {self._ort.__version__} on {name}, input {self.input_name} "
            f"{np.dtype(self.input_dtype).name} (CUDAExecutionProvider, IOBinding, {', '.join(options)})"
        )
