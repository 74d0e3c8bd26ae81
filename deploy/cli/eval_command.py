"""`resnet-eval`: accuracy on a folder of labelled images."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from resnet.cli import model_options
from toolkit.cli import (
    ProgressBar,
    ToolkitCommand,
    json_option,
    write_json,
)
from toolkit.files import check_outputs
from toolkit.numbers import Number, shown_apart

from .options import backend_options

if TYPE_CHECKING:
    from ..evaluate import Evaluation


@click.command("resnet-eval", cls=ToolkitCommand)
@click.argument("model", type=click.Path())
@click.argument("data", type=click.Path())
@click.option(
    "--reference",
    type=click.Path(),
    default=None,
    help="A second model run on the same images (the FP32 file, or the checkpoint): top-1 agreement and "
    "the largest probability difference.",
)
@click.option(
    "--batch",
    type=Number(integer=True, limit="batch"),
    default=64,
    show_default=True,
    help="Images preprocessed and run together.",
)
@click.option(
    "--labels",
    type=click.Path(dir_okay=False),
    default=None,
    help="Class names, one per line; class folders named after them map to their indices. [default: the "
    "bundle's; else folders in sorted order, as torchvision numbers them]",
)
@backend_options
@model_options(
    depth_required=False,
    depth_help="For a .pth checkpoint that doesn't record its model:",
    note="With --depth.",
    name="architecture",
)
@click.option(
    "--min-top1",
    type=Number(low=0, high=1),
    default=None,
    help="Exit with status 1 when top-1 accuracy is below this fraction (for CI pipelines).",
)
@json_option("the evaluation")
def eval_main(
    model, data, reference, batch, labels, backend, device, precision, architecture, min_top1, json_path
) -> int:
    """Top-1 and top-5 accuracy of MODEL on DATA, an ImageFolder tree (DATA/<class>/<image>).

    \b
    resnet-eval resnet20_digits_int8.onnx heldout/ --reference resnet20_digits.onnx
    resnet-eval rn50.pth imagenet-val/ --depth 50 --labels imagenet.txt --min-top1 0.75
    resnet-eval digits.onnx heldout/ --backend openvino --precision bf16 --reference digits.onnx

    MODEL is an ONNX file, an engine, a bundle folder or a .pth checkpoint (its architecture is read
    from its keys, or given with --depth). Images go through the model's own preprocessing; one
    that can't be read is counted and named, never fatal. Exit status: 0, 1 below --min-top1,
    2 bad input.
    """
    check_outputs(json_path, inputs=[model, data, reference, labels])
    quiet = json_path == "-"
    bar = ProgressBar(enabled=not quiet)
    from ..evaluate import evaluate_model

    report = evaluate_model(
        model,
        data,
        reference=reference,
        batch=batch,
        labels=labels,
        backend=backend,
        device=device,
        precision=precision,
        architecture=architecture,
        progress=lambda done, total: bar(f"{done}/{total} images", done / total) if total > 1000 else None,
    )
    if json_path:
        write_json(json_path, report.to_dict())
    if not quiet:
        click.echo(format_evaluation(report))
    for skipped in report.unreadable:
        click.echo(f"resnet-eval: skipped {skipped['error']}", err=True)
    if min_top1 is not None and report.top1 < min_top1:
        top1, limit = shown_apart(report.top1, min_top1, percent=True)
        click.echo(f"resnet-eval: top-1 {top1} is below --min-top1 {limit}", err=True)
        return 1
    return 0


def format_evaluation(report: Evaluation) -> str:
    lines = [
        f"{report.model} on {report.data}: {report.images} images, {report.classes} classes"
        + (f" ({len(report.unreadable)} unreadable, skipped)" if report.unreadable else ""),
        f"  backend     {report.backend}",
        f"  top-1       {report.top1:.2%}",
        f"  top-{report.k}       {report.topk:.2%}",
    ]
    if report.int8_path is not None:
        lines.append(f"  int8 path   {report.int8_path}")
    if report.reference is not None:
        lines.append(
            f"  reference   {report.reference}: top-1 {report.reference_top1:.2%}; agreement {report.top1_agreement:.2%}, "
            f"largest probability difference {report.max_probability_difference:.4f}"
        )
    lines.append(f"  time        {report.seconds:.1f}s ({report.images / max(report.seconds, 1e-9):,.0f} images/s)")
    return "\n".join(lines)
