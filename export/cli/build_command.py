"""`resnet-build`: an ONNX file to a validated TensorRT engine (`build_engine`)."""

from __future__ import annotations

from pathlib import Path

import click

from deploy.artifacts.manifest import manifest_path
from toolkit.cli import ToolkitCommand, json_option, option_group, progress_printer, write_json
from toolkit.files import check_outputs
from toolkit.numbers import Number
from toolkit.precision import GRAPH_PRECISIONS

from ..engine import OPT_LEVELS, BuildOptions, BuildReport, build_engine, default_engine_path
from ..validate import ValidationFailed
from .options import report_failure, threshold_options, validation_lines


def _build_options(
    min_batch, opt_batch, max_batch, workspace, opt_level, timing_cache, tf32, version_compatible, exclude_lean_runtime
) -> BuildOptions:
    return BuildOptions(
        min_batch,
        opt_batch,
        max_batch,
        workspace,
        opt_level,
        timing_cache,
        tf32,
        version_compatible,
        exclude_lean_runtime,
    )


build_options = option_group(
    "build",
    _build_options,
    click.option(
        "--min-batch",
        type=Number(integer=True, limit="batch"),
        default=None,
        help="Smallest batch of the profile. [default: 1, or the file's fixed batch]",
    ),
    click.option(
        "--opt-batch",
        type=Number(integer=True, limit="batch"),
        default=None,
        help="Batch the engine is tuned for. [default: 32]",
    ),
    click.option(
        "--max-batch",
        type=Number(integer=True, limit="batch"),
        default=None,
        help="Largest batch of the profile. [default: 64]",
    ),
    click.option(
        "--workspace",
        type=Number(integer=True, limit="workspace MiB"),
        default=None,
        help="Builder workspace memory-pool limit, MiB. [default: TensorRT's (the GPU's memory)]",
    ),
    click.option(
        "--opt-level",
        type=Number(integer=True),
        default=None,
        help=f"Builder optimization level {OPT_LEVELS.start}-{OPT_LEVELS.stop - 1}. [default: TensorRT's, 3]",
    ),
    click.option(
        "--timing-cache",
        type=click.Path(dir_okay=False),
        default=None,
        help="Timing cache file: loaded when present, saved after the build.",
    ),
    click.option("--tf32/--no-tf32", default=True, show_default=True, help="Allow TF32 tensor cores for FP32 graphs."),
    click.option(
        "--version-compatible",
        is_flag=True,
        help="An engine that runs on this TensorRT release and later ones, and on a board with only the lean runtime "
        "(pip install tensorrt-lean); it can be slower. The manifest records it.",
    ),
    click.option(
        "--exclude-lean-runtime",
        is_flag=True,
        help="With --version-compatible: leave the lean runtime out of the engine (smaller; the board must have it).",
    ),
)


@click.command("resnet-build", cls=ToolkitCommand)
@click.argument("onnx_file", type=click.Path(dir_okay=False))
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False), default=None, help="Engine file. [default: ./NAME.plan]"
)
@click.option(
    "--precision",
    type=click.Choice(list(GRAPH_PRECISIONS)),
    default=None,
    help="The engine precision you expect; the file decides, and a mismatch is an error that says how to get the right file.",
)
@build_options
@click.option(
    "--validate/--no-validate",
    default=True,
    show_default=True,
    help="Compare the engine with ONNX Runtime (FP32) before writing.",
)
@click.option(
    "--reference",
    type=click.Path(dir_okay=False),
    default=None,
    help="FP32 ONNX to validate against. [default: the source if FP32, else its FP32 twin]",
)
@threshold_options()
@json_option()
def build_main(onnx_file, output, precision, build, validate, reference, thresholds, json_path) -> int:
    """Build a TensorRT engine (and NAME.plan.json, its manifest) from an ONNX file, then validate it.

    \b
    resnet-export --depth 50 --precision fp16           # resnet50_fp16.onnx
    resnet-build resnet50_fp16.onnx -o resnet50_fp16.plan --max-batch 128

    The precision is the graph's (TensorRT 11 is strongly typed). Needs TensorRT and an NVIDIA
    GPU: pip install '.[gpu]'. Build on the machine that will run the engine (a Jetson builds
    its own). Exit status: 0 built, 1 validation failed (nothing written), 2 bad input.
    """
    engine = Path(output) if output is not None else default_engine_path(onnx_file)
    check_outputs(json_path, engine, manifest_path(engine), build.timing_cache, inputs=[onnx_file, reference])
    quiet = json_path == "-"
    try:
        report = build_engine(
            onnx_file,
            output,
            build,
            precision=precision,
            validate=validate,
            reference=reference,
            thresholds=thresholds,
            progress=progress_printer(not quiet),
        )
    except ValidationFailed as failed:
        return report_failure("resnet-build", failed, json_path)
    if json_path:
        write_json(json_path, report.to_dict())
    if not quiet:
        click.echo(format_build_report(report))
    return 0


def format_build_report(report: BuildReport) -> str:
    """The short human-readable report printed by `resnet-build`."""
    m = report.manifest
    env = m.environment
    lines = [
        f"{report.engine}: TensorRT {env.tensorrt_version} engine, {m.precision}{' (TF32 allowed)' if m.tf32 and m.precision == 'fp32' else ''}, "
        f"{report.engine_bytes / 1e6:.1f} MB, for {env.gpu_name} (compute capability {env.compute_capability})",
        f"  profile     batch {m.profile}",
        f"  input       {m.inputs[0].name} {m.inputs[0].dtype} {m.inputs[0].shape}",
        f"  output      {m.outputs[0].name} {m.outputs[0].dtype} {m.outputs[0].shape}",
        f"  manifest    {report.manifest_file}",
    ]
    lines += validation_lines(report.validation)
    lines.extend(f"  warning     {w}" for w in report.warnings)
    t = report.timings
    lines.append(
        f"  time        build {t['build_s']:.1f}s"
        + (f", validate {t['validate_s']:.1f}s" if "validate_s" in t else "")
        + f"; total {t['total_s']:.1f}s"
    )
    return "\n".join(lines)
