"""`resnet-export` (a registered ResNet to one validated ONNX file), `resnet-build` (an ONNX
file to a validated TensorRT engine) and `resnet-compare` (two forms of a model, layer by layer;
INT8 sensitivity). Each command parses its options, most of them in groups that
give the library's own objects (`ModelOptions`, `Int8Options`, `Thresholds`, `BuildOptions`),
calls one library function (`export_onnx`, `build_engine`) and prints its report."""

from __future__ import annotations

from pathlib import Path

import click

from deploy.artifacts.manifest import manifest_path
from resnet.cli import model_options
from toolkit.cli import ProgressBar, ToolkitCommand, json_option, option_group, options, progress_printer, write_json
from toolkit.files import check_outputs
from toolkit.numbers import Number
from toolkit.precision import GRAPH_PRECISIONS, IO_DTYPES

from .compare import DEFAULT_BATCH, DEFAULT_RANDOM, LayerComparison, LayerInputs, compare_models, plot_layers
from .engine import OPT_LEVELS, BuildOptions, BuildReport, build_engine, default_engine_path
from .onnx_export import ExportReport, default_output_name, export_onnx
from .onnx_graph import DEFAULT_OPSET, SUPPORTED_OPSETS
from .quantize import (
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION_SIZE,
    INT8_TARGETS,
    Int8Options,
    default_int8_target,
    read_keep_float,
)
from .sensitivity import SensitivityReport, int8_sensitivity
from .validate import VALIDATION_DEVICES, Thresholds, ValidationFailed, ValidationReport

_RANGE = f"{SUPPORTED_OPSETS.start}-{SUPPORTED_OPSETS.stop - 1}"


def threshold_options(*, accuracy: bool = False):
    """`--atol`, `--rtol`, `--min-cosine`, `--min-top1` (and, with `accuracy`, `--max-top1-drop`),
    given to the command as one `thresholds`, a `Thresholds`."""
    group = [
        click.option(
            "--max-top1-drop",
            type=Number(low=0, high=100),
            default=Thresholds.max_top1_drop,
            show_default=True,
            help="With --eval: most points of top-1 accuracy the file may lose against PyTorch.",
        )
    ]
    group = group if accuracy else []
    group += [
        click.option(
            "--atol",
            type=Number(low=0),
            default=Thresholds.atol,
            show_default=True,
            help="FP32 (engines: without TF32): largest error, in units of the largest |logit|.",
        ),
        click.option(
            "--rtol",
            type=Number(low=0),
            default=Thresholds.rtol,
            show_default=True,
            help="FP32: additional error allowed relative to each logit.",
        ),
        click.option(
            "--min-cosine",
            type=Number(low=0, high=1),
            default=Thresholds.min_cosine,
            show_default=True,
            help="FP16 (and TF32 engines): smallest per-image cosine similarity.",
        ),
        click.option(
            "--min-top1",
            type=Number(low=0, high=1),
            default=Thresholds.min_top1,
            show_default=True,
            help="FP16 (and TF32 engines): smallest top-1 agreement.",
        ),
    ]
    return option_group("thresholds", Thresholds, *group)


def _int8(calibration, calibration_size, calibration_method, int8_target, keep_float) -> Int8Options | None:
    """The INT8 options (None for a float export). They go with `--precision int8`, which the
    command's context holds: the two are checked together here."""
    precision = click.get_current_context().params["precision"]
    if precision != "int8":
        if calibration is not None or int8_target is not None or keep_float is not None:
            raise click.UsageError("--calibration, --int8-target and --keep-float apply to --precision int8")
        return None
    if calibration is None:
        raise click.UsageError("--precision int8 needs --calibration DIR, a folder of images to calibrate on")
    target = int8_target or default_int8_target()
    kept = read_keep_float(keep_float) if keep_float is not None else ()
    return Int8Options(
        Path(calibration), target=target, method=calibration_method, size=calibration_size, keep_float=kept
    )


def calibration_options(purpose: str) -> list:
    """`--calibration`, `--calibration-size`, `--calibration-method`, `--int8-target`: how an INT8
    file is made, for `purpose` ("INT8" in resnet-export, "--sensitivity" in resnet-compare)."""
    return [
        click.option(
            "--calibration",
            type=click.Path(file_okay=False),
            default=None,
            help=f"{purpose}: a folder of images to calibrate on (an ImageFolder tree or flat; labels are ignored).",
        ),
        click.option(
            "--calibration-size",
            type=Number(integer=True, low=1, high=100_000),
            default=DEFAULT_CALIBRATION_SIZE,
            show_default=True,
            help=f"{purpose}: images used for calibration, spread evenly over the folder's sorted list.",
        ),
        click.option(
            "--calibration-method",
            type=click.Choice(list(CALIBRATION_METHODS)),
            default="minmax",
            show_default=True,
            help=f"{purpose}: how activation ranges are chosen from the calibration images.",
        ),
        click.option(
            "--int8-target",
            type=click.Choice(list(INT8_TARGETS)),
            default=None,
            help=f"{purpose}: cpu (uint8 activations, for ONNX Runtime on CPUs) or tensorrt (symmetric Q/DQ on Conv, "
            "Gemm and Add inputs, for resnet-build). [default: tensorrt where a CUDA GPU is visible, else cpu]",
        ),
    ]


int8_options = option_group(
    "int8",
    _int8,
    *calibration_options("INT8"),
    click.option(
        "--keep-float",
        default=None,
        metavar="NAMES|FILE",
        help="INT8: layers left in float, by module name (layer1.0.conv1,fc; a block or stage name keeps all its "
        "layers), or a file of them (resnet-compare --sensitivity --json writes one).",
    ),
)


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
@int8_options
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
    # Every output is checked before any work: nothing is written unless all of them can be.
    output = output or default_output_name(model.name, precision)
    engine_files = [engine, manifest_path(engine)] if engine else []
    check_outputs(output, json_path, *engine_files, inputs=[model.weights, int8 and int8.calibration, eval_data])
    quiet = json_path == "-"
    try:
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
            progress=progress_printer(not quiet),
        )
    except ValidationFailed as failed:
        if failed.exported is not None:  # the ONNX file was written; its engine failed
            click.echo(format_report(failed.exported), err=quiet)
        return report_failure("resnet-export", failed, json_path)
    if json_path:
        write_json(json_path, report.to_dict())
    if not quiet:
        click.echo(format_report(report))
        if report.engine is not None:
            click.echo(format_build_report(report.engine))
    return 0


def validation_lines(validation: ValidationReport | None) -> list[str]:
    """The report lines of a passed validation (or of a skipped one)."""
    if validation is None:
        return ["  validation  skipped (--no-validate)"]
    checks = ", ".join(f"{c.name} {c.value:.6g} {c.relation} {c.limit:g}" for c in validation.checks)
    lines = [
        f"  validation  passed ({checks}) against {validation.reference}, on {validation.device}",
        f"              {validation.summary()}",
    ]
    if validation.accuracy is not None:
        a = validation.accuracy
        lines.append(
            f"  accuracy    top-1 {a['top1']:.2%} against PyTorch's {a['reference_top1']:.2%} on {a['images']} images of "
            f"{a['data']} (drop {a['top1_drop_points']:.2f} points, agreement {a['top1_agreement']:.2%})"
        )
        if a.get("int8_path"):
            lines.append(f"  int8 path   {a['int8_path']}")
    return lines + [f"  note        {note}" for note in validation.notes]


def report_failure(prog: str, failed: ValidationFailed, json_path: str | None) -> int:
    """Say which figure failed (and write it as JSON when asked); the exit status is 1."""
    if json_path:
        write_json(json_path, {"passed": False, "validation": failed.report.to_dict()})
    click.echo(f"{prog}: {failed}", err=True)
    click.echo(f"  {failed.report.summary()}", err=True)
    return 1


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


def _build_options(min_batch, opt_batch, max_batch, workspace, opt_level, timing_cache, tf32) -> BuildOptions:
    return BuildOptions(min_batch, opt_batch, max_batch, workspace, opt_level, timing_cache, tf32)


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


@click.command("resnet-compare", cls=ToolkitCommand)
@click.argument("models", nargs=-1, metavar="MODEL_A MODEL_B")
@click.option(
    "--images",
    type=click.Path(file_okay=False),
    default=None,
    help="Compare on these images (a folder, preprocessed as the model's metadata says). [default: --random]",
)
@click.option(
    "--random",
    "random_count",
    type=Number(integer=True, low=1, high=100_000),
    default=None,
    help=f"Compare on N standard-normal inputs. [default: {DEFAULT_RANDOM}, without --images]",
)
@click.option(
    "--max-images",
    type=Number(integer=True, low=1, high=100_000),
    default=None,
    help="Most images read from --images or --eval, spread evenly over the sorted list. [default: 64; --sensitivity 500]",
)
@click.option("--seed", type=Number(integer=True, low=0), default=0, show_default=True, help="Seed of --random.")
@click.option(
    "--batch",
    type=Number(integer=True, limit="batch"),
    default=DEFAULT_BATCH,
    show_default=True,
    help="Inputs per run (each run holds every layer's output of one batch in memory).",
)
@click.option(
    "--sensitivity",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FP32.onnx",
    help="INT8 sensitivity instead: quantize each block alone and all but it, rank them, propose --keep-float.",
)
@options(*calibration_options("--sensitivity"))
@click.option(
    "--eval",
    "eval_data",
    type=click.Path(file_okay=False),
    default=None,
    help="--sensitivity: labelled images (DIR/<class>/<image>) that top-1 is measured on.",
)
@threshold_options(accuracy=True)
@click.option("--threads", type=Number(integer=True, limit="threads"), default=None, help="ONNX Runtime threads.")
@click.option(
    "--plot", type=click.Path(dir_okay=False), default=None, help="Error per layer, log scale (.png, .svg, .pdf)."
)
@json_option("the layers (or the sensitivity ranking and keep_float)")
def compare_main(
    models,
    images,
    random_count,
    max_images,
    seed,
    batch,
    sensitivity,
    calibration,
    calibration_size,
    calibration_method,
    int8_target,
    eval_data,
    thresholds,
    threads,
    plot,
    json_path,
) -> int:
    """Compare two forms of one model layer by layer and name the first layer that diverges.

    \b
    resnet-compare model.pth model.onnx                       # the export, against PyTorch
    resnet-compare model.onnx model_int8.onnx --images DIR    # where INT8 loses accuracy
    resnet-compare --sensitivity model.onnx --calibration CAL --eval DIR --json keep.json
    resnet-export ... --precision int8 --keep-float keep.json

    Each model is a checkpoint (.pth, .pt), an ONNX file (FP32, FP16, INT8) or an engine; MODEL_A
    is the reference. Layers are matched by module name and judged as validation judges the pair
    (--atol for FP32, --min-cosine for FP16 and INT8). Exit status: 0 no layer diverges (a
    proposal that meets --max-top1-drop), 1 one does (none found), 2 bad input.
    """
    quiet = json_path == "-"
    if sensitivity is not None:
        if models or images or random_count:
            raise click.UsageError("--sensitivity takes one FP32 file and --calibration/--eval, not MODEL_A MODEL_B")
        int8 = _sensitivity_int8(calibration, calibration_size, calibration_method, int8_target, eval_data)
        return _sensitivity(sensitivity, int8, eval_data, thresholds, max_images, json_path)
    if len(models) != 2:
        raise click.UsageError(f"give two models, MODEL_A (the reference) and MODEL_B; got {len(models)}")
    if calibration or eval_data or int8_target:
        raise click.UsageError("--calibration, --eval and --int8-target go with --sensitivity")
    check_outputs(json_path, plot, inputs=[*models, images])
    inputs = LayerInputs(
        images=Path(images) if images else None, random=random_count, max_images=max_images or 64, seed=seed
    )
    bar = ProgressBar(enabled=not quiet)
    report = compare_models(
        *models, inputs, batch=batch, thresholds=thresholds, threads=threads, progress=bar if bar.enabled else None
    )
    if plot:
        plot_layers(report, plot)
    if json_path:
        write_json(json_path, report.to_dict())
    if not quiet:
        click.echo(format_layers(report) + (f"\n  plot        {plot}" if plot else ""))
    return 0 if report.passed else 1


def _sensitivity_int8(calibration, size, method, target, eval_data) -> Int8Options:
    """The INT8 options --sensitivity quantizes with, once --calibration and --eval are both there."""
    if calibration is None or eval_data is None:
        raise click.UsageError(
            "--sensitivity needs --calibration DIR (to calibrate on) and --eval DIR (labelled images)"
        )
    return Int8Options(Path(calibration), target=target or default_int8_target(), method=method, size=size)


def _sensitivity(fp32, int8: Int8Options, eval_data, thresholds, max_images, json_path) -> int:
    check_outputs(json_path, inputs=[fp32, int8.calibration, eval_data])
    quiet = json_path == "-"
    report = int8_sensitivity(
        fp32,
        int8,
        eval_data,
        max_top1_drop=thresholds.max_top1_drop,
        max_images=max_images or 500,
        progress=progress_printer(not quiet),
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
    """The ranking `resnet-compare --sensitivity` prints, most costly first, and the proposal."""
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


if __name__ == "__main__":
    main()
