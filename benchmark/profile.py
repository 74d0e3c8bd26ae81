"""Where the time goes: per-layer times from each backend's own profiler, mapped to the ResNet's
structure (`resnet-bench --profile`).

A unit is what a backend runs as one step once it has fused a convolution with what follows it:
a convolution (with its BatchNorm, ReLU and, for a block's last one, the residual add and ReLU),
a shortcut, the max-pool, the average pool (with the flatten) and `fc`. Every backend's layer
names carry the module names the ONNX writer gave the nodes (`layer1.0.conv1`), or the tensor
names it gave their outputs (ONNX Runtime names a fused node after its output: `layer1.0.relu1`),
and `unit_of` maps any of them to the unit:

Each backend's profiler is its runtime's (`Runtime.time_layers`, asked for when the runtime is
opened: `RuntimeOptions(layer_times=True)`), so a profile runs with exactly the options of the
measurement (provider, threads, OpenVINO's hint and precision):

- ONNX Runtime: `SessionOptions.enable_profiling`, the node events (`kernel_time`) of the timed
  runs only, on a session of its own with the same provider and threads (CPU or CUDA);
- PyTorch: forward hooks around every leaf module, timed with `perf_counter` (on a GPU after a
  synchronize); a block's ReLU calls named as its module points (`relu1`, ..., `relu`);
- OpenVINO: `PERF_COUNT` and the request's `profiling_info` (executed nodes only);
- TensorRT: an `IProfiler` on the execution context (`report_layer_time`); its fused layer names
  ("layer1.0.conv1 + layer1.0.relu1") contain the ONNX node names. Written against TensorRT 11.4's
  and 10.13's Python API, not run here.

This module maps the backends' names to units and stages; it imports no backend.

The per-layer times are summed and compared with the measured latency of the same runs
(`perf_counter` around each run): the gap (the profiler's overhead, the runtime's own work between
layers, the residual adds PyTorch runs outside any module) is shown. Steps a backend times that
are no module's (ONNX Runtime's and OpenVINO's memory reorders) are timed as "other".
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from deploy.runtimes.base import Runtime
from resnet.architecture import Architecture
from resnet.architecture import stage_of as module_stage
from toolkit.errors import ToolkitError

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4", "head", "other")
OTHER = "other"  # the backend's own steps that are no module's (memory reorders): attributed, but to no layer
PROFILE_RUNS, PROFILE_WARMUP = 10, 2


def units(architecture: Architecture) -> list[str]:
    """The units of a ResNet in network order (see the module docstring)."""
    names = ["conv1"] + (["maxpool"] if architecture.stem == "imagenet" else [])
    shortcuts = {name for name, *_ in architecture.shortcut_blocks()}
    for block in architecture.blocks():
        names += [f"{block}.conv{i}" for i in range(1, architecture.convs_per_block + 1)]
        names += [f"{block}.downsample"] if block in shortcuts else []
    return names + ["avgpool", "fc"]


def stage_of(unit: str) -> str:
    """A unit's stage (`resnet.architecture.stage_of`), or "other" for the backend's own steps."""
    return OTHER if unit == OTHER else module_stage(unit)


def unit_of(name: str, convs: int) -> str | None:
    """The unit a backend's layer name belongs to (None: no module's, such as a reorder): the
    first module or tensor name in it, a ReLU's or an add's mapped to the convolution before it."""
    for token in name.replace("/", " ").replace("+", " ").replace(",", " ").split():
        token = re.sub(r"_token_\d+$", "", token.removesuffix("_nchwc").split(":")[0])  # ORT's renamed QLinearConv
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
    convs = architecture.convs_per_block

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
            gflops=(flops[unit] * batch / (mean[unit] / 1e3) / 1e9) if _computes(unit, flops, mean, ops) else None,
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


MATRIX_OPS = ("conv", "gemm", "matmul", "linear", "fullyconnected", "innerproduct")


def _computes(unit: str, flops: dict, mean: dict, ops: dict | None) -> bool:
    """Whether a unit's FLOP rate means something: its work is known, its time is not zero, and
    what the backend ran for it includes the convolution or matrix product itself (a unit timed
    only by its residual add must not be divided into its convolution's work)."""
    ran = (ops or {}).get(unit)
    if unit not in flops or mean[unit] <= 0:
        return False
    return not ran or any(kind in op.lower() for op in ran for kind in MATRIX_OPS)


# ---- the backends' readings ------------------------------------------------------------------


class _UnitTimes:
    """A backend's steps summed by unit: each name mapped by `unit_of` (no module's: "other")."""

    def __init__(self, architecture: Architecture) -> None:
        self.convs = architecture.convs_per_block
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


def profile_runtime(
    runtime: Runtime, batch_size: int, *, runs: int = PROFILE_RUNS, warmup: int = PROFILE_WARMUP, seed: int = 0
) -> Profile:
    """Per-layer times of `runtime` at `batch_size`: its backend's profiler (`Runtime.time_layers`;
    the runtime was opened with `RuntimeOptions(layer_times=True)`), mapped to units and stages."""
    if runtime.info is None:
        raise ToolkitError(f"{runtime.describe()} has no resnet-export metadata, so its layers can't be named")
    reading = runtime.time_layers(runtime.random_input(batch_size, seed=seed), runs, warmup)
    tally = _UnitTimes(runtime.info.architecture)
    for name, ms, op in reading.steps:
        tally.add(name, ms, op)
    return summarize(
        tally.times,
        runtime.info,
        batch_size,
        float(np.mean(reading.latencies_ms)),
        backend=runtime.backend,
        profiler=reading.profiler,
        runs=runs,
        ops=tally.ops,
        unattributed=tally.unattributed,
    )


def format_profile(label: str, profile: Profile) -> str:
    """A measurement's per-layer times: the stages, then every layer in network order."""
    p = profile
    lines = [
        f"profile: {label}, batch {p.batch}, {p.runs} runs ({p.profiler}): {p.attributed_ms:.3f} ms in layers "
        f"of {p.measured_ms:.3f} ms measured (gap {p.gap_ms:+.3f} ms, {p.gap_ms / p.measured_ms:+.1%})",
        "  stages  " + ", ".join(f"{s['name']} {s['ms']:.3f} ms ({s['share']:.1%})" for s in p.stages),
        f"  {'layer':<22} {'ms':>9} {'share':>7} {'GFLOP/s':>9}  ran as",
    ]
    for layer in p.layers:
        rate = f"{layer.gflops:.1f}" if layer.gflops is not None else "-"
        lines.append(
            f"  {layer.name:<22} {layer.ms:>9.3f} {layer.share:>7.1%} {rate:>9}  {', '.join(layer.ops)}".rstrip()
        )
    if p.unattributed:
        lines.append(f"  other       {len(p.unattributed)} steps that are no module's: {', '.join(p.unattributed[:3])}")
    return "\n".join(lines)


def plot_profile(label: str, profile: Profile, path: Path) -> None:
    """Horizontal bars: each stage's share, then the layers that take the most time, coloured by stage."""
    from toolkit.files import atomic_path

    from .pyplot import pyplot

    plt = pyplot()
    colours = dict(zip(STAGES, plt.get_cmap("tab10").colors, strict=False))
    layers = sorted(profile.layers, key=lambda layer: -layer.ms)[:20]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 8), gridspec_kw={"height_ratios": [1, 3]})
    stages = profile.stages[::-1]
    top.barh([s["name"] for s in stages], [s["ms"] for s in stages], color=[colours[s["name"]] for s in stages])
    for index, stage in enumerate(stages):
        top.text(stage["ms"], index, f" {stage['ms']:.2f} ms ({stage['share']:.0%})", va="center", fontsize=8)
    top.set_xlabel("ms per batch")
    top.set_title(
        f"{label}, batch {profile.batch}: {profile.attributed_ms:.2f} ms in layers of "
        f"{profile.measured_ms:.2f} ms measured (gap {profile.gap_ms:+.2f} ms)",
        fontsize=9,
    )
    bottom.barh(
        [layer.name for layer in layers][::-1],
        [layer.ms for layer in layers][::-1],
        color=[colours[layer.stage] for layer in layers][::-1],
    )
    bottom.set_xlabel("ms per batch (the 20 slowest layers)")
    bottom.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    with atomic_path(path) as staged:
        figure.savefig(staged, format="png", dpi=110)
    plt.close(figure)
