"""`export_onnx`: write, lint and validate one ONNX file; the function behind `resnet-export`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from deploy.artifacts.manifest import manifest_path
from deploy.artifacts.metadata import ModelInfo
from deploy.artifacts.onnx_file import tensor_info
from deploy.artifacts.tensors import TensorInfo
from deploy.datasets import ImageSet, read_image_folder
from deploy.runtimes import RuntimeOptions, open_runtime
from resnet.model import ResNet
from resnet.summary import count_parameters, estimated_memory
from toolkit.files import check_outputs, check_writable, publish, staging_folder
from toolkit.numbers import check_memory, check_number
from toolkit.provenance import versions

from .lint import LintReport, check_onnx
from .onnx_graph import DEFAULT_OPSET, INPUT_NAME, ExportError, check_opset, resnet_to_onnx, resolve_io_dtype
from .quantize import Int8Options, calibration_images, quantize_onnx
from .validate import (
    FP16_ON_CPU_NOTE,
    Thresholds,
    ValidationFailed,
    ValidationReport,
    check_accuracy,
    criterion_for,
    validate_runtime,
    validation_batches,
    validation_device,
)

if TYPE_CHECKING:
    from .engine import BuildReport

# A protobuf message can't exceed 2 GiB; above this many bytes of weights they go to a
# `NAME.onnx.data` file beside the model (no registered model comes near: ResNet-152 is 240 MB).
EXTERNAL_DATA_BYTES = 1_900_000_000


@dataclass
class ExportReport:
    """Everything `resnet-export` prints, as data (`to_dict` for JSON)."""

    path: str
    model: ModelInfo
    opset: int
    ir_version: int
    precision: str
    io_dtype: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    parameters: int
    file_bytes: int
    external_data: str | None
    lint: LintReport
    validation: ValidationReport | None
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    engine: BuildReport | None = None  # with `engine=`: the TensorRT engine built from the file

    @property
    def op_counts(self) -> dict[str, int]:
        return self.lint.op_counts

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "model": self.model.to_dict(),
            "opset": self.opset,
            "ir_version": self.ir_version,
            "precision": self.precision,
            "io_dtype": self.io_dtype,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "parameters": self.parameters,
            "file_bytes": self.file_bytes,
            "external_data": self.external_data,
            "op_counts": self.op_counts,
            "lint": self.lint.to_dict(),
            "validation": None if self.validation is None else self.validation.to_dict(),
            "timings": self.timings,
            "versions": self.versions,
        } | ({} if self.engine is None else {"engine": self.engine.to_dict()})


def default_output_name(name: str, precision: str) -> Path:
    """`resnet50.onnx`, `resnet50_fp16.onnx`, `resnet20_cifar10.onnx` in the current folder."""
    return Path(f"{name}{'' if precision == 'fp32' else '_' + precision}.onnx")


def default_output(model: ResNet, precision: str) -> Path:
    """`default_output_name` of a model."""
    return default_output_name(model.name, precision)


class _Timings(dict):
    """Seconds per step, as the report shows them ("build_s", "lint_s", ...)."""

    @contextmanager
    def measure(self, key: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self[key] = time.perf_counter() - start


@dataclass(frozen=True)
class ValidationPlan:
    """How an export will be validated: where, on which batches, against which thresholds, and
    on which labelled images (`eval_set`), if any."""

    device: str  # "cpu" or "cuda" (`export.validate.validation_device`)
    batch_sizes: list[int]
    thresholds: Thresholds
    threads: int | None
    eval_set: ImageSet | None


def export_onnx(
    model: ResNet,
    output: str | Path | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    precision: str = "fp32",
    io_dtype: str | None = None,
    batch: int = 1,
    dynamic_batch: bool = True,
    validate: bool = True,
    validate_on: str = "auto",
    thresholds: Thresholds = Thresholds(),
    threads: int | None = None,
    int8: Int8Options | None = None,
    eval_data: str | Path | None = None,
    engine: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportReport:
    """Export `model` to one ONNX file, lint it, validate it in ONNX Runtime, then move it into place.

    The steps: write the graph, quantize it (INT8), check the graph contract, save it in a hidden
    folder beside `output`, validate it, publish it (rename onto `output`); with `engine`, then
    build a TensorRT engine from it (`build_engine`; `report.engine`). Every option and output is
    checked before the first step, and a failure (or Ctrl-C) leaves an existing file untouched.
    Raises `ExportError` for options it can't honour, `GraphContractError` if the graph breaks
    the contract, `ValidationFailed` (with the figures) if ONNX Runtime disagrees with PyTorch;
    an engine that fails its validation raises `ValidationFailed` with `exported`, the report of
    the ONNX file that was written. `validate_on` ("auto", "cpu", "cuda") is where ONNX Runtime
    validates (`export.validate.validation_device`: "auto" is CUDA for FP16 when it can run).

    `precision="int8"` quantizes the FP32 graph with calibration images (`int8`, see
    `export.quantize`). `eval_data`, a folder of labelled images (DIR/<class>/<image>), adds
    the file's accuracy against the PyTorch model's on them to the validation, which then fails
    when top-1 drops by more than `thresholds.max_top1_drop` points. `progress` is called with a
    short description before each step.
    """
    step = progress or (lambda message: None)
    if not isinstance(model, ResNet):
        raise ExportError(f"export takes a resnet.ResNet (see resnet.create), got {type(model).__name__}")
    io_dtype = _check_options(opset, precision, io_dtype, batch, int8)
    if eval_data is not None and not validate:
        raise ExportError("--eval is part of the validation; drop --no-validate")
    output = check_writable(Path(output) if output is not None else default_output(model, precision))
    plan = None
    if validate:
        plan = _validation_plan(model, precision, validate_on, thresholds, threads, eval_data, batch, dynamic_batch)
    engine = _check_engine(engine, output)
    timings, started = _Timings(), time.perf_counter()
    with timings.measure("build_s"):
        step(f"writing the {'fp32' if precision == 'int8' else precision} graph of {model.name} at opset {opset}")
        proto, info = write_graph(model, opset, precision, io_dtype, batch, dynamic_batch)
    with staging_folder(output.parent) as stage:
        staged = _stage(model, proto, info, stage, output, opset, int8, plan, timings, step)
        publish_onnx(staged.path, output, staged.data_name)
    timings["total_s"] = time.perf_counter() - started
    report = _report(model, staged, output, timings)
    if engine is not None:
        report.engine = _build(report, engine, validate, thresholds, progress)
    return report


@dataclass
class _Staged:
    """A file prepared in the staging folder: its graph and metadata, lint and validation."""

    path: Path
    proto: onnx.ModelProto
    info: ModelInfo
    lint: LintReport
    data_name: str | None  # its external data file, if any
    validation: ValidationReport | None


def write_graph(model: ResNet, opset: int, precision: str, io_dtype: str, batch: int, dynamic_batch: bool):
    """The graph of `model` (FP32 for an INT8 export, which quantizes it) and its metadata."""
    info = ModelInfo.from_model(model, precision=precision, io_dtype=io_dtype, producer=versions("torch", "onnx"))
    graph_precision = "fp32" if precision == "int8" else precision
    return resnet_to_onnx(
        model,
        opset=opset,
        precision=graph_precision,
        io_dtype=io_dtype,
        batch=batch,
        dynamic_batch=dynamic_batch,
        info=info,
    ), info


def _stage(model, proto, info, stage: Path, output: Path, opset: int, int8, plan, timings, step) -> _Staged:
    """Quantize (INT8), lint, save and validate the file in the staging folder `stage`, timing
    each step; `output` is where it will be published."""
    if int8 is not None:
        with timings.measure("quantize_s"):
            step(f"calibrating on {int8.calibration} ({int8.method}) and quantizing for {int8.target}")
            proto, info = quantize_graph(proto, info, model.input_spec, int8, stage)
    with timings.measure("lint_s"):
        step("checking the graph contract")
        lint = check_onnx(proto, opset=opset, info=info, source=output.name)
    with timings.measure("write_s"):
        step(f"saving {output}")
        staged = stage / output.name
        data_name = save_onnx(proto, staged)
    validation = None
    if plan is not None:
        with timings.measure("validate_s"):
            validation = validate_export(model, staged, info.precision, plan, step)
    return _Staged(staged, proto, info, lint, data_name, validation)


def _check_options(opset: int, precision: str, io_dtype: str | None, batch: int, int8) -> str:
    """Check the graph options before any work; returns the input/output element type."""
    check_opset(opset)
    io_dtype = resolve_io_dtype(precision, io_dtype)
    check_number(batch, "batch", integer=True, limit="batch")
    if precision == "int8":
        if int8 is None:
            raise ExportError("an INT8 export needs calibration images: pass --calibration DIR (a folder of images)")
        int8.check(opset)
        calibration_images(int8)  # a calibration folder that can't be read fails before any work
    elif int8 is not None:
        raise ExportError("calibration options apply to --precision int8")
    return io_dtype


def _validation_plan(
    model: ResNet, precision: str, validate_on: str, thresholds, threads, eval_data, batch: int, dynamic_batch: bool
) -> ValidationPlan:
    """Where and on what the export will be validated, after checking that it fits in memory."""
    eval_set = None
    if eval_data is not None:
        eval_set = read_image_folder(eval_data, num_classes=model.input_spec.num_classes, labeled=True)
    batch_sizes = validation_batches(batch, dynamic_batch)
    device = validation_device(validate_on, precision)
    check_memory(
        estimated_memory(model, max(batch_sizes)),
        f"validating {model.name} at batch {max(batch_sizes)}",
        "lower --batch or --input-size, or pass --no-validate",
    )
    return ValidationPlan(device, batch_sizes, thresholds, threads, eval_set)


def _check_engine(engine: str | Path | None, output: Path) -> Path | None:
    """An engine to build after the export: its outputs writable, TensorRT and a GPU here (so a
    long export never ends in "TensorRT is missing")."""
    if engine is None:
        return None
    from deploy.runtimes.gpu import require_cuda
    from deploy.runtimes.tensorrt import import_tensorrt

    engine = check_outputs(output, engine, manifest_path(engine))[1]
    import_tensorrt()
    require_cuda()
    return engine


def quantize_graph(proto: onnx.ModelProto, info: ModelInfo, spec, int8: Int8Options, stage: Path):
    """The INT8 Q/DQ form of an FP32 graph, calibrated on `int8.calibration` (in `stage`); returns
    it with its metadata (the quantization record added), keeping the writer's producer and doc."""
    (stage / "fp32.onnx").write_bytes(proto.SerializeToString())
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]  # a static batch: calibration batches have it
    fixed_batch = batch.dim_value if batch.HasField("dim_value") else None
    quantization = quantize_onnx(stage / "fp32.onnx", stage / "int8.onnx", spec, INPUT_NAME, int8, fixed_batch)
    info = replace(info, quantization=quantization)
    quantized = onnx.load(str(stage / "int8.onnx"))
    quantized.producer_name, quantized.producer_version = proto.producer_name, proto.producer_version
    quantized.doc_string = proto.doc_string.replace(", fp32,", ", int8 (Q/DQ),")
    onnx.helper.set_model_props(quantized, info.to_metadata())
    return quantized, info


def save_onnx(proto: onnx.ModelProto, staged: Path) -> str | None:
    """Write the model to `staged`; weights above `EXTERNAL_DATA_BYTES` go to `NAME.data` beside
    it, whose name is returned (None: one self-contained file)."""
    if sum(t.ByteSize() for t in proto.graph.initializer) <= EXTERNAL_DATA_BYTES:
        staged.write_bytes(proto.SerializeToString())
        return None
    data_name = f"{staged.name}.data"
    # Tensors under 1 KiB (the Slice and Pad constants) stay inline: ONNX Runtime's and
    # TensorRT's shape inference read them while parsing.
    onnx.save_model(
        proto,
        str(staged),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data_name,
        size_threshold=1024,
    )
    return data_name


def validate_export(model: ResNet, staged: Path, precision: str, plan: ValidationPlan, step) -> ValidationReport:
    """Run the staged file in ONNX Runtime (through `deploy.runtimes`, as it will ship) against the
    PyTorch model; `ValidationFailed` when a figure misses its threshold."""
    step(f"validating against PyTorch in ONNX Runtime (batches {', '.join(map(str, plan.batch_sizes))})")
    options = RuntimeOptions(provider=plan.device, threads=plan.threads, buffer_rows=max(plan.batch_sizes))
    with open_runtime(staged, options) as runtime:
        criterion = criterion_for("fp32", precision, gpu=runtime.device != "cpu")  # against PyTorch FP32
        validation = validate_runtime(
            model, runtime, criterion=criterion, batch_sizes=plan.batch_sizes, thresholds=plan.thresholds
        )
        validation.device = runtime.device
        if precision == "fp16" and runtime.device == "cpu":
            validation.notes.append(FP16_ON_CPU_NOTE)
        if plan.eval_set is not None:
            step(f"comparing accuracy with PyTorch on {len(plan.eval_set)} images of {plan.eval_set.root}")
            check_accuracy(validation, _accuracy(model, runtime, staged.name, plan.eval_set), plan.thresholds)
    if not validation.passed:
        raise ValidationFailed(validation, f"{staged.name} (the file was not written; --no-validate writes it anyway)")
    return validation


def publish_onnx(staged: Path, output: Path, data_name: str | None) -> Path:
    """Move the staged file (and its external data, if any) onto `output`."""
    if data_name:
        publish(staged.with_name(data_name), output.with_name(data_name))
    return publish(staged, output)


def _report(model: ResNet, staged: _Staged, output: Path, timings: _Timings) -> ExportReport:
    producer, data_name = dict(staged.info.producer), staged.data_name
    if staged.validation is not None:
        producer["onnxruntime (validation)"] = versions("onnxruntime")["onnxruntime"]
    return ExportReport(
        path=str(output),
        model=staged.info,
        opset=next(o.version for o in staged.proto.opset_import if o.domain in ("", "ai.onnx")),
        ir_version=staged.proto.ir_version,
        precision=staged.info.precision,
        io_dtype=staged.info.io_dtype,
        inputs=[tensor_info(v) for v in staged.proto.graph.input],
        outputs=[tensor_info(v) for v in staged.proto.graph.output],
        parameters=count_parameters(model),
        file_bytes=output.stat().st_size + (output.with_name(data_name).stat().st_size if data_name else 0),
        external_data=data_name,
        lint=staged.lint,
        validation=staged.validation,
        timings=dict(timings),
        versions=producer,
    )


def _build(report: ExportReport, engine: Path, validate: bool, thresholds: Thresholds, progress):
    """`build_engine` on the exported file; a failed engine validation carries the export's report."""
    from .engine import build_engine

    try:
        return build_engine(
            report.path, engine, precision=report.precision, validate=validate, thresholds=thresholds, progress=progress
        )
    except ValidationFailed as failed:
        failed.exported = report
        raise


def _accuracy(model: ResNet, runtime, name: str, data):
    """The exported file's accuracy on `data`, with the PyTorch model (FP32, eval, a copy) as reference."""
    from deploy.evaluate import evaluate
    from deploy.predictor import Predictor
    from deploy.runtimes.pytorch import TorchCpuRuntime

    candidate = Predictor.from_runtime(runtime, name=name)
    reference = Predictor.from_runtime(TorchCpuRuntime(model), name="pytorch fp32 (eval)")  # runs a copy
    return evaluate(candidate, data, reference=reference)
