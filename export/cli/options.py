"""What the export package's commands share: the option groups that give `Thresholds` and
`Int8Options`, and how a validation is reported (its lines, a failure's one sentence)."""

from __future__ import annotations

from pathlib import Path

import click

from toolkit.cli import option_group, write_json
from toolkit.numbers import Number

from ..quantize import (
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION_SIZE,
    INT8_TARGETS,
    Int8Options,
    default_int8_target,
    read_keep_float,
)
from ..validate import Thresholds, ValidationFailed, ValidationReport


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


def _int8(calibration, calibration_size, calibration_method, int8_target, keep_float=None) -> Int8Options | None:
    """The one builder of `Int8Options` from a command line. In resnet-export they go with
    `--precision int8`, which the command's context holds (None for a float export; the two are
    checked together here); in resnet-compare sensitivity they are the command's own."""
    precision = click.get_current_context().params.get("precision", "int8")
    if precision != "int8":
        if calibration is not None or int8_target is not None or keep_float is not None:
            raise click.UsageError("--calibration, --int8-target and --keep-float apply to --precision int8")
        return None
    if calibration is None:
        raise click.UsageError("--precision int8 needs --calibration DIR, a folder of images to calibrate on")
    target = int8_target or default_int8_target()
    kept = read_keep_float(keep_float, target) if keep_float is not None else {}
    return Int8Options(Path(calibration), target=target, method=calibration_method, size=calibration_size, **kept)


def int8_options(purpose: str, *, keep_float: bool = True, required: bool = False):
    """`--calibration` (`required`: the command's own), `--calibration-size`, `--calibration-method`,
    `--int8-target` and, with `keep_float`, `--keep-float`: how an INT8 file is made, for `purpose`
    ("INT8" in resnet-export, "sensitivity" in resnet-compare), given to the command as `int8`."""
    group = [
        click.option(
            "--calibration",
            type=click.Path(file_okay=False),
            required=required,  # (click 8.5 treats an explicit default=None as given)
            help=f"{purpose}: a folder of images to calibrate on (an ImageFolder tree or flat; labels are ignored).",
        ),
        click.option(
            "--calibration-size",
            type=Number(integer=True, limit="images"),
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
            help=f"{purpose}: cpu (uint8 activations, 7-bit weights, for ONNX Runtime and OpenVINO on CPUs) or "
            "tensorrt (symmetric Q/DQ on Conv, Gemm and Add inputs, for resnet-build). [default: tensorrt where a CUDA "
            "GPU is visible, else cpu]",
        ),
    ]
    if keep_float:
        group.append(
            click.option(
                "--keep-float",
                default=None,
                metavar="NAMES|FILE",
                help=f"{purpose}: layers left in float, by module name (layer1.0.conv1,fc; a block or stage name keeps "
                "all its layers), or a file of them (resnet-compare sensitivity --json writes one).",
            )
        )
    return option_group("int8", _int8, *group)


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
