"""`resnet-export`: a registered ResNet to one validated ONNX file (`export_onnx`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from deploy.artifacts.manifest import manifest_path
from resnet.cli import model_options
from toolkit.cli import ToolkitCommand, json_option, progress_printer, write_json
from toolkit.files import check_outputs
from toolkit.numbers import Number
from toolkit.precision import GRAPH_PRECISIONS, IO_DTYPES

from ..opsets import DEFAULT_OPSET, SUPPORTED_OPSETS
from ..validate import VALIDATION_DEVICES, ValidationFailed
from .build_command import format_build_report
from .options import int8_options, report_failure, threshold_options, validation_lines

if TYPE_CHECKING:
    from ..onnx_export import ExportReport

_RANGE = f"{SUPPORTED_OPSETS.start}-{SUPPORTED_OPSETS.stop - 1}"


@click.command("resnet-export", cls=ToolkitCommand)
@model_options(depth_required=True, export=True)
@click.option(
    "--opset",
    type=Number(integer=True),
    default=DEFAULT_OPSET,
    show_default=True,
    help=f"Default-domain opset of the file, exactly ({_RANGE}).",
)
@click.option(
    "--precision",
    type=click.Choice(list(GRAPH_PRECISIONS)),
    default="fp32",
    show_default=True,
    help="Arithmetic of the graph; fp16 is what TensorRT builds an FP16 engine from; int8 is post-training "
    "quantization (Q/DQ) calibrated on --calibration images.",
)
@int8_options("INT8")
@click.option(
    "--eval",
    "eval_data",
    type=click.Path(file_okay=False),
    default=None,
    help="A folder of labelled images (DIR/<class>/<image>): validation also compares the file's top-1 accuracy "
    "with PyTorch's on them (see --max-top1-drop).",
)
@click.option(
    "--io-dtype",
    type=click.Choice(list(IO_DTYPES)),
    default=None,
    help="Input/output element type. [default: fp32, with casts at the edges of an fp16 graph]",
)
@click.option(
    "--batch",
    type=Number(integer=True, limit="batch"),
    default=1,
    show_default=True,
    help="Example batch (the fixed batch with --static-batch).",
)
@click.option(
    "--dynamic-batch/--static-batch",
    default=True,
    show_default=True,
    help="Symbolic batch axis 'batch', or fixed to --batch.",
)
@click.option(
    "--output", "-o", type=click.Path(), default=None, help="File to write. [default: ./NAME.onnx, ./NAME_fp16.onnx]"
)
@click.option(
    "--validate/--no-validate",
    default=True,
    show_default=True,
    help="Compare with PyTorch in ONNX Runtime before writing.",
)
@click.option(
    "--validate-on",
    type=click.Choice(list(VALIDATION_DEVICES)),
    default="auto",
    show_default=True,
    help="Where ONNX Runtime validates: cuda computes an FP16 graph in FP16, a CPU in FP32 (checking only the weights' "
    "rounding). auto: cuda for fp16 when ONNX Runtime's CUDA provider can run here, else cpu.",
)
@threshold_options(accuracy=True)
@click.option(
    "--threads",
    type=Number(integer=True, limit="threads"),
    default=None,
    help="ONNX Runtime threads for validation. [default: one per core]",
)
@click.option(
    "--engine",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also build a TensorRT engine here from the exported file (needs TensorRT and a GPU; see resnet-build).",
)
@json_option("the whole report")
def main(
    model,
    opset,
    precision,
    int8,
    eval_data,
    io_dtype,
    batch,
    dynamic_batch,
    output,
    validate,
    validate_on,
    thresholds,
    threads,
    engine,
    json_path,
) -> int:
    """Export a ResNet to ONNX at exactly --opset, check the graph contract, validate in ONNX Runtime.

    \b
    resnet-export --depth 50 --opset 17                 # ./resnet50.onnx
    resnet-export --depth 50 --precision fp16           # ./resnet50_fp16.onnx, for TensorRT FP16
    resnet-export --depth 20 --dataset cifar10 --weights ckpt.pth

    Exit status: 0 exported, 1 validation failed (nothing written), 2 bad input.
    """
    from ..onnx_export import default_output_name, export_onnx  # PyTorch: here, so --help runs without it

    output = output or default_output_name(model.name, precision)
    engine_files = [engine, manifest_path(engine)] if engine else []
    check_outputs(output, json_path, *engine_files, inputs=[model.weights, int8 and int8.calibration, eval_data])
    try:  # every output was checked first: nothing is written unless all of them can be
        report = export_onnx(
            model.create(),
            output,
            opset=opset,
            precision=precision,
            io_dtype=io_dtype,
            batch=batch,
            dynamic_batch=dynamic_batch,
            validate=validate,
            validate_on=validate_on,
            thresholds=thresholds,
            threads=threads,
            int8=int8,
            eval_data=eval_data,
            engine=engine,
            progress=progress_printer(json_path != "-"),
        )
    except ValidationFailed as failed:
        if failed.exported is not None:  # the ONNX file was written; its engine failed
            click.echo(format_report(failed.exported), err=json_path == "-")
        return report_failure("resnet-export", failed, json_path)
    if json_path:
        write_json(json_path, report.to_dict())
    if json_path != "-":
        click.echo(format_report(report))
        if report.engine is not None:
            click.echo(format_build_report(report.engine))
    return 0


def format_report(report: ExportReport) -> str:
    """The short human-readable report printed by `resnet-export`."""
    info = report.model
    size = report.file_bytes / 1e6
    io_note = ""
    if report.precision == "fp16":
        io_note = " (FP32 I/O, cast to FP16 at the edges)" if report.io_dtype == "fp32" else " (FP16 I/O)"
    elif report.precision == "int8":
        q = info.quantization
        io_note = (
            f" (Q/DQ for {q['target']}: activations {q['activations']}, weights {q['weights']}; "
            f"calibrated on {q['calibration_images']} image{'' if q['calibration_images'] == 1 else 's'}, "
            f"{q['calibration_method']}; FP32 I/O"
            + (
                f"; in float: {', '.join(q['keep_float'])}, {len(q['float_nodes'])} nodes"
                if q.get("keep_float")
                else ""
            )
            + ")"
        )
    lines = [
        f"{report.path}: {info.name} ({info.dataset}, shortcut {info.shortcut}, {info.num_classes} classes), "
        f"{report.parameters:,} parameters, {size:.1f} MB",
        f"  format      ONNX opset {report.opset} (IR {report.ir_version}), {report.precision}{io_note}"
        + (f", weights in {report.external_data}" if report.external_data else ""),
        f"  input       {report.inputs[0]}",
        f"  output      {report.outputs[0]}",
        f"  nodes       {sum(report.op_counts.values())}: "
        + ", ".join(f"{op} {n}" for op, n in report.op_counts.items()),
        f"  lint        passed ({len(report.lint.rules)} rules of the graph contract)",
    ]
    lines += validation_lines(report.validation)
    t = report.timings
    parts = [
        f"{name[:-2]} {t[name]:.2f}s"
        for name in ("build_s", "quantize_s", "lint_s", "write_s", "validate_s")
        if name in t
    ]
    lines.append(f"  time        {', '.join(parts)}; total {t['total_s']:.2f}s")
    return "\n".join(lines)
