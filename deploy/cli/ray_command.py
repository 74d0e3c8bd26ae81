"""`resnet-deploy ray`: a Ray Serve application of a model (`deploy.ray_serve`)."""

from __future__ import annotations

import click

from toolkit.cli import ToolkitCommand, option_group
from toolkit.numbers import Number

from ..runtimes.choices import ONNX_BACKENDS, OPENVINO_PRECISIONS
from .options import port


def _renamed_max_batch(ctx, param, value):
    """`--max-batch N`, the spelling before `--batch-requests N` (one more release): said, then taken as it."""
    if value is not None:
        click.echo(
            "resnet-deploy: ray's --max-batch is now --batch-requests (the old spelling goes in the next release)",
            err=True,
        )
    return value


def _ray_options(
    min_replicas,
    max_replicas,
    target_ongoing_requests,
    upscale_delay_s,
    downscale_delay_s,
    look_back_s,
    batch_requests,
    max_batch,
    batch_wait_ms,
    body_timeout_s,
    stalled_bodies,
    cpus_per_replica,
    gpus_per_replica,
    backend,
    precision,
    http_host,
    http_port,
    proxy_location,
):
    from ..ray_serve.writer import RayOptions

    return RayOptions(
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_ongoing_requests=target_ongoing_requests,
        upscale_delay_s=upscale_delay_s,
        downscale_delay_s=downscale_delay_s,
        look_back_s=look_back_s,
        batch_requests=max_batch if max_batch is not None else batch_requests,
        batch_wait_ms=batch_wait_ms,
        body_timeout_s=body_timeout_s,
        stalled_bodies=stalled_bodies,
        cpus_per_replica=cpus_per_replica,
        gpus_per_replica=gpus_per_replica,
        backend=backend,
        precision=precision,
        http_host=http_host,
        http_port=http_port,
        proxy_location=proxy_location,
    )


ray_options = option_group(
    "ray_options",
    _ray_options,
    click.option("--min-replicas", type=Number(integer=True, low=0, high=10_000), default=1, show_default=True),
    click.option("--max-replicas", type=Number(integer=True, low=1, high=10_000), default=2, show_default=True),
    click.option(
        "--target-ongoing-requests",
        type=Number(low=0, low_open=True, high=10_000),
        default=2,
        show_default=True,
        help="Requests in flight per replica the autoscaler aims at.",
    ),
    click.option(
        "--upscale-delay-s", type=Number(limit="seconds"), default=30, show_default=True, help="Ray's default."
    ),
    click.option(
        "--downscale-delay-s", type=Number(limit="seconds"), default=600, show_default=True, help="Ray's default."
    ),
    click.option(
        "--look-back-s",
        type=Number(low=1, limit="seconds"),
        default=30,
        show_default=True,
        help="Ray's default: the window ongoing requests are averaged over. Replicas report every 10 s unless "
        "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S says otherwise on the nodes; a window below that sees "
        "too few reports.",
    ),
    click.option(
        "--batch-requests",
        type=Number(integer=True, low=1, high=4096),
        default=32,
        show_default=True,
        help="Requests a replica gathers into one run (serve.batch's max_batch_size; more rows than its runtime "
        "takes run in pieces).",
    ),
    click.option(
        "--max-batch",
        type=Number(integer=True, low=1, high=4096),
        default=None,
        hidden=True,
        callback=_renamed_max_batch,
    ),  # fmt: skip
    click.option(
        "--batch-wait-ms",
        type=Number(low=0, high=60_000),
        default=5,
        show_default=True,
        help="How long it waits for more.",
    ),
    click.option(
        "--body-timeout-s",
        type=Number(low=0.1, high=3600),
        default=30,
        show_default=True,
        help="A request's whole body must arrive within this (408 after), so a slow client can't hold a replica.",
    ),
    click.option(
        "--stalled-bodies",
        type=Number(integer=True, low=0, high=10_000),
        default=4,
        show_default=True,
        help="Request bodies still arriving after 1 s that may keep their replica slot (the oldest); any other "
        "is refused at once (408), so slow clients can't hold a replica.",
    ),
    click.option("--cpus-per-replica", type=Number(low=0, high=1024), default=1, show_default=True),
    click.option(
        "--gpus-per-replica",
        type=Number(low=0, high=64),
        default=0,
        show_default=True,
        help="Above 0: replicas run on CUDA.",
    ),
    click.option(
        "--backend",
        type=click.Choice(list(ONNX_BACKENDS)),
        default=None,
        help="What runs an ONNX file in each replica. [default: ONNX Runtime]",
    ),
    click.option(
        "--precision",
        type=click.Choice(list(OPENVINO_PRECISIONS)),
        default="fp32",
        show_default=True,
        help="With --backend openvino: its arithmetic.",
    ),
    click.option(
        "--http-host",
        default="127.0.0.1",
        show_default=True,
        help="Where Serve's HTTP proxy listens (0.0.0.0: every interface).",
    ),
    click.option("--http-port", type=port, default=8000, show_default=True),
    click.option(
        "--proxy-location",
        type=click.Choice(["EveryNode", "HeadOnly", "Disabled"]),
        default="EveryNode",
        show_default=True,
        help="HeadOnly where several nodes share one host (their proxies would want one port).",
    ),
)


@click.command("ray", cls=ToolkitCommand)
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--app-dir", type=click.Path(file_okay=False), required=True, help="The application folder to write.")
@click.option("--name", default=None, help="The application's and model's name. [default: the model's name]")
@ray_options
@click.option("--labels", type=click.Path(dir_okay=False), default=None, help="Class names, one per line.")
@click.option("--force", is_flag=True, help="Replace an application folder this command wrote.")
def ray(model, app_dir, name, ray_options, labels, force) -> int:
    """Write a Ray Serve application of MODEL (an ONNX file or an engine) into APP_DIR.

    \b
    resnet-deploy ray resnet50.onnx --app-dir rn50-ray --max-replicas 4
    serve deploy rn50-ray/serve_config.yaml --address http://HEAD:8265

    APP_DIR gets the artifact, serve_config.yaml (serve deploy), app.py (serve run app:app),
    rayservice.yaml (KubeRay) with its Dockerfile, and a README. Each replica runs the toolkit's own
    runtime on the artifact, gathers requests with serve.batch, and answers the Open Inference
    Protocol's REST form at /v2/models/NAME/infer and one encoded image at /v2/models/NAME/classify.
    """
    from ..ray_serve.writer import CONFIG_NAME, write_ray_app

    folder = write_ray_app(model, app_dir, name, ray_options, labels=labels, force=force)
    click.echo(f"{folder}: " + ", ".join(sorted(p.name for p in folder.iterdir() if p.is_file())))
    click.echo(
        f"  deploy it: serve deploy {folder / CONFIG_NAME} --address http://HEAD:8265  (or: cd {folder}; serve run app:app)"
    )
    return 0
