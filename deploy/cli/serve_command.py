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
    from ..serving import TritonServer


@click.command("serve", cls=ToolkitCommand)
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
    from ..serving import Endpoints, TritonServer

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
