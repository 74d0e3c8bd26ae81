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
@click.option(
    "--wheels",
    type=click.Choice(["aarch64", "x86_64"]),
    default=None,
    help="Carry the board's install: the toolkit's and its runtime's wheels for this machine, hash-pinned, so the "
    "board installs with no network.",
)
@click.option("--python", "python", default=None, help="With --wheels: the board's Python, 3.N. [default: this one's]")
@options(*onnx_backend_options("on the board: openvino for a CPU board, ONNX Runtime the fallback"))
def bundle(model, output, engine, labels, force, wheels, python, backend, runtime, precision) -> int:
    """Write a self-contained bundle folder for a board: model, manifest with checksums, README.

    \b
    resnet-deploy bundle digits_int8.onnx -o pi-bundle --wheels aarch64     # a Raspberry Pi, offline
    resnet-deploy bundle resnet50_fp16.onnx -o jetson-bundle                # a Jetson: build the engine there
    """
    from ..bundle import write_bundle
    from ..bundle.writer import for_gpu

    written = write_bundle(model, output, engine=engine, labels=labels, force=force, backend=backend or runtime,
                           precision=precision, wheels=wheels, python=python)  # fmt: skip
    files = ", ".join(sorted(written.manifest["files"]))
    house = written.manifest.get("wheelhouse")
    wheelhouse = f"; wheels/ for {house['platform']}, Python {house['python']}" if house else ""
    click.echo(f"{written.folder}: {written.info.name} ({written.info.precision}) bundle with {files}{wheelhouse}")
    build = f"resnet-build {written.folder}/model.onnx; " if for_gpu(written.info, bool(engine)) and not engine else ""
    install = "pip install --no-index --find-links wheels --require-hashes -r board-requirements.txt; " if house else ""
    click.echo(f"  on the board: {install}{build}resnet-deploy predict {written.folder} IMAGE")
    return 0
