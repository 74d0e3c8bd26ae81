"""The model zoo on the command line: `python -m resnet` (every registered model, its size and
cost), and the option group every command uses to name a registered model (`model_options`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import click

from toolkit.cli import ToolkitCommand, option_group, parse_floats, parse_size
from toolkit.numbers import Number

from .architecture import SHORTCUT_KINDS
from .registry import CIFAR_MODELS, DATASETS, IMAGENET_MODELS, ModelOptions, create, registered_models
from .spec import DATASET_INPUTS

_DEPTHS = f"ImageNet {', '.join(map(str, IMAGENET_MODELS))}; CIFAR {', '.join(map(str, CIFAR_MODELS))}."


def model_options(
    *, depth_required: bool, depth_help: str = "", note: str = "", export: bool = False, name: str = "model"
) -> Callable:
    """`--depth`, `--dataset`, `--shortcut`, `--num-classes`: a registered model, given to the
    command as one value named `name`, a `ModelOptions` (None when `--depth` is not given).

    `depth_help` opens the help of --depth; `note` ends the help of the other three (e.g. "With
    --depth."). `export` adds what resnet-export builds the model with: `--weights` (a
    checkpoint) and `--input-size`, `--mean`, `--std`, which change the dataset's input spec (the
    file records them).
    """
    suffix = f" {note}" if note else ""
    group = [
        click.option("--depth", type=int, required=depth_required, help=" ".join(filter(None, [depth_help, _DEPTHS]))),
        click.option(
            "--dataset", type=click.Choice(list(DATASETS)), default="imagenet", show_default=True, help=note or None
        ),
        click.option(
            "--shortcut",
            type=click.Choice(list(SHORTCUT_KINDS)),
            default=None,
            help="Option A (slice + zero pad) or B (1x1 projection). [default: B for ImageNet, A for CIFAR]" + suffix,
        ),
        click.option(
            "--num-classes",
            type=Number(integer=True, limit="classes"),
            default=None,
            help="[default: the dataset's]" + suffix,
        ),
    ]
    if export:
        group += [
            click.option(
                "--weights",
                type=click.Path(dir_okay=False),
                default=None,
                help="Checkpoint file to load (state_dict, DataParallel or torch.compile layouts).",
            ),
            click.option(
                "--input-size", default=None, help="Input resolution, 224 or HEIGHTxWIDTH. [default: the dataset's]"
            ),
            click.option(
                "--mean", default=None, help="Normalisation mean R,G,B recorded in the file. [default: the dataset's]"
            ),
            click.option(
                "--std", default=None, help="Normalisation std R,G,B recorded in the file. [default: the dataset's]"
            ),
            click.option(
                "--seed",
                type=Number(integer=True, low=0, high=2**32 - 1),
                default=0,
                show_default=True,
                help="Seed of the random weights (without --weights): the same seed, the same network in every run.",
            ),
        ]
    return option_group(name, _model, *group)


def _model(
    depth, dataset, shortcut, num_classes, weights=None, input_size=None, mean=None, std=None, seed=0
) -> ModelOptions | None:
    """The `ModelOptions` the options name (None without --depth)."""
    spec = None
    if input_size or mean or std:
        spec = DATASET_INPUTS[dataset]
        if input_size:
            spec = spec.with_size(*parse_size(input_size))
        spec = replace(
            spec,
            mean=parse_floats(mean, 3, "--mean") if mean else spec.mean,
            std=parse_floats(std, 3, "--std") if std else spec.std,
        )
    if depth is None:
        return None
    return ModelOptions(depth, dataset, shortcut, num_classes, Path(weights) if weights else None, spec, seed)


@click.command("python -m resnet", cls=ToolkitCommand)
def main() -> None:
    """Build every registered model and print its size and cost (parameters, GMACs at its input size)."""
    from .summary import summarize

    header = f"{'model':<18} {'depth':>5} {'shortcut':>8} {'parameters':>12} {'GMACs':>8} {'input':>16} {'output':>10} {'build s':>8}"
    click.echo(header)
    click.echo("-" * len(header))
    for depth, dataset in registered_models():
        start = time.perf_counter()
        model = create(depth, dataset)
        summary = summarize(model)
        elapsed = time.perf_counter() - start
        click.echo(
            f"{summary.name:<18} {summary.depth:>5} {summary.shortcut:>8} {summary.parameters:>12,} "
            f"{summary.macs / 1e9:>8.3f} {'x'.join(map(str, summary.input_shape)):>16} "
            f"{'x'.join(map(str, summary.output_shape)):>10} {elapsed:>8.2f}"
        )
