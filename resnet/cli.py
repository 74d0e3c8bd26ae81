"""The model zoo on the command line: `python -m resnet` (every registered model, its size and
cost), and the options every command uses to name a registered model (`model_options`)."""

from __future__ import annotations

import time
from collections.abc import Callable

import click

from toolkit.cli import options
from toolkit.numbers import Number

from .registry import CIFAR_MODELS, DATASETS, IMAGENET_MODELS, create, registered_models
from .summary import summarize

_DEPTHS = f"ImageNet {', '.join(map(str, IMAGENET_MODELS))}; CIFAR {', '.join(map(str, CIFAR_MODELS))}."


def model_options(*, depth_required: bool, depth_help: str = "", note: str = "") -> Callable:
    """`--depth`, `--dataset`, `--shortcut`, `--num-classes`: a registered model, as `create` takes it.

    The command receives `depth`, `dataset`, `shortcut` and `num_classes`. `depth_help` opens
    the help of --depth; `note` ends the help of the other three (e.g. "With --depth.").
    """
    suffix = f" {note}" if note else ""
    return options(
        click.option("--depth", type=int, required=depth_required, help=" ".join(filter(None, [depth_help, _DEPTHS]))),
        click.option(
            "--dataset", type=click.Choice(list(DATASETS)), default="imagenet", show_default=True, help=note or None
        ),
        click.option(
            "--shortcut",
            type=click.Choice(["A", "B"]),
            default=None,
            help="Option A (slice + zero pad) or B (1x1 projection). [default: B for ImageNet, A for CIFAR]" + suffix,
        ),
        click.option(
            "--num-classes",
            type=Number(integer=True, limit="classes"),
            default=None,
            help="[default: the dataset's]" + suffix,
        ),
    )


def main() -> None:
    """Build every registered model and print its size and cost."""
    header = f"{'model':<18} {'depth':>5} {'shortcut':>8} {'parameters':>12} {'GMACs':>8} {'input':>16} {'output':>10} {'build s':>8}"
    print(header)
    print("-" * len(header))
    for depth, dataset in registered_models():
        start = time.perf_counter()
        model = create(depth, dataset)
        summary = summarize(model)
        elapsed = time.perf_counter() - start
        print(
            f"{summary.name:<18} {summary.depth:>5} {summary.shortcut:>8} {summary.parameters:>12,} "
            f"{summary.macs / 1e9:>8.3f} {'x'.join(map(str, summary.input_shape)):>16} "
            f"{'x'.join(map(str, summary.output_shape)):>10} {elapsed:>8.2f}"
        )
