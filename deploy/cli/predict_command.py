"""`resnet-deploy predict`: the top classes of images, with what the first prediction cost."""

from __future__ import annotations

import json

import click

from toolkit.cli import ToolkitCommand
from toolkit.numbers import Number

from ..predictor import Prediction, Predictor, UnreadableImage
from .options import backend_options


@click.command("predict", cls=ToolkitCommand)
@click.argument("model", type=click.Path())
@click.argument("images", nargs=-1, required=True)
@click.option("--top-k", type=Number(integer=True, limit="top-k"), default=5, show_default=True)
@click.option(
    "--labels", type=click.Path(dir_okay=False), default=None, help="Class names, one per line. [default: the bundle's]"
)
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Print the predictions as JSON (with the cold start's figures).")
@click.option(
    "--verbose", is_flag=True, help="Also say what the first prediction cost: import, open (the session), first run."
)
def predict(model, images, top_k, labels, backend, device, precision, as_json, verbose) -> int:
    """Top-k classes of each IMAGE, from an ONNX file, an engine, a checkpoint or a bundle folder.

    An image that can't be read is reported by name; the others still get their predictions,
    and the exit status is 1. Bad arguments (a missing model, a bad bundle) exit 2.
    """
    with Predictor(model, backend=backend, device=device, labels=labels, precision=precision) as predictor:
        results = predictor.predict_each(images, top_k=top_k)
        backend_description = predictor.backend
    failed = [r for r in results if isinstance(r, UnreadableImage)]
    cold_start = cold_start_figures(predictor)
    if as_json:
        data = {"backend": backend_description, "cold_start": cold_start, "predictions": [r.to_dict() for r in results]}
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(f"# {backend_description}")
        if verbose:
            click.echo(
                "# cold start: "
                + ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v * 1e3:.1f} ms" for k, v in cold_start.items())
            )
        for result in results:
            click.echo(f"{printable(result.source)}: {format_prediction(result)}")
    if failed:
        click.echo(f"resnet-deploy: {len(failed)} of {len(results)} images could not be read", err=True)
        return 1
    return 0


def cold_start_figures(predictor: Predictor) -> dict[str, float]:
    """Seconds before the first prediction: importing the command (after Python's own start; known
    when run through the installed command), opening the model, and its first run."""
    from toolkit import launch

    imported = {"import_s": launch.IMPORTED} if launch.IMPORTED is not None else {}
    return imported | predictor.cold_start


def printable(name: str) -> str:
    """A name as one line of output: quoted (Python's repr) when it holds a newline or another
    character that isn't printable, so that it can't pass for lines of its own."""
    return name if name.isprintable() else repr(name)


def format_prediction(result: Prediction | UnreadableImage) -> str:
    """`name [index] score, ...` best first, or `error: why` for an image that could not be read."""
    if isinstance(result, UnreadableImage):
        return f"error: {' '.join(result.error.split())}"
    names = result.labels or [""] * len(result.indices)
    return ", ".join(
        f"{name + ' ' if name else ''}[{index}] {score:.3f}"
        for name, index, score in zip(names, result.indices, result.scores, strict=True)
    )
