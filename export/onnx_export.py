"""`export_onnx`: write, lint and validate one ONNX file; the function behind `resnet-export`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx

from deploy.artifacts.metadata import ModelInfo
from deploy.artifacts.tensors import TensorInfo
from deploy.datasets import read_image_folder
from deploy.runtimes import RuntimeOptions, open_runtime
from resnet.model import ResNet
from resnet.summary import count_parameters, estimated_memory
from toolkit.files import check_writable, publish, staging_folder
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
    judged_as,
    validate_runtime,
    validation_batches,
    validation_device,
)

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
        }


def default_output_name(name: str, precision: str) -> Path:
    """`resnet50.onnx`, `resnet50_fp16.onnx`, `resnet20_cifar10.onnx` in the current folder."""
    return Path(f"{name}{'' if precision == 'fp32' else '_' + precision}.onnx")


def default_output(model: ResNet, precision: str) -> Path:
    """`default_output_name` of a model."""
    return default_output_name(model.name, precision)


def _tensor_info(value: onnx.ValueInfoProto) -> TensorInfo:
    tensor = value.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
    return TensorInfo(value.name, onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name, shape)


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
    progress: Callable[[str], None] | None = None,
) -> ExportReport:
    """Export `model` to one ONNX file, lint it, validate it in ONNX Runtime, then move it into place.

    The file is prepared in a hidden folder beside `output` and renamed onto it only after the
    lint and the validation pass, so a failure (or Ctrl-C) leaves an existing file untouched.
    Raises `ExportError` for options it can't honour, `GraphContractError` if the graph breaks
    the contract, `ValidationFailed` (with the figures) if ONNX Runtime disagrees with PyTorch.
    `validate_on` ("auto", "cpu", "cuda") is where ONNX Runtime runs the file for validation
    (`export.validate.validation_device`: "auto" is CUDA for FP16 when it can run).

    `precision="int8"` quantizes the FP32 graph with calibration images (`int8`, see
    `export.quantize`). `eval_data`, a folder of labelled images (DIR/<class>/<image>), adds
    the file's accuracy against the PyTorch model's on them to the validation, which then fails
    when top-1 drops by more than `thresholds.max_top1_drop` points. `progress` is called with a
    short description before each step.
    """
    step = progress or (lambda message: None)
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
    eval_set = None
    if eval_data is not None:
        if not validate:
            raise ExportError("--eval is part of the validation; drop --no-validate")
        eval_set = read_image_folder(eval_data, num_classes=model.input_spec.num_classes, labeled=True)
    output = check_writable(Path(output) if output is not None else default_output(model, precision))
    device = validation_device(validate_on, precision) if validate else None
    if validate:
        check_memory(
            estimated_memory(model, max(validation_batches(batch, dynamic_batch))),
            f"validating {model.name} at batch {max(validation_batches(batch, dynamic_batch))}",
            "lower --batch or --input-size, or pass --no-validate",
        )
    timings: dict[str, float] = {}
    started = time.perf_counter()

    graph_precision = "fp32" if precision == "int8" else precision
    step(f"writing the {graph_precision} graph of {model.name} at opset {opset}")
    producer = versions("torch", "onnx")
    info = ModelInfo.from_model(model, precision=precision, io_dtype=io_dtype, producer=producer)
    proto = resnet_to_onnx(
        model,
        opset=opset,
        precision=graph_precision,
        io_dtype=io_dtype,
        batch=batch,
        dynamic_batch=dynamic_batch,
        info=info,
    )
    timings["build_s"] = time.perf_counter() - started

    validation = None
    with staging_folder(output.parent) as stage:
        if precision == "int8":
            step(f"calibrating on {int8.calibration} ({int8.method}) and quantizing for {int8.target}")
            mark = time.perf_counter()
            (stage / "fp32.onnx").write_bytes(proto.SerializeToString())
            quantization = quantize_onnx(stage / "fp32.onnx", stage / "int8.onnx", model.input_spec, INPUT_NAME, int8)
            info = replace(info, quantization=quantization)
            written = proto
            proto = onnx.load(str(stage / "int8.onnx"))
            proto.producer_name, proto.producer_version = written.producer_name, written.producer_version
            proto.doc_string = written.doc_string.replace(", fp32,", ", int8 (Q/DQ),")
            onnx.helper.set_model_props(proto, info.to_metadata())
            timings["quantize_s"] = time.perf_counter() - mark

        step("checking the graph contract")
        mark = time.perf_counter()
        lint = check_onnx(proto, opset=opset, info=info, source=output.name)
        timings["lint_s"] = time.perf_counter() - mark

        step(f"saving {output}")
        mark = time.perf_counter()
        staged = stage / output.name
        external = sum(t.ByteSize() for t in proto.graph.initializer) > EXTERNAL_DATA_BYTES
        data_name = f"{output.name}.data" if external else None
        if external:
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
        else:
            staged.write_bytes(proto.SerializeToString())
        timings["write_s"] = time.perf_counter() - mark

        if validate:
            batch_sizes = validation_batches(batch, dynamic_batch)
            step(f"validating against PyTorch in ONNX Runtime (batches {', '.join(map(str, batch_sizes))})")
            mark = time.perf_counter()
            options = RuntimeOptions(provider=device, threads=threads, max_batch=max(batch_sizes))
            with open_runtime(staged, options) as runtime:
                validation = validate_runtime(
                    model,
                    runtime,
                    precision=judged_as(precision, runtime.device),
                    batch_sizes=batch_sizes,
                    thresholds=thresholds,
                )
                validation.device = runtime.device
                if precision == "fp16" and runtime.device == "cpu":
                    validation.notes.append(FP16_ON_CPU_NOTE)
                if eval_set is not None:
                    step(f"comparing accuracy with PyTorch on {len(eval_set)} images of {eval_set.root}")
                    check_accuracy(validation, _accuracy(model, runtime, output.name, eval_set), thresholds)
            timings["validate_s"] = time.perf_counter() - mark
            if not validation.passed:
                raise ValidationFailed(
                    validation, f"{output.name} (the file was not written; --no-validate writes it anyway)"
                )

        if data_name:
            publish(stage / data_name, output.parent / data_name)
        publish(staged, output)
    timings["total_s"] = time.perf_counter() - started

    if validation is not None:
        producer = {**producer, "onnxruntime (validation)": versions("onnxruntime")["onnxruntime"]}
    return ExportReport(
        path=str(output),
        model=info,
        opset=opset,
        ir_version=proto.ir_version,
        precision=precision,
        io_dtype=io_dtype,
        inputs=[_tensor_info(v) for v in proto.graph.input],
        outputs=[_tensor_info(v) for v in proto.graph.output],
        parameters=count_parameters(model),
        file_bytes=output.stat().st_size + ((output.parent / data_name).stat().st_size if data_name else 0),
        external_data=data_name,
        lint=lint,
        validation=validation,
        timings=timings,
        versions=producer,
    )


def _accuracy(model: ResNet, runtime, name: str, data):
    """The exported file's accuracy on `data`, with the PyTorch model (FP32, eval, a copy) as reference."""
    import copy

    from deploy.evaluate import evaluate
    from deploy.predictor import Predictor
    from deploy.runtimes.pytorch import TorchCpuRuntime

    candidate = Predictor.from_runtime(runtime, name=name)
    reference = Predictor.from_runtime(TorchCpuRuntime(copy.deepcopy(model)), name="pytorch fp32 (eval)")
    return evaluate(candidate, data, reference=reference)
