"""`resnet-deploy` (predictions on images, deployment bundles, Triton model repositories) and
`resnet-eval` (accuracy on a folder of labelled images). Each command parses its options, calls
one library function (`Predictor.predict_each`, `write_bundle`, `write_triton_model`,
`evaluate_model`) and prints what it returns."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from typing import TYPE_CHECKING

import click

from resnet.cli import model_options
from toolkit.cli import (
    ProgressBar,
    ToolkitCommand,
    ToolkitGroup,
    json_option,
    option_group,
    options,
    parse_ints,
    write_json,
)
from toolkit.files import check_outputs
from toolkit.numbers import Number, shown_apart
from toolkit.precision import TORCH_PRECISIONS

from .predictor import Prediction, Predictor, UnreadableImage
from .runtimes.choices import ALTERNATIVES, BACKEND_CHOICES, DEVICES, OPENVINO_PRECISIONS, TRITON_BACKENDS

if TYPE_CHECKING:
    from .evaluate import Evaluation
    from .serving import TritonServer
    from .triton import TritonOptions

# Each command imports what it runs (bundles, Triton, the server, evaluation) when it runs, so that
# `resnet-deploy predict`, a board's cold start, loads only the Predictor.


@click.group("resnet-deploy", cls=ToolkitGroup)
def main() -> None:
    """Run exported models on images, package them for a board, or serve them with Triton.

    \b
    resnet-deploy predict resnet50.onnx cat.jpg dog.png
    resnet-deploy bundle resnet50_fp16.onnx -o rn50-bundle --labels imagenet.txt
    resnet-deploy triton resnet50.onnx --repository models --name resnet50 --max-batch 64
    resnet-deploy triton resnet50.onnx --repository served --triton-backend python && resnet-deploy serve served
    """


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


@main.command("predict")
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
                + ", ".join(f"{k.removesuffix('_s').replace('_', ' ')} {v:.3f} s" for k, v in cold_start.items())
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
            type=click.Choice(["onnxruntime", *ALTERNATIVES["onnxruntime"], *extra]),
            default=None,
            help=f"What runs the ONNX file {where}. [default: ONNX Runtime]",
        ),
        click.option(
            "--runtime",
            type=click.Choice(["onnxruntime", *ALTERNATIVES["onnxruntime"]]),
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


@main.command("bundle")
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
    from .bundle import write_bundle

    written = write_bundle(
        model, output, engine=engine, labels=labels, force=force, backend=backend or runtime, precision=precision
    )
    files = ", ".join(sorted(written.manifest["files"]))
    click.echo(f"{written.folder}: {written.info.name} ({written.info.precision}) bundle with {files}")
    click.echo(
        f"  on the board: resnet-build {written.folder}/model.onnx; resnet-deploy predict {written.folder} IMAGE"
    )
    return 0


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
    from .triton import TritonOptions

    preferred = parse_ints(preferred_batch, "--preferred-batch") if preferred_batch else ()
    if sla_from is not None:
        if preferred_batch or click.get_current_context().get_parameter_source("max_queue_delay_us").name != "DEFAULT":
            raise click.UsageError("--sla-from sets --preferred-batch and --max-queue-delay-us: give one or the other")
        from .triton import read_sla_record

        batch, max_queue_delay_us = read_sla_record(sla_from)
        preferred = (batch,)
    return TritonOptions(
        max_batch=max_batch,
        instances=instances,
        preferred_batch=preferred,
        max_queue_delay_us=max_queue_delay_us,
        instance_kind="KIND_CPU" if cpu else None,
        triton_backend=triton_backend,
        backend=backend or runtime,
        precision=precision,
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


@main.command("triton")
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
    from .triton import images_model_name, write_triton_model

    target = write_triton_model(model, repository, name, serving, labels=labels, force=force)
    folders = [target] + (
        [target.with_name(images_model_name(target.name))] if serving.triton_backend == "python" else []
    )
    for folder in folders:
        click.echo(
            f"{folder}: " + ", ".join(sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()))
        )
    if serving.triton_backend == "python":
        click.echo(f"  serve it: resnet-deploy serve {target.parent}")
    else:
        click.echo(f"  serve it: tritonserver --model-repository {target.parent}")
    return 0


port = Number(integer=True, low=1, high=65535)


@main.command("serve")
@click.argument("repository", type=click.Path(file_okay=False))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; any other than loopback (0.0.0.0: every interface) opens the models to the network.",
)
@click.option("--http-port", type=port, default=8000, show_default=True)
@click.option("--grpc-port", type=port, default=8001, show_default=True)
@click.option("--metrics-port", type=port, default=8002, show_default=True)
@click.option(
    "--timeout",
    type=Number(low=1, high=3600),
    default=120,
    show_default=True,
    help="Seconds to wait for every model to load.",
)
def serve(repository, host, http_port, grpc_port, metrics_port, timeout) -> int:
    """Serve REPOSITORY (written with resnet-deploy triton --triton-backend python) with a real Triton server.

    \b
    resnet-deploy triton resnet50.onnx --repository models --triton-backend python
    resnet-deploy serve models

    The server is the one nvidia-pytriton ships (tritonserver with its Python backend; pip install
    '.[serve]', Linux x86-64): it runs in this Python environment, which must hold this toolkit.
    It waits until every model is ready, prints the endpoints, and stops the server, its model
    processes and all, on Ctrl-C or SIGTERM. Exit status: 0 stopped so, 1 the server stopped on
    its own, 2 it could not start (a port in use, a model it can't load, ...).
    """
    from .serving import Endpoints, TritonServer

    server = TritonServer(repository, Endpoints(host, http_port, grpc_port, metrics_port), timeout=timeout)
    try:
        models = server.start()
        click.echo(format_serving(server, models))
        sys.stdout.flush()
        status = server.wait()
        click.echo(
            f"resnet-deploy: the Triton server stopped on its own (exit status {status}): {server.errors()}", err=True
        )
        return 1
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (toolkit.launch raises it as Terminated)
        click.echo("resnet-deploy: stopping the Triton server", err=True)
        return 0
    finally:
        with signals_ignored():  # a second Ctrl-C must not leave the server half-stopped
            server.stop()


def format_serving(server: TritonServer, models: list[str]) -> str:
    endpoints = server.endpoints
    return "\n".join(
        [
            f"serving {server.repository} with Triton (nvidia-pytriton's tritonserver, Python backend)",
            f"  http        {endpoints.http}",
            f"  grpc        {endpoints.grpc}",
            f"  metrics     {endpoints.metrics}",
            f"  models      {', '.join(models)} (ready)",
            "  stop it with Ctrl-C",
        ]
    )


@contextlib.contextmanager
def signals_ignored():
    """SIGINT and SIGTERM ignored for the block (the main thread's handlers are put back after)."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@click.command("resnet-eval", cls=ToolkitCommand)
@click.argument("model", type=click.Path())
@click.argument("data", type=click.Path())
@click.option(
    "--reference",
    type=click.Path(),
    default=None,
    help="A second model run on the same images (the FP32 file, or the checkpoint): top-1 agreement and "
    "the largest probability difference.",
)
@click.option(
    "--batch",
    type=Number(integer=True, limit="batch"),
    default=64,
    show_default=True,
    help="Images preprocessed and run together.",
)
@click.option(
    "--labels",
    type=click.Path(dir_okay=False),
    default=None,
    help="Class names, one per line; class folders named after them map to their indices. [default: the "
    "bundle's; else folders in sorted order, as torchvision numbers them]",
)
@backend_options
@model_options(
    depth_required=False,
    depth_help="For a .pth checkpoint that doesn't record its model:",
    note="With --depth.",
    name="architecture",
)
@click.option(
    "--min-top1",
    type=Number(low=0, high=1),
    default=None,
    help="Exit with status 1 when top-1 accuracy is below this fraction (for CI pipelines).",
)
@json_option("the evaluation")
def eval_main(
    model, data, reference, batch, labels, backend, device, precision, architecture, min_top1, json_path
) -> int:
    """Top-1 and top-5 accuracy of MODEL on DATA, an ImageFolder tree (DATA/<class>/<image>).

    \b
    resnet-eval resnet20_digits_int8.onnx heldout/ --reference resnet20_digits.onnx
    resnet-eval rn50.pth imagenet-val/ --depth 50 --labels imagenet.txt --min-top1 0.75
    resnet-eval digits.onnx heldout/ --backend openvino --precision bf16 --reference digits.onnx

    MODEL is an ONNX file, an engine, a bundle folder or a .pth checkpoint (its architecture is read
    from its keys, or given with --depth). Images go through the model's own preprocessing; one
    that can't be read is counted and named, never fatal. Exit status: 0, 1 below --min-top1,
    2 bad input.
    """
    check_outputs(json_path, inputs=[model, data, reference, labels])
    quiet = json_path == "-"
    bar = ProgressBar(enabled=not quiet)
    from .evaluate import evaluate_model

    report = evaluate_model(
        model,
        data,
        reference=reference,
        batch=batch,
        labels=labels,
        backend=backend,
        device=device,
        precision=precision,
        architecture=architecture,
        progress=lambda done, total: bar(f"{done}/{total} images", done / total) if total > 1000 else None,
    )
    if json_path:
        write_json(json_path, report.to_dict())
    if not quiet:
        click.echo(format_evaluation(report))
    for skipped in report.unreadable:
        click.echo(f"resnet-eval: skipped {skipped['error']}", err=True)
    if min_top1 is not None and report.top1 < min_top1:
        top1, limit = shown_apart(report.top1, min_top1, percent=True)
        click.echo(f"resnet-eval: top-1 {top1} is below --min-top1 {limit}", err=True)
        return 1
    return 0


def format_evaluation(report: Evaluation) -> str:
    lines = [
        f"{report.model} on {report.data}: {report.images} images, {report.classes} classes"
        + (f" ({len(report.unreadable)} unreadable, skipped)" if report.unreadable else ""),
        f"  backend     {report.backend}",
        f"  top-1       {report.top1:.2%}",
        f"  top-{report.k}       {report.topk:.2%}",
    ]
    if report.int8_path is not None:
        lines.append(f"  int8 path   {report.int8_path}")
    if report.reference is not None:
        lines.append(
            f"  reference   {report.reference}: top-1 {report.reference_top1:.2%}; agreement {report.top1_agreement:.2%}, "
            f"largest probability difference {report.max_probability_difference:.4f}"
        )
    lines.append(f"  time        {report.seconds:.1f}s ({report.images / max(report.seconds, 1e-9):,.0f} images/s)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
