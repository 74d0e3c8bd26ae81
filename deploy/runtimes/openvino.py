"""ONNX files in Intel's OpenVINO on the CPU, behind the `Runtime` interface (`open_runtime(path,
backend="openvino")`).

OpenVINO reads the ONNX file itself (`Core.read_model`): no conversion step, no IR files to keep
in step with the ONNX one. The model is compiled once per batch size with that static shape
(measured on ResNet-50, 2-core AMD EPYC with AVX-512: static shapes ran 3-10% faster than one
dynamic-batch compilation, and a compilation takes 0.2-0.3 s), and the compiled models are kept.

The precision is always explicit: OpenVINO's CPU plugin **silently** computes in BF16 on CPUs
that have it (its `INFERENCE_PRECISION_HINT` defaults to bfloat16 there), so a user comparing
"FP32" figures would be misled; here the hint is always set, to f32 unless BF16 is asked for, and
BF16 is refused on a CPU without native BF16 arithmetic (`deploy.runtimes.cpu`). INT8 (Q/DQ)
files run as they are; their float parts follow the same hint. `hint="latency"` (the default)
runs each batch as one request; `hint="throughput"` compiles for OpenVINO's throughput mode and
splits a batch over its parallel requests (`AsyncInferQueue`), one part per stream.
The capabilities: `outputs` marks the tensors of those modules as outputs of the model
(`run_outputs`); `layer_times` lets `time_layers` read OpenVINO's per-node counters (`PERF_COUNT`)
on a twin compiled with the same precision, threads and hint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from toolkit.errors import ArtifactError, ToolkitError, clip
from toolkit.files import input_file
from toolkit.optional import require

from .base import ProfilerReading, Runtime, timed_runs
from .choices import OPENVINO_HINTS, OPENVINO_PRECISIONS
from .cpu import BF16_FLAGS, CpuFeatures, note_int8_saturation


def import_openvino():
    return require("openvino", "running an ONNX file in OpenVINO")


def check_openvino_precision(precision: str, features: CpuFeatures) -> str:
    """`precision` when OpenVINO can compute it on this CPU (`features`, from `CpuFeatures.probe`),
    else one sentence saying why not."""
    if precision not in OPENVINO_PRECISIONS:
        raise ToolkitError(f"OpenVINO computes in {' or '.join(OPENVINO_PRECISIONS)}, not {precision}")
    if precision == "bf16" and not features.bf16:
        raise ToolkitError(
            f"BF16 in OpenVINO needs an x86 CPU with native BF16 arithmetic ({' or '.join(BF16_FLAGS)}); this one "
            f"({features.machine}) has {features.describe()}: run the model in FP32 here"
        )
    return precision


def _signature(model, path: Path):
    """The classifier signature of a model OpenVINO read (its inputs, outputs and the ONNX file's
    metadata, which OpenVINO keeps under rt_info "framework"): what `inspect_onnx` gives, without
    parsing the file a second time (nor importing onnx)."""
    from ..artifacts.onnx_file import classifier_signature
    from ..artifacts.tensors import TensorInfo

    def info(port) -> TensorInfo:
        shape = tuple(None if d.is_dynamic else d.get_length() for d in port.get_partial_shape())
        return TensorInfo(port.get_any_name(), port.get_element_type().to_dtype().name, shape)

    framework = model.get_rt_info()["framework"] if model.has_rt_info(["framework"]) else {}
    metadata = {key: framework[key].astype(str) for key in framework} if framework else {}
    return classifier_signature(
        path, [info(p) for p in model.inputs], [info(p) for p in model.outputs], metadata, "fp32"
    )


class OpenVinoRuntime(Runtime):
    """An ONNX file in OpenVINO on the CPU, NumPy in and out (see the module docstring)."""

    backend = "openvino"
    device = "cpu"

    def __init__(
        self,
        path: str | Path,
        *,
        precision: str = "fp32",
        threads: int | None = None,
        hint: str = "latency",
        features: CpuFeatures | None = None,
        outputs: Sequence[str] = (),
        layer_times: bool = False,
        _perf_count: bool = False,
    ) -> None:
        ov = import_openvino()
        path = input_file(path, "model file", "a model file (.onnx)", ArtifactError)
        if hint not in OPENVINO_HINTS:
            raise ToolkitError(f"OpenVINO hint must be one of {', '.join(OPENVINO_HINTS)}, got {hint!r}")
        if outputs and hint != "latency":
            raise ToolkitError("named outputs come from one request per batch: use OpenVINO's latency hint")
        features = features or CpuFeatures.probe()
        self.precision = check_openvino_precision(precision, features)
        self.core = ov.Core()
        try:
            self.model = self.core.read_model(str(path))
        except RuntimeError as error:
            raise ArtifactError(f"OpenVINO cannot read {path}: {clip(error)}") from None
        signature = _signature(self.model, path)
        self.path, self.threads, self.hint, self.graph_precision = path, threads, hint, signature.precision
        self.input_name, self.output_name = signature.input.name, signature.output.name
        self.input_dtype, self.input_shape, self.info = (
            np.dtype(signature.input.dtype),
            signature.input.shape,
            signature.info,
        )
        self.config = (
            {
                "INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[self.precision],
                "PERFORMANCE_HINT": hint.upper(),
            }
            | ({"INFERENCE_NUM_THREADS": threads} if threads is not None else {})
            | ({"PERF_COUNT": True} if _perf_count else {})
        )
        self.layer_times, self.features = layer_times, features
        self._taps = self._add_outputs(list(outputs)) if outputs else {}
        self.outputs = tuple(self._taps)
        self._compiled: dict[int, tuple] = {}  # batch -> (compiled model, its request(s), images per request)
        note_int8_saturation(self, features)

    @property
    def arithmetic(self) -> str:
        """What the runtime computes in: "fp32", "bf16", "int8" (float parts in f32) or "int8 bf16"."""
        if self.graph_precision == "int8":
            return "int8" + (" bf16" if self.precision == "bf16" else "")
        return self.precision

    def _requests(self, n: int):
        """The compiled model for batch `n` and its requests: one for latency, OpenVINO's optimal
        number of parallel requests for throughput (each then takes a part of the batch)."""
        if n in self._compiled:
            return self._compiled[n]
        ov = import_openvino()
        streams = 1
        if self.hint == "throughput" and self.input_shape[0] is None:
            probe = self.core.compile_model(self.model, "CPU", self.config)
            streams = max(1, min(n, int(probe.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))))
        part = -(-n // streams)
        model = self.model.clone()
        if self.input_shape[0] is None:
            model.reshape({self.input_name: [part, *self.input_shape[1:]]})
        compiled = self.core.compile_model(model, "CPU", self.config)
        queue = ov.AsyncInferQueue(compiled, streams) if streams > 1 else None
        self._compiled[n] = (compiled, [compiled.create_infer_request()] if queue is None else queue, part)
        return self._compiled[n]

    def _run(self, batch: np.ndarray) -> np.ndarray:
        compiled, requests, part = self._requests(len(batch))
        if isinstance(requests, list):
            request = requests[0]
            request.infer({0: batch})
            return np.array(request.get_output_tensor(0).data, copy=True)
        results: dict[int, np.ndarray] = {}

        def done(request, index):
            results[index] = np.array(request.get_output_tensor(0).data, copy=True)

        requests.set_callback(done)
        pieces = [batch[i : i + part] for i in range(0, len(batch), part)]
        for index, piece in enumerate(pieces):
            if len(piece) < part:  # the last part, filled to the compiled size
                piece = np.concatenate([piece, np.repeat(piece[-1:], part - len(piece), axis=0)])
            requests.start_async({0: piece}, index)
        requests.wait_all()
        return np.concatenate([results[i] for i in range(len(pieces))])[: len(batch)]

    def _add_outputs(self, points: list[str]) -> dict[str, str]:
        """Mark the tensors of `points` (`deploy.artifacts.module_tensors`) as outputs of the model;
        point -> tensor name, for the points the file holds."""
        import onnx

        from ..artifacts.onnx_file import module_tensors

        taps = module_tensors(onnx.load(str(self.path), load_external_data=False), points)
        extra = [t for t in dict.fromkeys(taps.values()) if t != self.output_name]
        try:
            self.model.add_outputs(extra)
        except RuntimeError as error:
            raise ArtifactError(f"OpenVINO cannot output {len(extra)} tensors of {self.path.name}: {error}") from None
        return taps

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if not self._taps:
            return super().run_outputs(batch)
        batch = self.check_input(batch)
        _, requests, _ = self._requests(len(batch))
        request = requests[0]
        request.infer({0: batch})
        tensors = {t: np.array(request.get_tensor(t).data, copy=True) for t in dict.fromkeys(self._taps.values())}
        return {point: tensors[tensor] for point, tensor in self._taps.items()}

    def time_layers(self, batch: np.ndarray, runs: int, warmup: int) -> ProfilerReading:
        """OpenVINO's PERF_COUNT, on a twin compiled with this runtime's precision, threads and hint,
        read after each run (OpenVINO keeps the counters of the last run only)."""
        if not self.layer_times:
            return super().time_layers(batch, runs, warmup)
        batch = self.check_input(batch)
        twin = OpenVinoRuntime(
            self.path, precision=self.precision, threads=self.threads, hint=self.hint, features=self.features,
            _perf_count=True,
        )  # fmt: skip
        steps, latencies = [], []
        try:
            timed_runs(twin.run, batch, 0, warmup)
            for _ in range(runs):
                latencies += timed_runs(twin.run, batch, 1, 0)
                _, requests, _ = twin._requests(len(batch))
                for info in requests[0].profiling_info:
                    if not str(info.status).endswith("NOT_RUN") and info.node_type != "Parameter":
                        steps.append((info.node_name, info.real_time.total_seconds() * 1e3, info.node_type))
        finally:
            twin.close()
        return ProfilerReading(f"OpenVINO's PERF_COUNT ({self.arithmetic}, {self.hint} hint)", steps, latencies)

    def settings(self) -> dict:
        return {"precision": self.arithmetic, "hint": self.hint, "threads": self.threads}

    def describe(self) -> str:
        return super().describe() + f" (OpenVINO CPU, {self.arithmetic}, {self.hint} hint)"

    def close(self) -> None:
        self._compiled.clear()
