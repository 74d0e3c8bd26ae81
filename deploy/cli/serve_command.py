"""`resnet-deploy serve`: a real Triton server on a repository (the one nvidia-pytriton ships)."""

from __future__ import annotations

import contextlib
import signal
import sys
from typing import TYPE_CHECKING

import click

from toolkit.cli import (
    ToolkitCommand,
)
from toolkit.numbers import Number

from .options import port

if TYPE_CHECKING:
    from ..triton.server import TritonServer


@click.command("serve", cls=ToolkitCommand)
@click.argument("repository", type=click.Path(file_okay=False))
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; any other than loopback (0.0.0.0: every interface) opens the models to the network.",
)
@click.option("--http-port", type=port, default=8000, show_default=True)
@click.option(
    "--no-http",
    is_flag=True,
    help="Serve over gRPC only: Triton's HTTP/JSON endpoint, where the requests found to crash Triton 2.51 come "
    "in, stays closed.",
)
@click.option("--grpc-port", type=port, default=8001, show_default=True)
@click.option("--metrics-port", type=port, default=8002, show_default=True)
@click.option(
    "--timeout",
    type=Number(low=1, high=3600),
    default=120,
    show_default=True,
    help="Seconds to wait for every model to load.",
)
@click.option(
    "--restarts",
    type=Number(low=0, high=1000, integer=True),
    default=3,
    show_default=True,
    help="How many times to start the server again when it dies, hangs or a model's process dies (each said, "
    "with the reason); then exit 1.",
)
@click.option(
    "--hang-timeout",
    type=Number(low=0, high=3600),
    default=30,
    show_default=True,
    help="Seconds the server may answer no health check (every second, over HTTP or gRPC) before it is taken "
    "for hung, killed and started again; 0: never asked.",
)
@click.option(
    "--open-admin-apis",
    is_flag=True,
    help="Open Triton's model repository API (load and unload models, with any config and code, run as this "
    "user), shared-memory API (the server reads and writes /dev/shm regions by name), logging and trace APIs to "
    "every client; without it they are closed to all (serve loads the models at start).",
)
def serve(
    repository, host, http_port, no_http, grpc_port, metrics_port, timeout, restarts, hang_timeout, open_admin_apis
) -> int:
    """Serve REPOSITORY (written with resnet-deploy triton --triton-backend python) with a real Triton server.

    \b
    resnet-deploy triton resnet50.onnx --repository models --triton-backend python
    resnet-deploy serve models

    The server is the one nvidia-pytriton ships (tritonserver with its Python backend; pip install
    '.[serve]', Linux x86-64): it runs in this Python environment, which must hold this toolkit.
    It waits until every model is ready, prints the endpoints, and stops the server, its model
    processes and all, on Ctrl-C, SIGTERM or SIGHUP; if this process is killed, the server dies
    with it. When the server dies on its own, a model's process dies, or the server answers no
    health check for --hang-timeout seconds (it is then killed), it is started again, up to
    --restarts times, each time said with the reason. Triton's model repository, shared-memory,
    logging and trace APIs are closed to every request unless --open-admin-apis. Exit status: 0
    stopped so, 1 the restarts are spent, 2 it could not start (a port in use, a model it can't
    load, ...).
    """
    from ..triton.server import Endpoints, TritonServer

    if no_http and click.get_current_context().get_parameter_source("http_port").name != "DEFAULT":
        raise click.UsageError("--no-http closes the HTTP endpoint: give no --http-port")
    endpoints = Endpoints(host, None if no_http else http_port, grpc_port, metrics_port)
    server = TritonServer(repository, endpoints, timeout=timeout, open_admin=open_admin_apis)
    try:
        models = server.start()
        click.echo(format_serving(server, models))
        sys.stdout.flush()
        for restart in range(1, int(restarts) + 2):
            reason = server.watch(hang_timeout=float(hang_timeout))
            if restart > restarts:
                click.echo(f"resnet-deploy: {reason}; no restart left (--restarts {restarts}): stopping", err=True)
                return 1
            click.echo(f"resnet-deploy: {reason}; starting it again ({restart} of {restarts})", err=True)
            server.stop()
            models = server.start()
            click.echo(f"resnet-deploy: serving again: {', '.join(models)} (ready)", err=True)
        return 1
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP (toolkit.launch raises those as Terminated)
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
            f"  http        {endpoints.http if endpoints.http_port is not None else 'closed (--no-http)'}",
            f"  grpc        {endpoints.grpc}",
            f"  metrics     {endpoints.metrics}",
            f"  models      {', '.join(models)} (ready)",
            *_open_to_the_network(endpoints.host),
            *(
                [
                    "  admin       open: clients may load and unload models (any code, run as this user) and register shared memory"
                ]
                if server.open_admin
                else []
            ),
            "  stop it with Ctrl-C",
        ]
    )


def _open_to_the_network(host: str) -> list[str]:
    import ipaddress

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    where = "every interface" if host in ("0.0.0.0", "::", "") else host
    return [] if loopback else [f"  open        listening on {where}: the models answer anyone who can reach it"]


@contextlib.contextmanager
def signals_ignored():
    """SIGINT, SIGTERM and SIGHUP ignored for the block (the main thread's handlers are put back after)."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
