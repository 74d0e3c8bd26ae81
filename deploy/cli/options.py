"""Options the commands of `resnet-deploy` and `resnet-eval` share: what runs a model, on what, in what arithmetic."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from toolkit.cli import (
    options,
)
from toolkit.numbers import Number
from toolkit.precision import TORCH_PRECISIONS

from ..runtimes.choices import BACKEND_CHOICES, DEVICES, ONNX_BACKENDS, OPENVINO_PRECISIONS

if TYPE_CHECKING:
    pass

backend_options = options(
    click.option(
        "--backend",
        type=click.Choice(list(BACKEND_CHOICES)),
        default=None,
        help="Force a backend (openvino: an ONNX file in OpenVINO on the CPU; auto: chosen by the rule in "
        "docs/benchmark.md; a bundle runs in onnxruntime, openvino, tensorrt or auto). [default: the file's (.plan "
        "TensorRT, .onnx ONNX Runtime, .pth PyTorch); a bundle's engine when TensorRT and a compatible GPU are here, "
        "else the runtime it names, else its ONNX file in ONNX Runtime]",
    ),
    click.option(
        "--precision",
        type=click.Choice(list(TORCH_PRECISIONS)),
        default=None,
        help="Arithmetic where the backend chooses it: OpenVINO fp32 or bf16 (always set: never its silent BF16 "
        "default), PyTorch fp32, fp16 or bf16. [default: fp32, or what a bundle names]",
    ),
    click.option(
        "--device",
        type=click.Choice(list(DEVICES)),
        default=None,
        help="ONNX Runtime or PyTorch device. [default: cuda when it can run there]",
    ),
)


def _deprecated_runtime(ctx, param, value):
    """`--runtime X`, the spelling before `--backend X` (one more release): said, then taken as it."""
    if value is not None:
        click.echo("resnet-deploy: --runtime is now --backend (the old spelling goes in the next release)", err=True)
    return value


def onnx_backend_options(where: str, extra: tuple[str, ...] = ()) -> list:
    """`--backend` (what runs an ONNX file, `where`; `extra`: more choices the command takes) and
    `--precision` (OpenVINO's arithmetic), their choices from the runtimes' tables; `--runtime`, the
    old spelling of `--backend`, for one more release."""
    return [
        click.option(
            "--backend",
            type=click.Choice([*ONNX_BACKENDS, *extra]),
            default=None,
            help=f"What runs the ONNX file {where}. [default: ONNX Runtime]",
        ),
        click.option(
            "--runtime",
            type=click.Choice(list(ONNX_BACKENDS)),
            default=None,
            hidden=True,
            callback=_deprecated_runtime,
            expose_value=True,
        ),  # fmt: skip
        click.option(
            "--precision",
            type=click.Choice(list(OPENVINO_PRECISIONS)),
            default="fp32",
            show_default=True,
            help="With --backend openvino: its arithmetic (bf16 on CPUs with AVX512_BF16 or AMX).",
        ),
    ]


port = Number(integer=True, low=1, high=65535)
