"""How the load generator reaches a served model: Triton through tritonclient (metadata, config,
statistics) with requests prepared once and sent as bytes (gRPC, or HTTP in the binary tensor
extension), and a Ray Serve application of `resnet-deploy ray` over the same REST form."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.optional import require

PROTOCOLS = ("grpc", "http")
SERVERS = ("triton", "ray")
STAT_PARTS = ("queue", "compute_input", "compute_infer", "compute_output")
REQUEST_TIMEOUT_S = 60.0  # one request (a ResNet-50 batch of 64 on two cores takes ~3 s)
STATISTICS_TIMEOUT_S = 5.0  # metadata and statistics: a server that takes longer is not answering


@dataclass(frozen=True)
class ServedTarget:
    """A model on a server, as the load generator reaches it: Triton at host:port over `protocol`,
    or a Ray Serve application at its HTTP address (`server="ray"`)."""

    url: str
    model: str
    protocol: str = "grpc"
    server: str = "triton"

    def __post_init__(self) -> None:
        if self.server not in SERVERS:
            raise ToolkitError(f"server must be one of {', '.join(SERVERS)}, got {self.server!r}")
        if self.server == "triton" and self.protocol not in PROTOCOLS:
            raise ToolkitError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {self.protocol!r}")
        if self.server == "ray":
            object.__setattr__(self, "protocol", "http")

    def connection(self):
        """A new connection (one per client thread: none of them is thread-safe)."""
        return RestConnection(self) if self.server == "ray" else TritonConnection(self)

    def client(self):
        """(the tritonclient module, a new client) of this protocol."""
        require("tritonclient", f"load on a Triton server over {self.protocol}")
        if self.protocol == "grpc":
            import tritonclient.grpc as grpcclient

            return grpcclient, grpcclient.InferenceServerClient(self.url)
        import tritonclient.http as httpclient

        return httpclient, httpclient.InferenceServerClient(
            self.url, connection_timeout=STATISTICS_TIMEOUT_S, network_timeout=STATISTICS_TIMEOUT_S
        )

    @property
    def label(self) -> str:
        return f"{self.model} (ray serve)" if self.server == "ray" else f"{self.model} (triton {self.protocol})"


class TritonConnection:
    """Triton: its metadata, config and statistics through tritonclient; requests prepared once
    (serialized before timing) and sent as bytes, so a request costs the client what it costs
    perf_analyzer: a gRPC call on a channel of its own (one per client thread), or one HTTP POST
    in the binary tensor extension on a kept-alive connection."""

    def __init__(self, served: ServedTarget) -> None:
        self.served = served
        self.library, self.client = served.client()
        self.as_json = {"as_json": True, "client_timeout": STATISTICS_TIMEOUT_S} if served.protocol == "grpc" else {}
        self.rest = RestConnection(served) if served.protocol == "http" else None
        self.call = None

    def describe(self) -> tuple[dict, int]:
        """(the model's first input: name, datatype, shape without the batch axis; its max batch, 0: none)."""
        metadata = self.client.get_model_metadata(self.served.model, **self.as_json)
        config = self.client.get_model_config(self.served.model, **self.as_json)
        config = config.get("config", config)
        (first,) = metadata["inputs"][:1] or [None]
        if first is None:
            raise ToolkitError(f"model {self.served.model} takes no input")
        max_batch = int(config.get("max_batch_size", 0))
        dims = [int(d) for d in first["shape"]][1 if max_batch else 0 :]
        return {"name": first["name"], "datatype": first["datatype"], "dims": dims, "classes": _classes(metadata)}, (
            max_batch
        )

    def prepare(self, name: str, datatype: str, batch: np.ndarray):
        """One request, ready to send any number of times."""
        if self.rest is not None:
            return self.rest.prepare(name, datatype, batch)
        from tritonclient.grpc import service_pb2

        request = service_pb2.ModelInferRequest(model_name=self.served.model)
        request.inputs.add(name=name, datatype=datatype, shape=list(batch.shape))
        request.raw_input_contents.append(payload(datatype, batch))
        return request.SerializeToString()

    def send(self, prepared) -> int | None:
        if self.rest is not None:
            return self.rest.send(prepared)
        if self.call is None:
            import grpc

            limit = 2**31 - 1  # tritonclient's own message limit (a ResNet-50 batch of 8 is 4.8 MB)
            options = [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]
            self.channel = grpc.insecure_channel(self.served.url, options=options)
            self.call = self.channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        self.call(prepared, timeout=REQUEST_TIMEOUT_S)
        return None  # Triton's statistics say how it batched

    def infer(self, name: str, datatype: str, batch: np.ndarray) -> int | None:
        return self.send(self.prepare(name, datatype, batch))

    def statistics(self) -> dict:
        return statistics(self.served, self.client)

    def close(self) -> None:
        """Ends the requests in flight at once (they fail: the run is over)."""
        if self.rest is not None:
            self.rest.close()
        elif self.call is not None:
            self.channel.close()


def _classes(metadata: dict) -> int | None:
    """The last axis of the model's first output (its classes, for logits), where it is known."""
    outputs = metadata.get("outputs") or [{}]
    shape = [int(d) for d in outputs[0].get("shape", [])]
    return shape[-1] if shape and shape[-1] > 0 else None


def payload(datatype: str, batch: np.ndarray) -> bytes:
    """A tensor's bytes as both of Triton's protocols carry them: little-endian numbers, or for
    BYTES each element's length (4 bytes, little-endian) before it."""
    if datatype == "BYTES":
        return b"".join(len(item).to_bytes(4, "little") + bytes(item) for item in batch.ravel())
    return np.ascontiguousarray(batch).astype(batch.dtype.newbyteorder("<")).tobytes()


class HttpConnection:
    """HTTP/1.1 on one kept-alive socket, requests sent as prepared bytes: what a request costs
    the client is a `sendall` and reading the answer (~25 us of CPU, against ~80 us through
    `http.client`: on two cores shared with the server, that difference is the server's)."""

    def __init__(self, url: str, timeout: float = REQUEST_TIMEOUT_S) -> None:
        import urllib.parse

        address = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        self.host, self.port = address.hostname or "127.0.0.1", address.port or 80
        self.prefix = address.path.rstrip("/")
        self.timeout = timeout
        self.socket = self.reader = None

    def request_bytes(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> bytes:
        lines = [f"{method} {self.prefix}{path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()] + [f"Content-Length: {len(body)}", "", ""]
        return "\r\n".join(lines).encode() + body

    def exchange(self, request: bytes) -> tuple[int, dict, bytes]:
        """(status, headers in lower case, body) of one prepared request; a connection the server
        closed is opened again once."""
        for attempt in (0, 1):
            if self.socket is None:
                self._open()
            try:
                self.socket.sendall(request)
                return self._answer()
            except (ConnectionError, EOFError, ValueError):  # ValueError: closed under it
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _open(self) -> None:
        import socket

        self.socket = socket.create_connection((self.host, self.port), timeout=self.timeout)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.socket.makefile("rb")

    def _answer(self) -> tuple[int, dict, bytes]:
        status = self.reader.readline(65536).split(None, 2)
        if len(status) < 2 or not status[1].isdigit():
            raise EOFError("the server closed the connection")
        headers = {}
        while (line := self.reader.readline(65536)) not in (b"\r\n", b"\n", b""):
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b"".join(iter(self._chunk, b""))
        else:
            body = self.reader.read(int(headers.get("content-length", 0)))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return int(status[1]), headers, body

    def _chunk(self) -> bytes:
        size = int(self.reader.readline(65536).split(b";")[0], 16)
        data = self.reader.read(size + 2)[:size]
        if size == 0:
            while self.reader.readline(65536) not in (b"\r\n", b"\n", b""):
                pass
        return data

    def close(self) -> None:
        """Closes the socket (a request blocked on it, in another thread, ends at once)."""
        import socket

        sock, self.socket = self.socket, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


class RestConnection:
    """The Open Inference Protocol's REST form over one kept-alive HTTP connection, tensors in
    Triton's binary extension (a Ray Serve application of `resnet-deploy ray`; Triton's HTTP
    endpoint speaks it too)."""

    def __init__(self, served: ServedTarget) -> None:
        self.served = served
        self.http = HttpConnection(served.url)

    def _request(self, request: bytes) -> dict:
        """The answer's JSON (with the binary extension: its JSON part)."""
        import json

        status, headers, data = self.http.exchange(request)
        if status != 200:
            try:
                reason = json.loads(data).get("error", "")
            except ValueError:
                reason = data[:200].decode(errors="replace")
            raise ToolkitError(f"HTTP {status}: {reason}")
        split = int(headers.get("inference-header-content-length") or len(data))
        return json.loads(data[:split])

    def describe(self) -> tuple[dict, int]:
        metadata = self._request(self.http.request_bytes("GET", f"/v2/models/{self.served.model}"))
        (first,) = metadata.get("inputs", [])[:1] or [None]
        if first is None:
            raise ToolkitError(f"model {self.served.model} takes no input")
        shape = [int(d) for d in first["shape"]]
        batched = shape[0] == -1
        dims = shape[1:] if batched else shape
        return {"name": first["name"], "datatype": first["datatype"], "dims": dims, "classes": _classes(metadata)}, (
            -1 if batched else 0
        )

    def prepare(self, name: str, datatype: str, batch: np.ndarray) -> bytes:
        """One request in Triton's binary tensor extension (the JSON of a ResNet-50 input alone is
        3 MB of text, more than the model's time), answers asked in binary too."""
        import json

        data = payload(datatype, batch)
        tensor = {"name": name, "shape": list(batch.shape), "datatype": datatype,
                  "parameters": {"binary_data_size": len(data)}}  # fmt: skip
        document = {"inputs": [tensor]}
        if self.served.server == "ray":
            document["outputs"] = [{"parameters": {"binary_data": True}}]
        else:
            document["parameters"] = {"binary_data_output": True}
        header = json.dumps(document).encode()
        headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": len(header)}
        return self.http.request_bytes("POST", f"/v2/models/{self.served.model}/infer", header + data, headers)

    def send(self, prepared: bytes) -> int | None:
        """The batch the answer says it ran in (a Ray application's answers say; Triton's don't)."""
        return self._request(prepared).get("parameters", {}).get("batch_size")

    def infer(self, name: str, datatype: str, batch: np.ndarray) -> int | None:
        return self.send(self.prepare(name, datatype, batch))

    def statistics(self) -> dict:
        return {}

    def close(self) -> None:
        self.http.close()


def other_protocol(served: ServedTarget) -> str | None:
    """The protocol a Triton server answers at `served.url` when it is not `served.protocol`, or None."""
    if served.server != "triton":
        return None
    try:
        if served.protocol == "grpc":
            import tritonclient.http as httpclient

            return "http" if httpclient.InferenceServerClient(served.url, network_timeout=5).is_server_live() else None
        import tritonclient.grpc as grpcclient

        return "grpc" if grpcclient.InferenceServerClient(served.url).is_server_live(client_timeout=5) else None
    except Exception:  # noqa: BLE001 - no answer in the other protocol either: the first error stands
        return None


def statistics(served: ServedTarget, client) -> dict:
    """The model's cumulative statistics: request counts, inference and execution counts, and the
    nanoseconds spent in each part (Triton's statistics extension)."""
    grpc = {"as_json": True, "client_timeout": STATISTICS_TIMEOUT_S}
    found = client.get_inference_statistics(served.model, **(grpc if served.protocol == "grpc" else {}))
    stats = found["model_stats"][0]
    inference = stats.get("inference_stats", {})
    parts = {part: int(inference.get(part, {}).get("ns", 0)) for part in STAT_PARTS}
    success = int(inference.get("success", {}).get("count", 0))
    return {
        "success": success,
        "inferences": int(stats.get("inference_count", 0)),
        "executions": int(stats.get("execution_count", 0)),
        **parts,
    }
