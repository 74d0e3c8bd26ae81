"""Where the time goes: per-layer times from each backend's own profiler, mapped to the ResNet's
structure (`resnet-bench --profile`).

A unit is what a backend runs as one step once it has fused a convolution with what follows it:
a convolution (with its BatchNorm, ReLU and, for a block's last one, the residual add and ReLU),
a shortcut, the max-pool, the average pool (with the flatten) and `fc`. Every backend's layer
names carry the module names the ONNX writer gave the nodes (`layer1.0.conv1`), or the tensor
names it gave their outputs (ONNX Runtime names a fused node after its output: `layer1.0.relu1`),
and `unit_of` maps any of them to the unit:

- ONNX Runtime: `SessionOptions.enable_profiling`, the node events (`kernel_time`) of the timed
  runs only (the warm-up runs and everything before them, the profiler's own first-run events
  included, are dropped by the `model_run` windows they fall in);
- PyTorch: forward hooks around every leaf module, timed with `perf_counter` (on a GPU after a
  synchronize), BatchNorm and ReLU added to their convolution;
- OpenVINO: `PERF_COUNT` and the request's `profiling_info` (executed nodes only);
- TensorRT: an `IProfiler` on the execution context (`report_layer_time`); its fused layer names
  ("layer1.0.conv1 + layer1.0.relu1") contain the ONNX node names. Written against TensorRT 11.4's
  and 10.13's Python API, not run here.

The per-layer times are summed and compared with the measured latency of the same runs
(`perf_counter` around each run): the gap (the profiler's overhead, the runtime's own work between
layers, the residual adds PyTorch runs outside any module) is shown. Steps a backend times that
are no module's (ONNX Runtime's and OpenVINO's memory reorders) are timed as "other".
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from deploy.runtimes.base import Runtime
from resnet.architecture import Architecture
from toolkit.errors import ToolkitError

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4", "head", "other")
OTHER = "other"  # the backend's own steps that are no module's (memory reorders): attributed, but to no layer
PROFILE_RUNS, PROFILE_WARMUP = 10, 2


def units(architecture: Architecture) -> list[str]:
    """The units of a ResNet in network order (see the module docstring)."""
    names = ["conv1"] + (["maxpool"] if architecture.stem == "imagenet" else [])
    shortcuts = {name for name, *_ in architecture.shortcut_blocks()}
    convs = 2 if architecture.block == "basic" else 3
    for stage, count in enumerate(architecture.layers):
        for position in range(count):
            block = f"layer{stage + 1}.{position}"
            names += [f"{block}.conv{i}" for i in range(1, convs + 1)]
            names += [f"{block}.downsample"] if block in shortcuts else []
    return names + ["avgpool", "fc"]


def stage_of(unit: str) -> str:
    if unit == OTHER:
        return OTHER
    if unit.startswith("layer"):
        return unit.split(".")[0]
    return "head" if unit in ("avgpool", "fc") else "stem"


def unit_of(name: str, convs: int) -> str | None:
    """The unit a backend's layer name belongs to (None: no module's, such as a reorder): the
    first module or tensor name in it, a ReLU's or an add's mapped to the convolution before it."""
    for token in name.replace("/", " ").replace("+", " ").replace(",", " ").split():
        token = token.removesuffix("_nchwc").split(":")[0]
        parts = token.split(".")
        if token in ("conv1", "relu", "bn1"):
            return "conv1"
        if token in ("maxpool", "avgpool", "flatten", "fc", "logits"):
            return {"flatten": "avgpool", "logits": "fc"}.get(token, token)
        if not (token.startswith("layer") and len(parts) >= 3):
            continue
        block, leaf = ".".join(parts[:2]), parts[2]
        if leaf == "downsample":
            return f"{block}.downsample"
        if leaf in ("add", "relu"):
            return f"{block}.conv{convs}"
        for prefix in ("conv", "relu", "bn"):
            if leaf.startswith(prefix) and leaf[len(prefix) :].isdigit():
                return f"{block}.conv{leaf[len(prefix) :]}"
    return None


@dataclass
class LayerTime:
    name: str
    stage: str
    ms: float  # mean per batch
    share: float  # fraction of the attributed time
    gflops: float | None  # GFLOP/s of this layer (convolutions and fc; from the architecture)
    ops: list[str] = field(default_factory=list)  # what the backend ran for it


@dataclass
class Profile:
    """One target at one batch size, layer by layer."""

    backend: str
    batch: int
    runs: int
    layers: list[LayerTime]
    stages: list[dict]  # {"name", "ms", "share"}
    attributed_ms: float  # the layers' times, summed
    measured_ms: float  # mean latency of the same runs
    profiler: str  # which profiler
    unattributed: list[str] = field(default_factory=list)  # backend layer names no module owns (timed as "other")

    @property
    def gap_ms(self) -> float:
        return self.measured_ms - self.attributed_ms

    def to_dict(self) -> dict:
        return asdict(self) | {"gap_ms": self.gap_ms}

    @classmethod
    def from_dict(cls, data: dict) -> Profile:
        data = {k: v for k, v in data.items() if k != "gap_ms"}
        return cls(**{**data, "layers": [LayerTime(**layer) for layer in data["layers"]]})


def layer_flops(architecture: Architecture, dataset: str, spec) -> dict[str, float]:
    """2 x multiply-accumulates per image of each convolution unit and fc (meta device: no memory)."""
    import torch
    from torch import nn

    from resnet.model import ResNet

    with torch.device("meta"):
        model = ResNet.from_architecture(architecture, dataset=dataset, input_spec=spec)
    found: dict[str, float] = {}
    convs = 2 if architecture.block == "basic" else 3

    def hook(name):
        def record(module, inputs, output):
            per_output = (
                module.weight.shape[1] * module.weight[0, 0].numel()
                if isinstance(module, nn.Conv2d)
                else module.in_features
            )
            unit = unit_of(name, convs)  # "layer1.0.downsample.0", the shortcut's convolution: its unit
            found[unit] = found.get(unit, 0.0) + 2.0 * output[0].numel() * per_output

        return record

    handles = [
        m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    with torch.no_grad():
        model.eval()(torch.zeros((1, spec.channels, spec.height, spec.width), device="meta"))
    for handle in handles:
        handle.remove()
    return found


def summarize(
    times: dict[str, list[float]],
    info,
    batch: int,
    measured_ms: float,
    *,
    backend: str,
    profiler: str,
    runs: int,
    ops: dict[str, set] | None = None,
    unattributed: list[str] | None = None,
) -> Profile:
    """A `Profile` from total ms per unit over `runs` runs, in network order, with stages and FLOP rates."""
    order = [*units(info.architecture), OTHER]
    flops = layer_flops(info.architecture, info.dataset, info.input_spec)
    mean = {unit: sum(values) / runs for unit, values in times.items()}
    attributed = sum(mean.values())
    layers = [
        LayerTime(
            name=unit,
            stage=stage_of(unit),
            ms=mean[unit],
            share=mean[unit] / attributed if attributed else 0.0,
            gflops=(flops[unit] * batch / (mean[unit] / 1e3) / 1e9) if unit in flops and mean[unit] > 0 else None,
            ops=sorted((ops or {}).get(unit, ())),
        )
        for unit in order
        if unit in mean
    ]
    stages = []
    for stage in STAGES:
        ms = sum(layer.ms for layer in layers if layer.stage == stage)
        if any(layer.stage == stage for layer in layers):
            stages.append({"name": stage, "ms": ms, "share": ms / attributed if attributed else 0.0})
    return Profile(
        backend, batch, runs, layers, stages, attributed, measured_ms, profiler, sorted(set(unattributed or []))
    )


# ---- the backends ----------------------------------------------------------------------------


class _Tally:
    """A backend's layer times, by unit: each name mapped by `unit_of` (no module's: "other")."""

    def __init__(self, architecture: Architecture) -> None:
        self.convs = 2 if architecture.block == "basic" else 3
        self.times: dict[str, list[float]] = {}
        self.ops: dict[str, set] = {}
        self.unattributed: list[str] = []

    def add(self, name: str, ms: float, op: str | None = None) -> None:
        unit = unit_of(name, self.convs)
        if unit is None:
            self.unattributed.append(name)
            unit = OTHER
        self.times.setdefault(unit, [0.0])[0] += ms
        if op is not None:
            self.ops.setdefault(unit, set()).add(op)

    def profile(
        self, runtime, batch: int, latencies: list[float], *, backend: str, profiler: str, runs: int
    ) -> Profile:
        return summarize(
            self.times,
            runtime.info,
            batch,
            float(np.mean(latencies)),
            backend=backend,
            profiler=profiler,
            runs=runs,
            ops=self.ops,
            unattributed=self.unattributed,
        )


def _timed_runs(run, batch: np.ndarray, runs: int, warmup: int) -> list[float]:
    """Warm-up runs, then the timed ones: each one's latency in ms."""
    for _ in range(warmup):
        run(batch)
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        run(batch)
        seconds.append((time.perf_counter() - started) * 1e3)
    return seconds


def _profile_onnxruntime(runtime, batch: np.ndarray, runs: int, warmup: int) -> Profile:
    from deploy.runtimes.onnxruntime import OrtRuntime

    with tempfile.TemporaryDirectory(prefix="resnet-profile-") as folder:
        profiled = OrtRuntime(
            runtime.path, provider=runtime.provider, threads=runtime.threads, profile=Path(folder) / "ort"
        )
        latencies = _timed_runs(profiled.run, batch, runs, warmup)
        events = json.loads(Path(profiled.session.end_profiling()).read_text())
        profiled.close()
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")
    if len(windows) < warmup + runs:
        raise ToolkitError(f"ONNX Runtime's profiler recorded {len(windows)} runs of {warmup + runs}")
    start = windows[warmup][0]  # the warm-up runs, and everything before them, are left out
    tally = _Tally(runtime.info.architecture)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= start:
            tally.add(
                event["name"].removesuffix("_kernel_time"), event["dur"] / 1e3, event.get("args", {}).get("op_name")
            )
    return tally.profile(
        runtime,
        len(batch),
        latencies,
        backend="onnxruntime",
        profiler="ONNX Runtime's profiler (kernel_time events)",
        runs=runs,
    )


def _profile_openvino(runtime, batch: np.ndarray, runs: int, warmup: int) -> Profile:
    from deploy.runtimes.openvino import OpenVinoRuntime

    profiled = OpenVinoRuntime(runtime.path, precision=runtime.precision, threads=runtime.threads, profiling=True)
    tally, latencies = _Tally(runtime.info.architecture), []
    _timed_runs(profiled.run, batch, 0, warmup)
    for _ in range(runs):  # OpenVINO keeps the counters of the last run: read after each one
        latencies += _timed_runs(profiled.run, batch, 1, 0)
        for info in profiled.profiling_info(len(batch)):
            if not str(info.status).endswith("NOT_RUN") and info.node_type != "Parameter":
                tally.add(info.node_name, info.real_time.total_seconds() * 1e3, info.node_type)
    profiled.close()
    return tally.profile(
        runtime, len(batch), latencies, backend="openvino", profiler="OpenVINO's PERF_COUNT", runs=runs
    )


class _ModuleTimer:
    """Forward hooks around each leaf module of a PyTorch model, adding each one's time to its unit
    (a block's one ReLU runs after each of its convolutions: each call goes to the one before it)."""

    def __init__(self, model, convs: int, cuda: bool) -> None:
        import torch

        self.convs, self.cuda, self._torch = convs, cuda, torch
        self.totals: dict[str, list[float]] = {}
        self.counting = False
        self._started: dict[str, float] = {}
        self._calls: dict[str, int] = {}
        leaves = [
            (n, m)
            for n, m in model.named_modules()
            if n and not any(True for _ in m.children()) and not isinstance(m, torch.nn.Identity)
        ]
        self.handles = [m.register_forward_pre_hook(self._before(n)) for n, m in leaves]
        self.handles += [m.register_forward_hook(self._after(n)) for n, m in leaves]

    def _unit(self, name: str) -> str | None:
        parts = name.split(".")
        if name.endswith(".relu") and len(parts) == 3:
            block = ".".join(parts[:2])
            self._calls[block] = self._calls.get(block, 0) % self.convs + 1
            return f"{block}.conv{self._calls[block]}"
        return unit_of(name, self.convs)

    def _before(self, name: str):
        def hook(module, inputs):
            if self.cuda:
                self._torch.cuda.synchronize()
            self._started[name] = time.perf_counter()

        return hook

    def _after(self, name: str):
        def hook(module, inputs, output):
            if self.cuda:
                self._torch.cuda.synchronize()
            unit = self._unit(name)
            if self.counting and unit is not None:
                self.totals.setdefault(unit, [0.0])[0] += (time.perf_counter() - self._started[name]) * 1e3

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _profile_pytorch(runtime, batch: np.ndarray, runs: int, warmup: int) -> Profile:
    cuda = str(runtime.device).startswith("cuda")
    timer = _ModuleTimer(runtime.model, 2 if runtime.info.architecture.block == "basic" else 3, cuda)
    try:
        _timed_runs(runtime.run, batch, 0, warmup)
        timer.counting = True
        latencies = _timed_runs(runtime.run, batch, runs, 0)
    finally:
        timer.remove()
    return summarize(
        timer.totals,
        runtime.info,
        len(batch),
        float(np.mean(latencies)),
        backend="pytorch",
        profiler="forward hooks around each module (perf_counter" + (", synchronized)" if cuda else ")"),
        runs=runs,
    )


def _profile_tensorrt(runtime, batch: np.ndarray, runs: int, warmup: int) -> Profile:
    from deploy.runtimes.tensorrt import import_tensorrt

    trt = import_tensorrt()
    tally = _Tally(runtime.info.architecture)
    counting = {"on": False}

    class LayerTimes(trt.IProfiler):
        def __init__(self):
            trt.IProfiler.__init__(self)  # pybind11: the base's constructor, explicitly

        def report_layer_time(self, layer_name, ms):
            if counting["on"]:
                tally.add(layer_name, ms)

    profiler = LayerTimes()
    context = runtime.context
    context.profiler = profiler
    try:
        _timed_runs(runtime.run, batch, 0, warmup)
        counting["on"] = True
        latencies = _timed_runs(runtime.run, batch, runs, 0)
    finally:
        context.profiler = None
    return tally.profile(
        runtime,
        len(batch),
        latencies,
        backend="tensorrt",
        profiler="TensorRT's IProfiler (report_layer_time)",
        runs=runs,
    )


PROFILERS = {
    "onnxruntime": _profile_onnxruntime,
    "openvino": _profile_openvino,
    "pytorch": _profile_pytorch,
    "tensorrt": _profile_tensorrt,
}


def profile_runtime(
    runtime: Runtime, batch_size: int, *, runs: int = PROFILE_RUNS, warmup: int = PROFILE_WARMUP, seed: int = 0
) -> Profile:
    """Per-layer times of `runtime` at `batch_size` from its backend's profiler (module docstring)."""
    if runtime.info is None:
        raise ToolkitError(f"{runtime.describe()} has no resnet-export metadata, so its layers can't be named")
    profiler = PROFILERS.get(runtime.backend)
    if profiler is None:
        raise ToolkitError(f"no profiler for the {runtime.backend} backend")
    batch = runtime.random_input(batch_size, seed=seed)
    return profiler(runtime, batch, runs, warmup)
