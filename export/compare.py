"""Where a conversion loses accuracy: two models compared layer by layer (`resnet-compare`).

Validation says whether a file's logits moved too far; this says where. Every intermediate
tensor that is a module's output is captured on both sides, matched by module name (the ONNX
writer names nodes and tensors after the modules: `layer2.0.conv1`, `layer2.0.downsample.pad`),
and compared on the same inputs, in network order (`layer_points`):

- PyTorch (a checkpoint, or a `ResNet`): forward hooks, in FP32 on the CPU. A convolution's
  point is its BatchNorm's output (the file folds BatchNorm into the convolution), a block's
  `add` the input of its last ReLU, a block's `relu` its output.
- ONNX (FP32, FP16, INT8 Q/DQ for either target): a temporary copy of the file lists each
  point's tensor as an extra graph output, run in ONNX Runtime. In a Q/DQ file the tensor
  observed is the dequantized one after the point's QuantizeLinear (what the next layer reads);
  points that the quantizer fused away (for the "cpu" target a convolution and its ReLU become
  one tensor, named after the ReLU) are absent from that file and listed as unmatched.
- A TensorRT engine: rebuilt from the ONNX file its manifest names, with the same points marked
  as network outputs, on this GPU. Marking outputs stops TensorRT from fusing across them, so
  those figures are of that rebuilt engine, which computes like the shipped one layer by layer
  but not bit for bit (the report says so).

Each layer is judged by the criterion validation uses for the pair (`export.validate.pair_criterion`)
with the same `Thresholds`: elementwise (error in units of that tensor's largest |value|) or by
agreement (cosine), plus FP16's range for FP16. The first layer, in network order, that misses
it is named; everything before it is within tolerance.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from deploy.artifacts.metadata import ModelInfo
from deploy.runtimes.open import backend_of
from resnet.architecture import Architecture
from toolkit.errors import ToolkitError
from toolkit.files import input_file
from toolkit.numbers import check_number
from toolkit.optional import require
from toolkit.precision import FP16_MAX

from .validate import Check, Thresholds, pair_criterion, tensor_checks

DEFAULT_BATCH = 8
DEFAULT_RANDOM = 16
RANDOM_INT8_NOTE = (
    "INT8 against a float model on random inputs, which lie outside the calibration range: layers are judged by "
    "finite values only; pass --images DIR (real images) to judge them by cosine"
)


def layer_points(architecture: Architecture) -> list[str]:
    """The module outputs of a ResNet in network order: the stem (`conv1`, `relu`, `maxpool`),
    each block's convolutions (BatchNorm folded in) and ReLUs, its shortcut, `add` and `relu`,
    then `avgpool` and `fc` (the logits)."""
    names = ["conv1", "relu"] + (["maxpool"] if architecture.stem == "imagenet" else [])
    shortcuts = {name for name, *_ in architecture.shortcut_blocks()}
    convs = 2 if architecture.block == "basic" else 3
    for stage, count in enumerate(architecture.layers):
        for position in range(count):
            block = f"layer{stage + 1}.{position}"
            for index in range(1, convs + 1):
                names.append(f"{block}.conv{index}")
                if index < convs:
                    names.append(f"{block}.relu{index}")
            names += [f"{block}.downsample"] if block in shortcuts else []
            names += [f"{block}.add", f"{block}.relu"]
    return names + ["avgpool", "fc"]


def stage_of(point: str) -> str:
    """ "stem", "layer1" ... "layer4", or "head"."""
    if point.startswith("layer"):
        return point.split(".")[0]
    return "head" if point in ("avgpool", "fc") else "stem"


# ---- the sides -------------------------------------------------------------------------------


class _Layers:
    """One side of a comparison: what it is, its model's metadata, and a run that returns the
    points it can observe, by name, as float arrays."""

    name: str
    backend: str
    device: str = "cpu"
    precision: str
    info: ModelInfo | None
    notes: tuple[str, ...] = ()

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - a side that holds nothing needs no close
        pass


class TorchLayers(_Layers):
    """A PyTorch ResNet (FP32, eval, CPU) with forward hooks on the modules of `layer_points`."""

    backend = "pytorch"

    def __init__(self, model, name: str = "pytorch fp32 (eval)") -> None:
        import copy

        from resnet.model import ResNet

        if not isinstance(model, ResNet):
            raise ToolkitError(f"a PyTorch side is a resnet.ResNet, got {type(model).__name__}")
        self.model = copy.deepcopy(model).float().eval().cpu()
        self.name, self.precision = name, "fp32"
        self.info = ModelInfo.from_model(self.model, precision="fp32")
        self.points = layer_points(self.model.architecture)
        self._captured: dict[str, np.ndarray] = {}
        self._calls: dict[str, int] = {}
        self._hooks = self._register()

    def _keep(self, name: str, tensor) -> None:
        self._captured[name] = tensor.detach().float().numpy().copy()  # copied: ReLUs work in place

    def _on_output(self, name: str):
        return lambda module, inputs, output: self._keep(name, output)

    def _block_relu(self, block: str, convs: int):
        """The block's one ReLU module runs `convs` times: relu1.. after the convolutions, then
        after the add (its input then is the block's `add`)."""

        def before(module, inputs):
            self._calls[block] = self._calls.get(block, 0) + 1
            if self._calls[block] == convs:
                self._keep(f"{block}.add", inputs[0])

        def after(module, inputs, output):
            call = self._calls[block]
            self._keep(f"{block}.relu" if call == convs else f"{block}.relu{call}", output)

        return before, after

    def _register(self) -> list:
        from torch import nn

        m = self.model
        targets = {"conv1": m.bn1, "relu": m.relu, "maxpool": m.maxpool, "avgpool": m.avgpool, "fc": m.fc}
        convs = 2 if m.architecture.block == "basic" else 3
        hooks = []
        for stage_index, stage in enumerate(m.stages):
            for position, block in enumerate(stage):
                name = f"layer{stage_index + 1}.{position}"
                for index in range(1, convs + 1):
                    targets[f"{name}.conv{index}"] = getattr(block, f"bn{index}")
                if not isinstance(block.downsample, nn.Identity):
                    targets[f"{name}.downsample"] = block.downsample
                before, after = self._block_relu(name, convs)
                hooks += [block.relu.register_forward_pre_hook(before), block.relu.register_forward_hook(after)]
        hooks += [module.register_forward_hook(self._on_output(point)) for point, module in targets.items()]
        return hooks

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        self._captured, self._calls = {}, {}
        with torch.no_grad():
            self.model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
        return self._captured

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()


def _observed_tensors(model, points: list[str]) -> dict[str, str]:
    """point -> the tensor of the ONNX graph that holds it (see the module docstring): the
    point's own tensor (Option A's shortcut: its Pad), or the dequantized tensor after it; the
    logits for `fc`. Points the graph does not hold are left out."""
    graph = model.graph
    produced = {out for node in graph.node for out in node.output}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)

    def dequantized(tensor: str) -> str:
        for q in readers.get(tensor, []):
            if q.op_type == "QuantizeLinear":
                for dq in readers.get(q.output[0], []):
                    if dq.op_type == "DequantizeLinear":
                        return dq.output[0]
        return tensor

    found = {}
    for point in points:
        if point == "fc":
            found[point] = graph.output[0].name
            continue
        tensor = next((t for t in (point, f"{point}.pad") if t in produced), None)
        if tensor is not None:
            found[point] = dequantized(tensor)
    return found


def tapped_onnx(path: Path, points: list[str], folder: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the ONNX file at `path` in `folder` that lists each point's tensor as an extra
    output (its type from ONNX's shape inference); returns it and point -> tensor name."""
    import onnx

    model = onnx.load(str(path))
    taps = _observed_tensors(model, points)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    present = {o.name for o in model.graph.output}
    for tensor in dict.fromkeys(taps.values()):
        if tensor in present:
            continue
        if tensor not in types:
            raise ToolkitError(f"ONNX's shape inference gives no type for tensor {tensor} of {path.name}")
        model.graph.output.append(types[tensor])
        present.add(tensor)
    tapped = folder / f"tapped_{path.stem}.onnx"
    onnx.save(model, str(tapped))
    return tapped, taps


class OnnxLayers(_Layers):
    """An ONNX file in ONNX Runtime, through a temporary copy that lists the points as outputs."""

    backend = "onnxruntime"

    def __init__(self, path: str | Path, *, provider: str | None = None, threads: int | None = None) -> None:
        from deploy.artifacts.onnx_file import inspect_onnx
        from deploy.runtimes.onnxruntime import OrtRuntime

        signature = inspect_onnx(path)
        if signature.info is None:
            raise ToolkitError(f"{Path(path).name} has no resnet-export metadata, so its layers can't be named")
        self.path, self.info, self.precision = Path(path), signature.info, signature.precision
        self._folder = tempfile.TemporaryDirectory(prefix="resnet-compare-")
        tapped, self._taps = tapped_onnx(self.path, layer_points(self.info.architecture), Path(self._folder.name))
        self.points = list(self._taps)
        taps = [t for t in dict.fromkeys(self._taps.values()) if t != signature.output.name]
        self.runtime = OrtRuntime(tapped, provider=provider, threads=threads, taps=taps)
        self.device = self.runtime.device
        self.name = f"{self.path.name} ({self.precision}, onnxruntime {self.runtime.provider})"

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.runtime.run_taps(batch)
        return {point: outputs[tensor] for point, tensor in self._taps.items()}

    def close(self) -> None:
        self.runtime.close()
        self._folder.cleanup()


class EngineLayers(_Layers):
    """A TensorRT engine, rebuilt from the ONNX file its manifest names with every point marked
    as an output (see the module docstring); needs TensorRT and the GPU the engine is for."""

    backend = "tensorrt"
    device = "cuda"

    def __init__(self, path: str | Path) -> None:
        from deploy.artifacts.manifest import read_manifest
        from deploy.artifacts.onnx_file import inspect_onnx

        path = Path(path)
        manifest = read_manifest(path)
        if manifest is None or manifest.model is None:
            raise ToolkitError(f"{path.name} has no resnet-build manifest naming its ONNX file, so it can't be tapped")
        source = _engine_source(path, manifest)
        self.info, self.precision, self.manifest = manifest.model, manifest.precision, manifest
        self._folder = tempfile.TemporaryDirectory(prefix="resnet-compare-")
        tapped, self._taps = tapped_onnx(source, layer_points(self.info.architecture), Path(self._folder.name))
        self.points = list(self._taps)
        signature = dataclasses.replace(inspect_onnx(source), path=tapped)
        self._engine = _TappedEngine(signature, manifest, list(dict.fromkeys(self._taps.values())))
        self.name = f"{path.name} ({self.precision}, TensorRT, rebuilt from {source.name} with its layers as outputs)"
        self.notes = (
            f"{path.name}'s layers come from an engine rebuilt from {source.name} with each layer marked as an "
            "output, which keeps TensorRT from fusing across them: it computes each layer as the shipped engine "
            "does, not bit for bit",
        )

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self._engine.run(batch)
        return {point: outputs[tensor] for point, tensor in self._taps.items()}

    def close(self) -> None:
        self._engine = None
        self._folder.cleanup()


def _engine_source(path: Path, manifest) -> Path:
    """The ONNX file an engine was built from: where its manifest says, or beside the engine,
    and only when its checksum is the manifest's."""
    import hashlib

    recorded = Path(manifest.source_onnx.get("file", ""))
    for candidate in (recorded, path.parent / recorded.name):
        if candidate.is_file() and hashlib.sha256(candidate.read_bytes()).hexdigest() == manifest.source_onnx.get(
            "sha256"
        ):
            return candidate
    raise ToolkitError(
        f"the ONNX file {path.name} was built from ({recorded}) is not there, or has changed since; "
        "put that file beside the engine (its layers are read from it)"
    )


class _TappedEngine:
    """The TensorRT engine of a tapped ONNX file, built for the batch sizes it will run
    (`export.engine`'s parse and configure steps), and run with every output on a device buffer.
    TensorRT objects are in variables named after their class (tests/deploy/test_tensorrt_api.py
    checks them against TensorRT 11 and 10)."""

    def __init__(self, signature, manifest, tensors: list[str], max_batch: int = 64) -> None:
        from deploy.artifacts.manifest import BatchProfile
        from deploy.runtimes.tensorrt import import_tensorrt, shared_logger

        from .engine import BuildOptions, build, create_config, parse_onnx

        trt = import_tensorrt()
        builder, network, parser, _ = parse_onnx(signature)
        low, high = signature.input.batch or 1, signature.input.batch or max_batch
        batch_profile = BatchProfile(low, min(max(low, DEFAULT_BATCH), high), high)
        config, _, _, _ = create_config(builder, signature, batch_profile, BuildOptions(tf32=manifest.tf32), None)
        serialized = build(builder, network, config, signature)
        trt_runtime = trt.Runtime(shared_logger())
        self.engine = trt_runtime.deserialize_cuda_engine(serialized)
        if self.engine is None:
            raise ToolkitError(f"TensorRT could not load the engine it built from {signature.path.name}")
        self.trt_runtime, self.batch_profile, self.tensors = trt_runtime, batch_profile, tensors
        self.half = {name: self.engine.get_tensor_dtype(name) == trt.DataType.HALF for name in tensors}
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise ToolkitError("TensorRT could not create an execution context (the GPU may be out of memory)")
        self.input_name, self.input_dtype = signature.input.name, np.dtype(signature.input.dtype)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        if not self.batch_profile.min <= len(batch) <= self.batch_profile.max:
            raise ToolkitError(f"batch {len(batch)} is outside the rebuilt engine's profile ({self.batch_profile})")
        context = self.context
        if not context.set_input_shape(self.input_name, tuple(batch.shape)):
            raise ToolkitError(f"TensorRT refused input shape {tuple(batch.shape)}")
        buffers = {self.input_name: torch.from_numpy(batch).to("cuda")}
        for name in self.tensors:
            shape = tuple(context.get_tensor_shape(name))
            buffers[name] = torch.empty(shape, dtype=torch.float16 if self.half[name] else torch.float32, device="cuda")
        for name, buffer in buffers.items():
            if not context.set_tensor_address(name, buffer.data_ptr()):
                raise ToolkitError(f"TensorRT refused the device buffer of tensor {name}")
        stream = torch.cuda.current_stream()
        if not context.execute_async_v3(stream.cuda_stream):
            raise ToolkitError("TensorRT failed to run the rebuilt engine")
        stream.synchronize()
        return {name: buffers[name].float().cpu().numpy() for name in self.tensors}


def open_layers(model, *, provider: str | None = None, threads: int | None = None) -> _Layers:
    """The side for `model`: a `ResNet`, or a file by its suffix (`deploy.runtimes.open.backend_of`):
    a checkpoint (.pt, .pth), an ONNX file, an engine (.plan, .engine)."""
    from resnet.model import ResNet

    if isinstance(model, ResNet):
        return TorchLayers(model)
    path = input_file(model, "model file", "a model file (.onnx, .plan, .engine, .pt, .pth)")
    backend = backend_of(path)
    if backend == "onnxruntime":
        return OnnxLayers(path, provider=provider, threads=threads)
    if backend == "tensorrt":
        return EngineLayers(path)
    from resnet.checkpoint import load_model

    return TorchLayers(load_model(path), name=f"{path.name} (pytorch fp32, eval)")


# ---- the comparison --------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerInputs:
    """What both models see: the images of a folder (preprocessed by the model's input spec; at
    most `max_images`, spread evenly over the sorted list), or `random` standard-normal inputs."""

    images: Path | None = None
    random: int | None = None
    max_images: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.images is not None and self.random is not None:
            raise ToolkitError("give --images DIR or --random N, not both")
        if self.random is not None:
            check_number(self.random, "--random", integer=True, low=1, high=100_000)
        check_number(self.max_images, "--max-images", integer=True, low=1, high=100_000)

    @property
    def count(self) -> int:
        return self.random if self.random is not None else DEFAULT_RANDOM

    def batches(self, spec, batch: int):
        """Float32 batches of at most `batch` inputs (an image that cannot be read is skipped)."""
        if self.images is None:
            rng = np.random.default_rng(self.seed)
            shape = (spec.channels, spec.height, spec.width)
            for start in range(0, self.count, batch):
                yield rng.standard_normal((min(batch, self.count - start), *shape), dtype=np.float32)
            return
        from deploy.datasets import read_image_folder
        from deploy.preprocess import ImageError, preprocess

        files = read_image_folder(self.images).subset(self.max_images).files
        arrays, unreadable = [], 0
        for index, path in enumerate(files):
            try:
                arrays.append(preprocess(path, spec))
            except ImageError:
                unreadable += 1
            if arrays and (len(arrays) == batch or index == len(files) - 1):
                yield np.stack(arrays)
                arrays = []
        if unreadable == len(files):
            raise ToolkitError(f"none of the {len(files)} images in {self.images} could be read")


@dataclass
class LayerFigures:
    """One layer's output on both sides: errors, agreement, ranges and the checks of the criterion."""

    name: str
    stage: str
    shape: list[int]  # per input
    max_abs: float
    scale: float  # largest |value| of the reference's tensor
    error_of_scale: float  # max_abs / scale
    cosine: float  # smallest per-input cosine similarity
    range: list[float]  # the reference's [min, max]
    candidate_range: list[float]
    fp16_overflow: bool  # either side beyond FP16's range (65504)
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["checks"] = [str(check) for check in self.checks]
        return data | {"passed": self.passed}


class _Tally:
    """A layer's figures, gathered batch by batch (memory: one batch of activations)."""

    def __init__(self) -> None:
        self.max_abs, self.scale, self.cosine = 0.0, 0.0, 1.0
        self.ref_range, self.cand_range = [np.inf, -np.inf], [np.inf, -np.inf]
        self.shape: list[int] | None = None

    def add(self, name: str, reference: np.ndarray, candidate: np.ndarray) -> None:
        if reference.shape != candidate.shape:
            raise ToolkitError(
                f"layer {name} has shape {reference.shape} in one model and {candidate.shape} in the other"
            )
        self.shape = list(reference.shape[1:])
        ref = reference.reshape(len(reference), -1).astype(np.float64)
        out = candidate.reshape(len(candidate), -1).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            self.max_abs = max(self.max_abs, float(np.max(np.abs(out - ref), initial=0.0)))
            self.scale = max(self.scale, float(np.max(np.abs(ref), initial=0.0)))
            dot = np.einsum("ij,ij->i", ref, out)
            norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
            both_zero = (np.linalg.norm(ref, axis=1) == 0) & (np.linalg.norm(out, axis=1) == 0)
            cosine = np.where(both_zero, 1.0, dot / np.where(norms == 0, np.inf, norms))
        self.cosine = min(self.cosine, float(np.min(cosine)) if np.isfinite(cosine).all() else float("nan"))
        for kept, values in ((self.ref_range, ref), (self.cand_range, out)):
            kept[0], kept[1] = min(kept[0], float(values.min())), max(kept[1], float(values.max()))

    def figures(self, name: str, criterion, thresholds: Thresholds) -> LayerFigures:
        scale = self.scale or 1.0
        peak = max(abs(v) for v in self.ref_range + self.cand_range)
        error = self.max_abs / scale if np.isfinite(self.max_abs) else float("inf")
        cosine = self.cosine if self.cosine == self.cosine else float("nan")
        return LayerFigures(
            name=name,
            stage=stage_of(name),
            shape=self.shape or [],
            max_abs=self.max_abs,
            scale=self.scale,
            error_of_scale=error,
            cosine=cosine,
            range=self.ref_range,
            candidate_range=self.cand_range,
            fp16_overflow=bool(peak > FP16_MAX),
            checks=tensor_checks(criterion, thresholds, error_of_scale=error, cosine=cosine, peak=peak),
        )


@dataclass
class LayerComparison:
    """Two models compared layer by layer; `first_divergent` is the first layer, in network order,
    that misses the criterion (None when none does)."""

    reference: str
    candidate: str
    criterion: str
    inputs: str
    samples: int
    batch: int
    layers: list[LayerFigures]
    unmatched: dict  # {"reference": [...], "candidate": [...]}: points only one side holds
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def first_divergent(self) -> str | None:
        return next((layer.name for layer in self.layers if not layer.passed), None)

    @property
    def passed(self) -> bool:
        return self.first_divergent is None

    def sentence(self) -> str:
        """The finding in one sentence."""
        first = self.first_divergent
        if first is None:
            return f"no layer diverges: all {len(self.layers)} matched layers are within tolerance ({self.criterion})"
        index = next(i for i, layer in enumerate(self.layers) if layer.name == first)
        failures = "; ".join(str(c) for c in self.layers[index].checks if not c.passed)
        before = f"the {index} layers before it are within tolerance" if index else "it is the first layer compared"
        return f"the first divergent layer is {first} ({failures}); {before}"

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "layers"}
        return data | {
            "layers": [layer.to_dict() for layer in self.layers],
            "first_divergent": self.first_divergent,
            "passed": self.passed,
            "finding": self.sentence(),
        }


def _common_input(reference: _Layers, candidate: _Layers):
    """The input spec both models take (a file's metadata before a checkpoint's defaults), after
    checking that they are the same architecture."""
    a, b = reference.info, candidate.info
    if a.architecture != b.architecture:
        raise ToolkitError(
            f"the two models are different networks ({a.name}, {a.architecture.block} blocks {list(a.architecture.layers)}, "
            f"against {b.name}, {b.architecture.block} blocks {list(b.architecture.layers)}); compare two forms of one model"
        )
    files = [side.info.input_spec for side in (reference, candidate) if side.backend != "pytorch"]
    if len(files) == 2 and (files[0].height, files[0].width) != (files[1].height, files[1].width):
        raise ToolkitError(
            f"the two files take different input sizes ({files[0].height}x{files[0].width} and {files[1].height}x{files[1].width})"
        )
    return files[0] if files else a.input_spec


def compare_models(
    reference,
    candidate,
    inputs: LayerInputs = LayerInputs(),
    *,
    batch: int = DEFAULT_BATCH,
    thresholds: Thresholds = Thresholds(),
    provider: str | None = None,
    threads: int | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> LayerComparison:
    """Compare `candidate` with `reference` layer by layer on the same inputs (see the module
    docstring). Each is a `ResNet` or a model file; `provider` and `threads` are ONNX Runtime's."""
    check_number(batch, "--batch", integer=True, low=1, high=4096)
    started = time.perf_counter()
    sides = []
    try:
        for model in (reference, candidate):
            sides.append(open_layers(model, provider=provider, threads=threads))
        ref, cand = sides
        spec = _common_input(ref, cand)
        order = layer_points(ref.info.architecture)
        common = [p for p in order if p in ref.points and p in cand.points]
        same = ref.backend == cand.backend and ref.device == cand.device
        gpu = "cuda" in (ref.device, cand.device)
        criterion = pair_criterion(
            ref.precision, cand.precision, same_arithmetic=same, gpu=gpu, real_images=inputs.images is not None
        )
        tallies, samples = {p: _Tally() for p in common}, 0
        expected = inputs.count if inputs.images is None else None
        for array in inputs.batches(spec, batch):
            a, b = ref.run(array), cand.run(array)
            for point in common:
                tallies[point].add(point, a[point], b[point])
            samples += len(array)
            if progress is not None:
                progress("comparing layers", samples / expected if expected else 0.5)
        notes = [RANDOM_INT8_NOTE] if criterion.name == "int8" else []
        notes += [note for side in sides for note in side.notes]
    finally:
        for side in sides:
            side.close()
    return LayerComparison(
        reference=ref.name,
        candidate=cand.name,
        criterion=criterion.name,
        inputs=f"{samples} images of {inputs.images}"
        if inputs.images is not None
        else f"{samples} random inputs (seed {inputs.seed})",
        samples=samples,
        batch=batch,
        layers=[tallies[p].figures(p, criterion, thresholds) for p in common],
        unmatched={
            "reference": [p for p in order if p in ref.points and p not in cand.points],
            "candidate": [p for p in order if p in cand.points and p not in ref.points],
        },
        notes=notes,
        seconds=time.perf_counter() - started,
    )


# ---- the plot --------------------------------------------------------------------------------


def plot_layers(report: LayerComparison, path: str | Path) -> None:
    """Error per layer on a log scale, in network order: error in units of each tensor's scale and
    1 - cosine, the threshold the criterion judges, stage boundaries, the first divergent layer
    marked. PNG, SVG or PDF by the suffix, written atomically."""
    require("matplotlib", "plots (--plot)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from toolkit.files import atomic_path

    layers = report.layers
    x = np.arange(len(layers))
    floor = 1e-12
    panels = [
        ("error / scale", [max(layer.error_of_scale, floor) for layer in layers], "max-error/scale"),
        (
            "1 - cosine",
            [max(1 - layer.cosine, floor) if layer.cosine == layer.cosine else 1.0 for layer in layers],
            "cosine",
        ),
    ]
    figure, axes = plt.subplots(2, 1, figsize=(max(8, len(layers) * 0.07 + 4), 6), sharex=True)
    for axis, (label, values, check_name) in zip(axes, panels, strict=True):
        axis.semilogy(x, values, marker=".", linewidth=1, color="tab:blue")
        limits = {c.limit for layer in layers for c in layer.checks if c.name == check_name}
        for limit in limits:
            line = limit if check_name != "cosine" else max(1 - limit, floor)
            axis.axhline(
                line, color="tab:red", linestyle="--", linewidth=1, label=f"threshold ({check_name} {limit:g})"
            )
        failed = [i for i, layer in enumerate(layers) if not layer.passed]
        axis.scatter(failed, [values[i] for i in failed], color="tab:red", zorder=3, s=12, label="outside tolerance")
        axis.set_ylabel(label)
        axis.grid(True, which="major", alpha=0.3)
        _mark_stages(axis, layers)
        if report.first_divergent is not None:
            first = failed[0]
            axis.axvline(first, color="tab:red", alpha=0.4)
        if limits or failed:
            axis.legend(loc="lower right", fontsize=8)
    title = f"{report.candidate}\nagainst {report.reference}, {report.inputs}"
    first = report.first_divergent
    axes[0].set_title(title + (f"\nfirst divergent layer: {first}" if first else "\nno layer diverges"), fontsize=9)
    axes[-1].set_xlabel("layer, in network order")
    figure.tight_layout()
    with atomic_path(path) as staged:
        figure.savefig(staged, dpi=110, format=Path(path).suffix.lstrip(".").lower() or "png")
    plt.close(figure)


def _mark_stages(axis, layers: list[LayerFigures]) -> None:
    """A vertical line where each stage starts, labelled at the top."""
    previous = None
    for index, layer in enumerate(layers):
        if layer.stage != previous:
            axis.axvline(index - 0.5, color="grey", linewidth=0.6, alpha=0.6)
            axis.text(
                index, 1.0, f" {layer.stage}", transform=axis.get_xaxis_transform(), fontsize=7, va="top", color="grey"
            )
            previous = layer.stage
