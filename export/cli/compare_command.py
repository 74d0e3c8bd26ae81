"""`resnet-compare`: two forms of a model compared layer by layer (`compare_models`), and INT8
sensitivity (`int8_sensitivity`)."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.cli import ProgressBar, ToolkitGroup, json_option, progress_printer, write_json
from toolkit.files import check_figure_path, check_outputs
from toolkit.numbers import Number

from ..compare import (
    DEFAULT_BATCH,
    DEFAULT_MAX_IMAGES,
    DEFAULT_RANDOM,
    LayerComparison,
    LayerInputs,
    compare_models,
    plot_layers,
)
from ..quantize import Int8Options
from ..sensitivity import DEFAULT_EVAL_IMAGES, MAX_EVAL_IMAGES, SensitivityReport, int8_sensitivity
from ..validate import Thresholds
from .options import int8_options, threshold_options


class _CompareGroup(ToolkitGroup):
    """`resnet-compare layers ...` and `resnet-compare sensitivity ...`; for one release, the spellings
    before the two subcommands (`resnet-compare A B ...`, `resnet-compare --sensitivity FP32 ...`) still
    work, with one line saying the new one."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = _new_spelling(list(args))
        return super().parse_args(ctx, args)


def _new_spelling(args: list[str]) -> list[str]:
    if "--sensitivity" in args:
        at = args.index("--sensitivity")
        fp32 = args[at + 1 : at + 2]
        new = ["sensitivity", *fp32, *args[:at], *args[at + 2 :]]
        said = "resnet-compare --sensitivity FP32 is now resnet-compare sensitivity FP32"
    else:
        new = ["layers", *args]
        said = "resnet-compare A B is now resnet-compare layers A B"
    click.echo(f"resnet-compare: {said} (the old spelling goes in the next release)", err=True)
    return new


@click.group("resnet-compare", cls=_CompareGroup)
def compare_main() -> None:
    """Where a conversion loses accuracy: two forms of one model layer by layer, or INT8 sensitivity.

    \b
    resnet-compare layers model.pth model.onnx                       # the export, against PyTorch
    resnet-compare layers model.onnx model_int8.onnx --images DIR    # where INT8 loses accuracy
    resnet-compare sensitivity model.onnx --calibration CAL --eval DIR --json keep.json
    resnet-export ... --precision int8 --keep-float keep.json
    """


@compare_main.command("layers")
@click.argument("reference", metavar="MODEL_A")
@click.argument("candidate", metavar="MODEL_B")
@click.option(
    "--images",
    type=click.Path(file_okay=False),
    default=None,
    help="Compare on these images (a folder, preprocessed as the model's metadata says). [default: --random]",
)
@click.option(
    "--random",
    "random_count",
    type=Number(integer=True, limit="images"),
    default=None,
    help=f"Compare on N standard-normal inputs. [default: {DEFAULT_RANDOM}, without --images]",
)
@click.option(
    "--max-images",
    type=Number(integer=True, limit="images"),
    default=DEFAULT_MAX_IMAGES,
    show_default=True,
    help="Most images read from --images, spread evenly over the sorted list.",
)
@click.option("--seed", type=Number(integer=True, low=0), default=0, show_default=True, help="Seed of --random.")
@click.option(
    "--batch",
    type=Number(integer=True, limit="batch"),
    default=DEFAULT_BATCH,
    show_default=True,
    help="Inputs per run (each run holds every layer's output of one batch in memory).",
)
@threshold_options()
@click.option("--threads", type=Number(integer=True, limit="threads"), default=None, help="ONNX Runtime threads.")
@click.option(
    "--plot", type=click.Path(dir_okay=False), default=None, help="Error per layer, log scale (.png, .svg, .pdf)."
)
@json_option("the layers")
def layers(
    reference, candidate, images, random_count, max_images, seed, batch, thresholds, threads, plot, json_path
) -> int:
    """Compare MODEL_B with MODEL_A (the reference) layer by layer and name the first layer that diverges.

    Each model is a checkpoint (.pth, .pt), an ONNX file (FP32, FP16, INT8) or an engine. Layers
    are matched by module name and judged as validation judges the pair (--atol for FP32,
    --min-cosine for FP16 and INT8). Exit status: 0 no layer diverges, 1 one does, 2 bad input.
    """
    if plot is not None:
        check_figure_path(plot, "--plot", ("png", "svg", "pdf"))
    check_outputs(json_path, plot, inputs=[reference, candidate, images])
    quiet = json_path == "-"
    inputs = LayerInputs(images=Path(images) if images else None, random=random_count, max_images=max_images, seed=seed)
    bar = ProgressBar(enabled=not quiet)
    report = compare_models(
        reference, candidate, inputs, batch=batch, thresholds=thresholds, threads=threads,
        progress=bar if bar.enabled else None,
    )  # fmt: skip
    if plot:
        plot_layers(report, plot)
    if json_path:
        write_json(json_path, report.to_dict())
    if not quiet:
        click.echo(format_layers(report) + (f"\n  plot        {plot}" if plot else ""))
    return 0 if report.passed else 1


@compare_main.command("sensitivity")
@click.argument("fp32", metavar="FP32.onnx")
@int8_options("sensitivity", keep_float=False, required=True)
@click.option(
    "--eval",
    "eval_data",
    type=click.Path(file_okay=False),
    required=True,
    help="Labelled images (DIR/<class>/<image>) that top-1 is measured on.",
)
@click.option(
    "--max-images",
    type=Number(integer=True, low=1, high=MAX_EVAL_IMAGES),
    default=DEFAULT_EVAL_IMAGES,
    show_default=True,
    help="Most images read from --eval, spread evenly over the sorted list.",
)
@click.option(
    "--max-top1-drop",
    type=Number(low=0, high=100),
    default=Thresholds.max_top1_drop,
    show_default=True,
    help="The proposal's target: most points of top-1 the INT8 file may lose against the FP32 file.",
)
@json_option("the ranking and keep_float (resnet-export --keep-float reads it)")
def sensitivity(fp32, int8: Int8Options, eval_data, max_images, max_top1_drop, json_path) -> int:
    """INT8 sensitivity of FP32.onnx: quantize each unit (conv1, every block, fc) alone and all but it,
    rank them by the top-1 they cost on --eval, and propose the smallest set to keep in float.

    Exit status: 0 the proposal meets --max-top1-drop, 1 none does, 2 bad input.
    """
    check_outputs(json_path, inputs=[fp32, int8.calibration, eval_data])
    quiet = json_path == "-"
    report = int8_sensitivity(
        fp32, int8, eval_data, max_top1_drop=max_top1_drop, max_images=max_images, progress=progress_printer(not quiet)
    )
    if json_path:
        write_json(json_path, report.to_dict())
    if not quiet:
        click.echo(format_sensitivity(report))
    return 0 if report.met else 1


def _range(values: list[float]) -> str:
    return f"[{values[0]:.3g}, {values[1]:.3g}]"


def format_layers(report: LayerComparison) -> str:
    """The table `resnet-compare` prints: one row per matched layer, in network order."""
    judged = sorted({c.name for layer in report.layers for c in layer.checks})
    lines = [
        f"{report.candidate}",
        f"  against     {report.reference}",
        f"  inputs      {report.inputs}, batch {report.batch}; criterion {report.criterion} ({', '.join(judged)})",
        f"  {'layer':<24} {'shape':>12} {'max abs':>10} {'scale':>9} {'err/scale':>10} {'cosine':>10}  range",
    ]
    first = report.first_divergent
    for layer in report.layers:
        flag = "" if layer.passed else ("  <- first divergent" if layer.name == first else "  !")
        flag += "  beyond FP16" if layer.fp16_overflow else ""
        lines.append(
            f"  {layer.name:<24} {'x'.join(map(str, layer.shape)):>12} {layer.max_abs:>10.3g} {layer.scale:>9.3g} "
            f"{layer.error_of_scale:>10.3g} {layer.cosine:>10.6f}  {_range(layer.range):<20}{flag}".rstrip()
        )
    for side, names in report.unmatched.items():
        if names:
            lines.append(f"  only in the {side}: {', '.join(names)} (fused or absent in the other)")
    lines += [f"  note        {note}" for note in report.notes]
    lines.append(f"  finding     {report.sentence()}")
    lines.append(f"  time        {report.seconds:.1f}s for {len(report.layers)} layers")
    return "\n".join(lines)


def format_sensitivity(report: SensitivityReport) -> str:
    """The ranking `resnet-compare sensitivity` prints, most costly first, and the proposal."""
    lines = [
        f"{report.model}: INT8 sensitivity for {report.target}, {report.images} images of {report.eval_data}",
        f"  fp32        top-1 {report.fp32_top1:.2%}",
        f"  int8        top-1 {report.int8.top1:.2%} (drop {report.int8.top1_drop:.2f} points), cosine {report.int8.cosine:.6f}",
        f"  {'unit':<12} {'cost':>6}  {'alone in INT8':>26}  {'all but it in INT8':>26}",
    ]
    for b in report.blocks:
        lines.append(
            f"  {b.name:<12} {b.cost:>6.2f}  top-1 {b.alone.top1:>7.2%} cos {b.alone.cosine:.6f}  "
            f"top-1 {b.left_out.top1:>7.2%} cos {b.left_out.cosine:.6f}"
        )
    p = report.proposal
    kept = ",".join(p.keep_float) or "nothing"
    lines.append(
        f"  keep float  {kept}: top-1 {p.top1:.2%}, drop {p.top1_drop:.2f} points "
        f"({'within' if report.met else 'outside'} --max-top1-drop {report.max_top1_drop:g}), cosine {p.cosine:.6f}"
    )
    if p.keep_float:
        lines.append(
            f"  apply       resnet-export ... --precision int8 --int8-target {report.target} --keep-float {kept}"
        )
    lines += [f"  note        {note}" for note in report.notes]
    lines.append(f"  time        {report.seconds:.1f}s, {report.files_quantized} INT8 files quantized and measured")
    return "\n".join(lines)
