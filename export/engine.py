"""`build_engine`: an ONNX file to a TensorRT engine and its manifest; the function behind `resnet-build`.

Precision comes from the graph. TensorRT 11 is strongly typed only (no FP16/INT8 builder flags):
it compiles the types the ONNX file declares. The network is created with the STRONGLY_TYPED flag
wherever the flag exists (10.x honours it, 11.x always behaves so), so TensorRT 10 and 11 build
the same engine precision from the same file, with one code path. An FP16 engine therefore
comes from an FP16 ONNX (`resnet-export --precision fp16`).

The TensorRT steps are apart, as Polygraphy's loaders are: `parse_onnx` (builder, network and
parser), `create_config` (builder config: the batch range as an optimization profile, workspace, optimization level, TF32, timing
cache, progress monitor), `build` (the serialized engine); `build_engine` chains them with the
manifest and validation. Everything up to the TensorRT calls is plain code (batch-range arithmetic,
reading the ONNX, option checks), done before TensorRT is imported, so a mistake is reported the
same way on a machine without TensorRT. TensorRT objects live in variables named after their
class (`builder`, `network`, `parser`, `config`, `profile`, `cache`, `error`, `serialized`); the
test tests/deploy/test_tensorrt_api.py checks every name used on them against the bindings.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx

from deploy.artifacts.manifest import BatchRange, EngineManifest, manifest_path, write_manifest
from deploy.artifacts.onnx_file import OnnxSignature, inspect_onnx
from deploy.runtimes.gpu import require_cuda
from deploy.runtimes.onnxruntime import OrtRuntime
from deploy.runtimes.tensorrt import TensorRTRuntime, engine_environment, import_tensorrt, shared_logger
from toolkit.errors import ArtifactError, ToolkitError
from toolkit.files import check_outputs, check_writable, input_file, publish, staging_folder, write_bytes_atomic
from toolkit.provenance import versions

from .validate import Thresholds, ValidationFailed, ValidationReport, compare_runtimes, criterion_for

DEFAULT_MIN_BATCH, DEFAULT_OPT_BATCH, DEFAULT_MAX_BATCH = 1, 32, 64
OPT_LEVELS = range(0, 6)


class EngineBuildError(ToolkitError):
    """TensorRT could not parse or build the model."""


def export_command(source: OnnxSignature, precision: str) -> str:
    """The `resnet-export` command that writes the same model's ONNX file of `precision`."""
    extra = ["--precision", precision] + (
        ["--calibration", "DIR", "--int8-target", "tensorrt"] if precision == "int8" else []
    )
    info = source.info
    if info is None:
        return f"resnet-export --depth DEPTH {' '.join(extra)} (with your --weights)"
    from resnet.registry import model_entry
    from resnet.spec import DATASET_INPUTS

    parts = ["resnet-export", "--depth", str(info.depth)]
    if info.dataset != "imagenet":
        parts += ["--dataset", info.dataset]
    if info.shortcut != model_entry(info.depth, info.dataset).default_shortcut:
        parts += ["--shortcut", info.shortcut]
    if info.num_classes != DATASET_INPUTS[info.dataset].num_classes:
        parts += ["--num-classes", str(info.num_classes)]
    return " ".join(parts + extra) + " (with your --weights)"


def resolve_batches(
    batch_dim: int | None, min_batch: int | None = None, opt_batch: int | None = None, max_batch: int | None = None
) -> BatchRange:
    """The batch range: from the file when its batch is fixed, else the options over the
    defaults 1 / 32 / 64 (a default that would fall outside the given bounds moves inside)."""
    given = {"--min-batch": min_batch, "--opt-batch": opt_batch, "--max-batch": max_batch}
    for option, value in given.items():
        if value is not None and value < 1:
            raise ToolkitError(f"{option} must be at least 1, got {value}")
    if batch_dim is not None:
        conflicting = [
            f"{option} {value}" for option, value in given.items() if value is not None and value != batch_dim
        ]
        if conflicting:
            raise ToolkitError(
                f"the ONNX file has a fixed batch of {batch_dim}, so its engine takes exactly {batch_dim} "
                f"(got {', '.join(conflicting)}); export with --dynamic-batch for a range"
            )
        return BatchRange(batch_dim, batch_dim, batch_dim)
    if min_batch is not None and max_batch is not None and min_batch > max_batch:
        raise ToolkitError(f"--min-batch {min_batch} is larger than --max-batch {max_batch}")
    low = min_batch if min_batch is not None else DEFAULT_MIN_BATCH
    high = max_batch if max_batch is not None else max(DEFAULT_MAX_BATCH, low)
    opt = opt_batch if opt_batch is not None else min(max(DEFAULT_OPT_BATCH, low), high)
    if not low <= opt <= high:
        raise ToolkitError(f"--opt-batch {opt} is outside the batch range {low} to {high}")
    return BatchRange(low, opt, high)


@dataclass
class BuildReport:
    """What `resnet-build` prints: the engine, its manifest, timings and validation."""

    engine: str
    manifest_file: str
    manifest: EngineManifest
    engine_bytes: int
    validation: ValidationReport | None
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "engine": self.engine,
            "manifest_file": self.manifest_file,
            "manifest": self.manifest.to_dict(),
            "engine_bytes": self.engine_bytes,
            "validation": None if self.validation is None else self.validation.to_dict(),
            "timings": self.timings,
            "warnings": self.warnings,
        }


def make_progress_monitor(trt, report: Callable[[str], None]):
    """A TensorRT progress monitor that reports the builder's phases (10.x and 11.x have one)."""

    class PhaseReporter(trt.IProgressMonitor):
        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self.depth: dict[str, int] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            self.depth[phase_name] = self.depth.get(parent_phase, -1) + 1 if parent_phase else 0
            if self.depth[phase_name] <= 1:
                report(f"{'  ' * self.depth[phase_name]}{phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name, step):
            return True  # keep building

        def phase_finish(self, phase_name):
            self.depth.pop(phase_name, None)

    return PhaseReporter()


def parse_onnx(source: OnnxSignature):
    """TensorRT's builder, a network parsed from `source`, and the parser; (builder, network, parser, flags).

    The network is created STRONGLY_TYPED wherever the flag exists (see the module docstring).
    """
    trt = import_tensorrt()
    logger = shared_logger()
    builder = trt.Builder(logger)
    creation_flags = 0
    flags = []
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        creation_flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        flags.append("STRONGLY_TYPED")
    network = builder.create_network(creation_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source.path)):
        problems = []
        for index in range(parser.num_errors):
            error = parser.get_error(index)
            problems.append(f"node {error.node_name() or error.node()} ({error.node_operator()}): {error.desc()}")
        raise EngineBuildError(
            f"TensorRT's ONNX parser rejected {source.path.name}: {'; '.join(problems[:3]) or 'no reason given'}"
        )
    return builder, network, parser, flags


@dataclass(frozen=True)
class BuildOptions:
    """How the builder works: the batch range (`batches` resolves it against the file), memory,
    effort, TF32, the timing cache file. What `resnet-build`'s options say, as one value."""

    min_batch: int | None = None  # None: 1
    opt_batch: int | None = None  # None: 32 (within the range)
    max_batch: int | None = None  # None: 64 (at least min)
    workspace_mib: int | None = None  # None: TensorRT's default (the GPU's memory)
    opt_level: int | None = None  # None: TensorRT's default, 3
    timing_cache: Path | None = None  # loaded when present, saved after the build
    tf32: bool = True  # FP32 graphs may use TF32 tensor cores
    version_compatible: bool = False  # runs on this TensorRT release and later ones (and with the lean runtime)
    exclude_lean_runtime: bool = False  # version-compatible without its own copy of the lean runtime (smaller)

    def __post_init__(self) -> None:
        if self.timing_cache is not None:
            object.__setattr__(self, "timing_cache", Path(self.timing_cache))

    def batches(self, batch_dim: int | None) -> BatchRange:
        """The batch range for a file whose batch axis is `batch_dim` (None: dynamic)."""
        return resolve_batches(batch_dim, self.min_batch, self.opt_batch, self.max_batch)

    def check(self) -> None:
        if self.exclude_lean_runtime and not self.version_compatible:
            raise ToolkitError("--exclude-lean-runtime goes with --version-compatible")
        if self.opt_level is not None and self.opt_level not in OPT_LEVELS:
            raise ToolkitError(f"--opt-level must be {OPT_LEVELS.start} to {OPT_LEVELS.stop - 1}, got {self.opt_level}")
        if self.workspace_mib is not None and self.workspace_mib < 1:
            raise ToolkitError(f"--workspace must be at least 1 MiB, got {self.workspace_mib}")
        if self.timing_cache is not None:
            check_writable(self.timing_cache)


def create_config(
    builder,
    source: OnnxSignature,
    batches: BatchRange,
    options: BuildOptions,
    progress: Callable[[str], None] | None,
):
    """The builder config: one optimization profile for the batch axis, the memory and
    optimization options, TF32, the timing cache (loaded when the file exists) and a progress
    monitor; (config, timing cache or None, flags, monitor or None)."""
    trt = import_tensorrt()
    flags = []
    config = builder.create_builder_config()
    if options.workspace_mib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
    if options.opt_level is not None:
        config.builder_optimization_level = options.opt_level
    if options.tf32:
        config.set_flag(trt.BuilderFlag.TF32)
        flags.append("TF32")
    else:
        config.clear_flag(trt.BuilderFlag.TF32)
    if options.version_compatible:  # the same flags in TensorRT 10.13 and 11.4 (tests/deploy/test_tensorrt_api.py)
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        flags.append("VERSION_COMPATIBLE")
        if options.exclude_lean_runtime:
            config.set_flag(trt.BuilderFlag.EXCLUDE_LEAN_RUNTIME)
            flags.append("EXCLUDE_LEAN_RUNTIME")
    profile = builder.create_optimization_profile()
    c, h, w = source.input.shape[1:]
    profile.set_shape(source.input.name, (batches.min, c, h, w), (batches.opt, c, h, w), (batches.max, c, h, w))
    if config.add_optimization_profile(profile) < 0:
        raise EngineBuildError(f"TensorRT refused the batch range ({batches}) for {source.path.name}")
    cache = None
    timing_cache = options.timing_cache
    if timing_cache is not None:
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
        if cache is None:
            raise EngineBuildError(
                f"timing cache {timing_cache} is not a TensorRT timing cache, or is damaged; "
                "delete it or pass --timing-cache with a new path"
            )
        if not config.set_timing_cache(cache, False):
            raise EngineBuildError(
                f"the timing cache {timing_cache} was made on another GPU or TensorRT release; "
                "delete it or pass --timing-cache with a new path"
            )
    monitor = None
    if progress is not None:
        monitor = make_progress_monitor(trt, progress)
        config.progress_monitor = monitor
    return config, cache, flags, monitor


def build(builder, network, config, source: OnnxSignature) -> bytes:
    """The serialized engine."""
    said = shared_logger().messages
    mark = said.mark()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT could not build {source.path.name}: {said.since(mark)}")
    return bytes(serialized)


def _build_serialized(
    source: OnnxSignature, batches: BatchRange, options: BuildOptions, progress: Callable[[str], None] | None
) -> tuple[bytes, bytes | None, list[str]]:
    """Parse, configure and build; returns the engine, the timing cache (None when there is
    none to save) and the flags used."""
    builder, network, parser, flags = parse_onnx(source)
    config, cache, config_flags, monitor = create_config(builder, source, batches, options, progress)
    engine_bytes = build(builder, network, config, source)
    cache_bytes = None
    if cache is not None:
        cache = config.get_timing_cache()
        if cache is not None:  # None: no cache is attached (it was checked when attached); keep the engine
            cache_bytes = bytes(cache.serialize())
    del monitor
    return engine_bytes, cache_bytes, flags + config_flags


def build_engine(
    onnx_path: str | Path,
    output: str | Path | None = None,
    options: BuildOptions = BuildOptions(),
    *,
    precision: str | None = None,
    validate: bool = True,
    reference: str | Path | None = None,
    thresholds: Thresholds = Thresholds(),
    progress: Callable[[str], None] | None = None,
) -> BuildReport:
    """Build a TensorRT engine from an ONNX file, write it and its manifest, validate it.

    The steps: read the file, parse it into a network, configure the builder (`options`), build,
    check the engine against ONNX Runtime, then move the engine and its manifest into place.
    `precision`, when given, is what the caller expects the engine to be; the graph decides, so
    asking for "fp16" from an FP32 file is an error that gives the export command for the FP16
    file. The engine is validated against ONNX Runtime on an ONNX of the same model:
    `reference`, or the source itself when it is FP32 or INT8, or the FP32 twin of an FP16 source
    (same weights, FP32 arithmetic). Files are prepared beside `output` and moved into place only
    after validation passes. Needs TensorRT and an NVIDIA GPU; every check that doesn't is done first.
    """
    step = progress or (lambda message: None)
    source = inspect_onnx(onnx_path)
    _check_precision(source, precision)
    batches = options.batches(source.input.batch)
    options.check()
    output, reference = _check_files(source, output, reference, options)
    import_tensorrt()
    require_cuda()
    environment = engine_environment()
    step(
        f"building {output.name} from {source.path.name} ({source.precision}, batch {batches}) on {environment.gpu_name}"
    )
    started = time.perf_counter()
    engine_bytes, cache_bytes, flags = _build_serialized(source, batches, options, progress)
    timings = {"build_s": time.perf_counter() - started}
    manifest = engine_manifest(source, output, engine_bytes, environment, batches, options, flags, timings["build_s"])
    validation, warnings = None, []
    with staging_folder(output.parent) as stage:
        staged = stage / output.name
        staged.write_bytes(engine_bytes)
        write_manifest(manifest, staged)
        if validate:
            mark = time.perf_counter()
            step("validating the engine against ONNX Runtime")
            validation, warnings = validate_engine(staged, source, reference, batches, options.tf32, thresholds)
            timings["validate_s"] = time.perf_counter() - mark
        # Engine first: in the instant between the renames an old manifest names another
        # checksum, and the runtime refuses the pair instead of trusting it.
        publish(staged, output)
        publish(manifest_path(staged), manifest_path(output))
    warnings += save_timing_cache(options.timing_cache, cache_bytes)
    timings["total_s"] = time.perf_counter() - started
    return BuildReport(
        str(output), str(manifest_path(output)), manifest, len(engine_bytes), validation, timings, warnings
    )


def default_engine_path(onnx_path: str | Path) -> Path:
    """Where an engine goes when no path is given: ./NAME.plan for NAME.onnx."""
    return Path(Path(onnx_path).stem + ".plan")


def _check_files(source: OnnxSignature, output, reference, options: BuildOptions) -> tuple[Path, Path | None]:
    """The engine's path (default: ./NAME.plan) and the reference's, after checking every output
    (engine, manifest, timing cache) and that the reference exists."""
    output = Path(output) if output is not None else default_engine_path(source.path)
    sources = [source.path] + ([reference] if reference is not None else [])
    check_outputs(output, manifest_path(output), options.timing_cache, inputs=sources)
    if reference is not None:
        reference = input_file(reference, "reference ONNX file", "an ONNX file", ArtifactError)
    return output, reference


def _check_precision(source: OnnxSignature, precision: str | None) -> None:
    """The precision the caller expects is the file's; else one sentence on how to get the right file."""
    if precision is None or precision == source.precision:
        return
    if precision in ("fp16", "int8"):
        raise ToolkitError(
            f"{source.path.name} is an {source.precision.upper()} graph, and TensorRT builds the precision the file "
            f"declares; write the {precision.upper()} file first: {export_command(source, precision)}, then "
            "resnet-build it"
        )
    raise ToolkitError(f"{source.path.name} is an {source.precision.upper()} graph, not {precision.upper()}")


def engine_manifest(
    source: OnnxSignature,
    output: Path,
    engine_bytes: bytes,
    environment,
    batches: BatchRange,
    options: BuildOptions,
    flags: list[str],
    seconds: float,
) -> EngineManifest:
    """The manifest of an engine built from `source` (see `deploy.artifacts.manifest`)."""
    return EngineManifest(
        engine_file=output.name,
        engine_sha256=hashlib.sha256(engine_bytes).hexdigest(),
        environment=environment,
        precision=source.precision,
        tf32=options.tf32,
        batches=batches,
        inputs=[source.input],
        outputs=[source.output],
        model=source.info,
        source_onnx={"file": str(source.path), "sha256": source.sha256()},
        build={
            "seconds": round(seconds, 3),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "workspace_mib": options.workspace_mib,
            "opt_level": options.opt_level,
            "timing_cache": str(options.timing_cache) if options.timing_cache else None,
            "flags": flags,
            "versions": versions("tensorrt", "onnx"),
        },
    )


def validate_engine(
    staged: Path,
    source: OnnxSignature,
    reference: Path | None,
    batches: BatchRange,
    tf32: bool,
    thresholds: Thresholds,
) -> tuple[ValidationReport, list[str]]:
    """The staged engine against ONNX Runtime on the CPU, at the batch range's min, opt and max;
    (the report, the runtime's warnings), or `ValidationFailed`. The reference is `reference`, or
    the source itself (FP32; an INT8 engine against its own Q/DQ file, the same quantized
    arithmetic: its accuracy on real images is resnet-eval's to measure), or the FP32 twin of an
    FP16 source, written beside the staged engine."""
    if reference is None and source.precision == "fp16":
        reference = staged.with_name("fp32_reference.onnx")
        reference.write_bytes(upcast_to_fp32(onnx.load(str(source.path))).SerializeToString())
    reference_precision = "int8" if source.precision == "int8" else "fp32"  # its own Q/DQ file, else FP32
    criterion = criterion_for(reference_precision, source.precision, gpu=tf32)
    sizes = sorted({batches.min, batches.opt, batches.max})
    with (
        OrtRuntime(reference or source.path, provider="cpu") as ort_runtime,
        TensorRTRuntime(staged, announce=False) as engine_runtime,  # its warnings go into the report
    ):
        validation = compare_runtimes(
            ort_runtime, engine_runtime, criterion=criterion, batch_sizes=sizes, thresholds=thresholds
        )
        warnings = list(engine_runtime.warnings)
    if not validation.passed:
        raise ValidationFailed(validation, f"engine {staged.name} (nothing was written)")
    return validation, warnings


def save_timing_cache(path: Path | None, cache_bytes: bytes | None) -> list[str]:
    """Write the builder's timing cache to `path` (when one was asked for); returns a warning when
    TensorRT gave none back."""
    if path is None:
        return []
    if cache_bytes is None:
        return [f"TensorRT returned no timing cache after the build; {path} was not updated"]
    write_bytes_atomic(path, cache_bytes)
    return []


def upcast_to_fp32(proto):
    """The FP32 twin of an FP16 graph: the same (FP16-rounded) weights computed in FP32.

    Every float16 initializer becomes float32, every Cast to float16 a Cast to float32 (a no-op)
    and float16 inputs and outputs float32. Comparing an FP16 engine with the twin measures what
    FP16 arithmetic costs, apart from the weight rounding that export's validation measured.
    """
    twin = onnx.ModelProto()
    twin.CopyFrom(proto)
    graph = twin.graph
    for index, tensor in enumerate(graph.initializer):
        if tensor.data_type == onnx.TensorProto.FLOAT16:
            graph.initializer[index].CopyFrom(
                onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(tensor).astype(np.float32), tensor.name)
            )
    for node in graph.node:
        for attribute in node.attribute:
            if node.op_type == "Cast" and attribute.name == "to" and attribute.i == onnx.TensorProto.FLOAT16:
                attribute.i = onnx.TensorProto.FLOAT
    for value in list(graph.input) + list(graph.output):
        if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
            value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    del twin.metadata_props[:]
    return twin
