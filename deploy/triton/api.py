"""Triton's own APIs that change a server, closed wherever the toolkit starts or describes one
(`resnet-deploy serve`'s server, the Kubernetes Deployment of `resnet-deploy kubernetes`).

Triton's model repository API loads a model with any config and any `model.py` (which a Python
backend runs as the server's user), its shared-memory API makes the server read and write
regions by name, its logging API raises the log level (every request logged, on the server's
disk) and its trace API traces requests. A server that loads its models at start needs none of
them. Triton 2.51 can restrict an API only to requests that carry a header whose name and value
are on its command line, which every local user reads in /proc/PID/cmdline (and anyone who may
read a Deployment, in its spec). So the header's name here is one that no request can carry: an
HTTP/1.1 header line ends at a line feed (Triton's HTTP server closes the connection on one), and
gRPC refuses an upper-case letter or a line feed in a metadata key (its client before sending; its
server resets a raw HTTP/2 request that carries one). Measured on tritonserver 2.51 with raw
sockets and a raw HTTP/2 client (docs/deploy.md).
"""

from __future__ import annotations

import secrets

ADMIN_APIS = ("model-repository", "shared-memory", "logging", "trace")
CLOSED_HEADER = "Closed\nby-resnet-deploy"


def closed_api_arguments(value: str | None = None) -> list[str]:
    """tritonserver's arguments that close ADMIN_APIS over HTTP and gRPC to every request. The
    value is of no use without the header's name; random unless given (a manifest's stays fixed)."""
    value = value or secrets.token_hex(16)
    rule = f"{','.join(ADMIN_APIS)}:{CLOSED_HEADER}={value}"
    return [f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}"]
