"""`resnet-deploy triton`: a model of a Triton repository, with the options of how Triton serves it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from toolkit.cli import (
    ToolkitCommand,
    option_group,
    parse_ints,
)

from ..runtimes.choices import TRITON_BACKENDS
from .options import onnx_backend_options

if TYPE_CHECKING:
    from ..triton.repository import TritonOptions


def _serving(
    triton_backend,
    max_batch,
    instances,
    preferred_batch,
    max_queue_delay_us,
    cpu,
    backend,
    runtime,
    precision,
    sla_from,
) -> TritonOptions:
    if backend == "python":  # the spelling before --triton-backend (one more release)
        click.echo("resnet-deploy: --backend python is now --triton-backend python (the old spelling goes in the "
                   "next release)", err=True)  # fmt: skip
        triton_backend, backend = triton_backend or "python", None
    from ..triton.repository import TritonOptions

    preferred = parse_ints(preferred_batch, "--preferred-batch") if preferred_batch else ()
    measured = None
    if sla_from is not None:
        if preferred_batch or click.get_current_context().get_parameter_source("max_queue_delay_us").name != "DEFAULT":
            raise click.UsageError("--sla-from sets --preferred-batch and --max-queue-delay-us: give one or the other")
        from ..triton.records import read_sla_record

        batch, max_queue_delay_us, measured = read_sla_record(sla_from)
        preferred = (batch,)
    return TritonOptions(
        max_batch_size=max_batch,
        instances=instances,
        preferred_batch=preferred,
        max_queue_delay_us=max_queue_delay_us,
        instance_kind="KIND_CPU" if cpu else None,
        triton_backend=triton_backend,
        backend=backend or runtime,
        precision=precision,
        measured=measured,
        sla_record=sla_from,
    )


serving_options = option_group(
    "serving",
    _serving,
    click.option(
        "--triton-backend",
        type=click.Choice(list(TRITON_BACKENDS)),
        default=None,
        help="Triton's backend: the file's platform (onnxruntime, tensorrt: NVIDIA's Triton container), or python: "
        "the toolkit's own runtime inside Triton, plus a NAME_images model (encoded images in, classes out); "
        "resnet-deploy serve runs those. [default: the file's platform]",
    ),
    click.option(
        "--max-batch", type=int, default=None, help="max_batch_size. [default: the engine's largest batch, or 64]"
    ),
    click.option("--instances", type=int, default=1, show_default=True, help="Model instances (per GPU)."),
    click.option("--preferred-batch", default=None, help="Preferred batch sizes of the dynamic batcher, e.g. 8,32."),
    click.option(
        "--max-queue-delay-us",
        type=int,
        default=100,
        show_default=True,
        help="How long the batcher may wait to fill a batch.",
    ),
    click.option(
        "--cpu",
        is_flag=True,
        help="Instances on the CPU (ONNX only). [default: the GPU; with --triton-backend python, the CPU where no GPU "
        "is visible]",
    ),
    *onnx_backend_options("with --triton-backend python, inside Triton: openvino on CPU instances", extra=("python",)),
    click.option(
        "--sla-from",
        type=click.Path(dir_okay=False),
        default=None,
        help="The JSON of resnet-bench MODEL --sla-p99-ms X --json: its chosen batch becomes the preferred batch "
        "size, and the budget left at that batch (budget - p99) the max queue delay.",
    ),
)


@click.command("triton", cls=ToolkitCommand)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--repository",
    type=click.Path(file_okay=False),
    required=True,
    help="Model repository folder (created if missing).",
)
@click.option("--name", default=None, help="Model name in Triton. [default: the model's name]")
@serving_options
@click.option(
    "--labels", type=click.Path(dir_okay=False), default=None, help="Class names for Triton's classification extension."
)
@click.option("--force", is_flag=True, help="Replace an existing model folder of that name.")
def triton(model, repository, name, serving, labels, force) -> int:
    """Write REPOSITORY/NAME/config.pbtxt and REPOSITORY/NAME/1/model.onnx (or model.plan); with
    --triton-backend python also REPOSITORY/NAME_images/ (see resnet-deploy serve)."""
    from ..triton.records import MARKER
    from ..triton.repository import images_model_name, write_triton_model

    target = write_triton_model(model, repository, name, serving, labels=labels, force=force)
    folders = [target] + (
        [target.with_name(images_model_name(target.name))] if serving.triton_backend == "python" else []
    )
    for folder in folders:
        click.echo(
            f"{folder}: "
            + ", ".join(
                sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MARKER)
            )
        )
    if serving.triton_backend == "python":
        click.echo(f"  serve it: resnet-deploy serve {target.parent}")
    else:
        click.echo(f"  serve it: tritonserver --model-repository {target.parent}")
    return 0
