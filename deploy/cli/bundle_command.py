"""`resnet-deploy bundle`: a self-contained folder for a board."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from toolkit.cli import (
    ToolkitCommand,
    options,
)

from .options import onnx_backend_options

if TYPE_CHECKING:
    pass


@click.command("bundle", cls=ToolkitCommand)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Path(file_okay=False), required=True, help="The bundle folder to write.")
@click.option(
    "--engine",
    type=click.Path(dir_okay=False),
    default=None,
    help="A prebuilt engine of this ONNX file (with its manifest).",
)
@click.option("--labels", type=click.Path(dir_okay=False), default=None, help="Class names, one per line.")
@click.option("--force", is_flag=True, help="Replace an existing folder (only once the new bundle is complete).")
@options(*onnx_backend_options("on the board: openvino for a CPU board, ONNX Runtime the fallback"))
def bundle(model, output, engine, labels, force, backend, runtime, precision) -> int:
    """Write a self-contained bundle folder for a board: model, manifest with checksums, README."""
    from ..bundle import write_bundle

    written = write_bundle(
        model, output, engine=engine, labels=labels, force=force, backend=backend or runtime, precision=precision
    )
    files = ", ".join(sorted(written.manifest["files"]))
    click.echo(f"{written.folder}: {written.info.name} ({written.info.precision}) bundle with {files}")
    build = (
        f"resnet-build {written.folder}/model.onnx; "
        if (written.manifest.get("runtime") or {}).get("backend") != "openvino" and not engine
        else ""
    )  # an OpenVINO bundle runs its ONNX file as it is; a bundle with an engine has it built
    click.echo(f"  on the board: {build}resnet-deploy predict {written.folder} IMAGE")
    return 0
