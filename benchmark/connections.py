"""How the load generator reaches a served model: Triton (metadata, config, statistics; over gRPC
through tritonclient, over HTTP on our own connection) with requests prepared once and sent as
bytes (gRPC, or HTTP in the binary tensor extension), and a Ray Serve application of `resnet-deploy
ray` over the same REST form.

Every answer is checked before it counts (`check_answer`): it must hold the model's output, of its
type, with a row per input row, every number finite; a Ray answer's `batch_size` must be a batch
size. Every exchange is bounded: an answer body over `MAX_ANSWER_BYTES`, or one not whole within
the exchange's timeout (the whole exchange, not each read), is a failed request; an HTTP request
is never sent twice: a kept-alive connection the server closed while idle is opened again first."""

from __future__ import annotations

import json
import math
import socket
import time
from dataclasses import dataclass

import numpy as np

from toolkit.errors import ToolkitError, clip
from toolkit.optional import require

PROTOCOLS = ("grpc", "http")
SERVERS = ("triton", "ray")
STAT_PARTS = ("queue", "compute_input", "compute_infer", "compute_output")
REQUEST_TIMEOUT_S = 60.0  # one request (a ResNet-50 batch of 64 on two cores takes ~3 s)
STATISTICS_TIMEOUT_S = 5.0  # metadata and statistics: a server that takes longer is not answering
MAX_ANSWER_BYTES = 64 << 20  # an answer larger than this is refused (ResNet-50 logits of 4096 images: 16 MB)
NUMBER_TYPES = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32,
                "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_}  # fmt: skip


class AnswerError(ToolkitError):
    """An answer that can't count as one: malformed, too large, late, or not the model's output."""


class RefusedError(ToolkitError):
    """The server's answer was an HTTP error status (its own refusal, not a lack of answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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
        if self.server == "ray" or self.protocol == "http":
            return RestConnection(self)
        return TritonConnection(self)

    def client(self):
        """(the tritonclient module, a new client) of this protocol."""
        require("tritonclient", f"load on a Triton server over {self.protocol}")
        if self.protocol == "grpc":
            import tritonclient.grpc as grpcclient

            bounded = [("grpc.max_receive_message_length", MAX_ANSWER_BYTES)]
            return grpcclient, grpcclient.InferenceServerClient(self.url, channel_args=bounded)
        import tritonclient.http as httpclient

        return httpclient, httpclient.InferenceServerClient(
            self.url, connection_timeout=STATISTICS_TIMEOUT_S, network_timeout=STATISTICS_TIMEOUT_S
        )

    @property
    def label(self) -> str:
        return f"{self.model} (ray serve)" if self.server == "ray" else f"{self.model} (triton {self.protocol})"


def signature(metadata: dict, max_batch: int) -> tuple[dict, int]:
    """(the model's first input: name, datatype, shape without the batch axis, whether it has one;
    its first output likewise; its classes) and its max batch (0: none; -1: any), from the
    protocol's metadata. A metadata document that is not the protocol's is an `AnswerError`."""
    tensors = {}
    for kind in ("inputs", "outputs"):
        listed = metadata.get(kind) if isinstance(metadata, dict) else None
        first = listed[0] if isinstance(listed, list) and listed else None
        if kind == "inputs" and first is None:
            raise AnswerError("the model's metadata lists no input")
        if first is None:
            tensors[kind] = None
            continue
        shape = _dims(first.get("shape")) if isinstance(first, dict) else None
        if not isinstance(first.get("name"), str) or not isinstance(first.get("datatype"), str) or shape is None:
            raise AnswerError(f"the model's metadata describes its {kind[:-1]} as {str(first)[:120]}")
        tensors[kind] = first | {"shape": shape}
    batching = max_batch != 0 or tensors["inputs"]["shape"][:1] == [-1]  # a leading -1: the batch axis
    cut = 1 if batching else 0
    first, output = tensors["inputs"], tensors["outputs"]
    return {
        "name": first["name"],
        "datatype": first["datatype"],
        "dims": [int(d) for d in first["shape"]][cut:],
        "batching": batching,
        "output": None
        if output is None
        else {
            "name": output["name"],
            "datatype": output["datatype"],
            "dims": [int(d) for d in output["shape"]][cut:],
            "batching": batching,
        },
        "classes": _classes(metadata),
    }, max_batch


def _dims(shape) -> list[int] | None:
    """A tensor's dimensions (-1: any size), as numbers or as the decimal strings of gRPC's JSON
    (its int64); None for anything else."""
    if not isinstance(shape, list):
        return None
    dims = []
    for d in shape:
        if isinstance(d, str) and d.lstrip("-").isdigit() and d.isascii() and len(d) < 20:
            d = int(d)
        if type(d) is not int or d < -1:
            return None
        dims.append(d)
    return dims


def check_answer(outputs: list[dict], raw: list[bytes | None], expected: dict | None, rows: int | None) -> None:
    """An `AnswerError` unless `outputs` (the REST form's list: name, datatype, shape, and `data`
    where `raw` has None) hold the expected output, of its type, shape [rows, *dims] (where known),
    its values all there and, for floating point, finite."""
    if not isinstance(outputs, list) or not outputs:
        raise AnswerError("the answer holds no output")
    name = expected["name"] if expected else None
    found = next(
        (i for i, o in enumerate(outputs) if isinstance(o, dict) and (name is None or o.get("name") == name)), None
    )
    if found is None:
        raise AnswerError(f"the answer holds no output {name!r}")
    output, data = outputs[found], raw[found]
    datatype, shape = output.get("datatype"), output.get("shape")
    if expected and expected["datatype"] != datatype:
        raise AnswerError(f"the answer's {name} is {datatype!r}, the model's is {expected['datatype']}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise AnswerError(f"the answer's {name} has shape {str(shape)[:60]}")
    if expected:
        axis = [rows if rows is not None else -1] if expected.get("batching") else []
        wanted = axis + expected["dims"]
        if len(shape) != len(wanted) or any(w >= 0 and w != d for w, d in zip(wanted, shape, strict=False)):
            raise AnswerError(f"the answer's {name} has shape {shape}; {wanted} was asked (-1: any)")
    _check_values(name or output.get("name"), datatype, shape, data, output.get("data"))


def _check_values(name, datatype: str, shape: list[int], data: bytes | None, listed) -> None:
    count = math.prod(shape)
    if datatype == "BYTES":
        return  # strings: their count is the server's to keep
    dtype = NUMBER_TYPES.get(datatype)
    if dtype is None:
        raise AnswerError(f"the answer's {name} is of type {datatype!r}, not a number type of the protocol")
    if data is not None:
        if len(data) != count * np.dtype(dtype).itemsize:
            raise AnswerError(
                f"the answer's {name} has {len(data)} bytes; its shape {shape} needs {count * np.dtype(dtype).itemsize}"
            )
        values = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"))
    else:
        try:
            values = np.asarray(
                listed, dtype=np.float64 if dtype in (np.float16, np.float32, np.float64) else np.int64
            ).ravel()
        except (TypeError, ValueError, OverflowError):
            raise AnswerError(f"the answer's {name} holds values that are not numbers") from None
        if values.size != count or (isinstance(listed, list) and not listed and count):
            raise AnswerError(f"the answer's {name} holds {values.size} values; its shape {shape} needs {count}")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise AnswerError(f"the answer's {name} holds NaN or infinite values")


class TritonConnection:
    """Triton over gRPC: its metadata, config and statistics through tritonclient; requests
    prepared once (serialized before timing) and sent as bytes on a channel of its own, so a request
    costs the client what it costs perf_analyzer; each answer parsed and checked."""

    def __init__(self, served: ServedTarget) -> None:
        self.served = served
        self.library, self.client = served.client()
        self.as_json = {"as_json": True, "client_timeout": STATISTICS_TIMEOUT_S}
        self.call = None
        self.expected: dict | None = None  # the output an answer must hold (`expect`)
        self.rows: int | None = None

    def describe(self) -> tuple[dict, int]:
        """(the model's signature, `signature`'s; its max batch, 0: none)."""
        metadata = self.client.get_model_metadata(self.served.model, **self.as_json)
        config = self.client.get_model_config(self.served.model, **self.as_json)
        config = config.get("config", config)
        return signature(metadata, _max_batch(config))

    def expect(self, output: dict | None, rows: int | None) -> None:
        """What each answer must hold: `output` (a signature's) with `rows` rows (None: any)."""
        self.expected, self.rows = output, rows

    def prepare(self, name: str, datatype: str, batch: np.ndarray):
        """One request, ready to send any number of times."""
        from tritonclient.grpc import service_pb2

        request = service_pb2.ModelInferRequest(model_name=self.served.model)
        request.inputs.add(name=name, datatype=datatype, shape=list(batch.shape))
        request.raw_input_contents.append(payload(datatype, batch))
        return request.SerializeToString()

    def send(self, prepared) -> int | None:
        from tritonclient.grpc import service_pb2

        if self.call is None:
            import grpc

            options = [
                ("grpc.max_send_message_length", 2**31 - 1),
                ("grpc.max_receive_message_length", MAX_ANSWER_BYTES),
            ]
            self.channel = grpc.insecure_channel(self.served.url, options=options)
            self.call = self.channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        try:
            answer = service_pb2.ModelInferResponse.FromString(self.call(prepared, timeout=REQUEST_TIMEOUT_S))
        except Exception as error:  # noqa: BLE001 - protobuf's DecodeError, grpc's RpcError: the reason stands
            if type(error).__name__ == "DecodeError":
                raise AnswerError("the answer is not a ModelInferResponse") from None
            raise
        outputs = [{"name": o.name, "datatype": o.datatype, "shape": list(o.shape)} for o in answer.outputs]
        raw = list(answer.raw_output_contents) + [None] * (len(outputs) - len(answer.raw_output_contents))
        check_answer(outputs, raw, self.expected, self.rows)
        return None  # Triton's statistics say how it batched

    def infer(self, name: str, datatype: str, batch: np.ndarray) -> int | None:
        return self.send(self.prepare(name, datatype, batch))

    def statistics(self) -> dict:
        found = self.client.get_inference_statistics(self.served.model, **self.as_json)
        return split_statistics(found)

    def close(self) -> None:
        """Ends the requests in flight at once (they fail: the run is over)."""
        if self.call is not None:
            self.channel.close()


def _max_batch(config) -> int:
    value = config.get("max_batch_size", 0) if isinstance(config, dict) else None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise AnswerError(f"the model's config gives max_batch_size {str(value)[:40]}") from None
    if number < 0:
        raise AnswerError(f"the model's config gives max_batch_size {number}")
    return number


def _classes(metadata: dict) -> int | None:
    """The last axis of the model's first output (its classes, for logits), where it is known."""
    outputs = metadata.get("outputs") or [{}]
    shape = outputs[0].get("shape", []) if isinstance(outputs[0], dict) else []
    shape = [d for d in shape if isinstance(d, int)] if isinstance(shape, list) else []
    return shape[-1] if shape and shape[-1] > 0 else None


def payload(datatype: str, batch: np.ndarray) -> bytes:
    """A tensor's bytes as both of Triton's protocols carry them: little-endian numbers, or for
    BYTES each element's length (4 bytes, little-endian) before it."""
    if datatype == "BYTES":
        return b"".join(len(item).to_bytes(4, "little") + bytes(item) for item in batch.ravel())
    return np.ascontiguousarray(batch).astype(batch.dtype.newbyteorder("<")).tobytes()


class _ClosedBeforeAnswer(ConnectionError):
    """The server closed the connection before any byte of an answer."""


class HttpConnection:
    """HTTP/1.1 on one kept-alive socket, requests sent as prepared bytes: what a request costs
    the client is a `sendall` and reading the answer (~25 us of CPU, against ~80 us through
    `http.client`: on two cores shared with the server, that difference is the server's). An
    exchange has one deadline for all its reads, and an answer at most `MAX_ANSWER_BYTES`."""

    def __init__(self, url: str, timeout: float = REQUEST_TIMEOUT_S) -> None:
        import urllib.parse

        address = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        self.host, self.port = address.hostname or "127.0.0.1", address.port or 80
        self.prefix = address.path.rstrip("/")
        self.timeout = self.limit = timeout
        self.socket: socket.socket | None = None
        self.buffer = bytearray()

    def request_bytes(self, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> bytes:
        lines = [f"{method} {self.prefix}{path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()] + [f"Content-Length: {len(body)}", "", ""]
        return "\r\n".join(lines).encode() + body

    def exchange(self, request: bytes, timeout: float | None = None) -> tuple[int, dict, bytes]:
        """(status, headers in lower case, body) of one prepared request, within `timeout` s (the
        connection's own by default). A kept-alive connection the server has closed while idle is
        opened again before the request is sent; a request is never sent twice (the server may
        have acted on it)."""
        self.limit = timeout or self.timeout
        deadline = time.monotonic() + self.limit
        if self.socket is not None and self._closed_by_the_server():
            self.close()
        try:
            if self.socket is None:
                self._open(deadline)
            self._send(request, deadline)
            return self._answer(deadline)
        except _ClosedBeforeAnswer:
            self.close()
            raise ConnectionError("the server closed the connection without answering") from None
        except BaseException:
            self.close()
            raise

    def _closed_by_the_server(self) -> bool:
        """Whether the idle socket has been closed by the server (or holds bytes nobody asked for)."""
        import select

        try:
            readable, _, _ = select.select([self.socket], [], [], 0)
            return bool(readable) or bool(self.buffer)  # an end of file, or bytes nobody asked for
        except (OSError, ValueError):
            return True

    def _open(self, deadline: float) -> None:
        self.socket = socket.create_connection((self.host, self.port), timeout=self._left(deadline))
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()

    def _left(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no whole answer within {self.limit:g} s")
        return left

    def _send(self, request: bytes, deadline: float) -> None:
        self.socket.settimeout(self._left(deadline))
        try:
            self.socket.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            raise _ClosedBeforeAnswer() from None

    def _receive(self, deadline: float) -> bytes:
        self.socket.settimeout(self._left(deadline))
        try:
            data = self.socket.recv(1 << 20)
        except TimeoutError:
            raise TimeoutError(f"no whole answer within {self.limit:g} s") from None
        except ConnectionResetError:
            data = b""
        return data

    def _line(self, deadline: float, first: bool = False) -> bytes:
        while (end := self.buffer.find(b"\n")) < 0:
            if len(self.buffer) > 65536:
                raise AnswerError("the answer has a header line over 64 KiB")
            data = self._receive(deadline)
            if not data:
                if first and not self.buffer:
                    raise _ClosedBeforeAnswer()
                raise AnswerError("the server closed the connection inside its answer's headers")
            self.buffer += data
        line = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        return line

    def _exactly(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size:
            data = self._receive(deadline)
            if not data:
                raise AnswerError(
                    f"the server closed the connection {size - len(self.buffer)} bytes before its answer's end"
                )
            self.buffer += data
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def _to_close(self, deadline: float) -> bytes:
        while data := self._receive(deadline):
            self.buffer += data
            if len(self.buffer) > MAX_ANSWER_BYTES:
                raise AnswerError(f"the answer is over {MAX_ANSWER_BYTES >> 20} MB")
        data, self.buffer = bytes(self.buffer), bytearray()
        return data

    def _answer(self, deadline: float) -> tuple[int, dict, bytes]:
        status = self._line(deadline, first=True).split(None, 2)
        if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or not status[1].isdigit() or len(status[1]) != 3:
            raise AnswerError("the server's answer is not HTTP/1.1")
        headers = {}
        while (line := self._line(deadline)) not in (b"\r\n", b"\n"):
            key, _, value = line.decode("latin-1").partition(":")
            headers[key.strip().lower()] = value.strip()
            if len(headers) > 100:
                raise AnswerError("the answer has over 100 headers")
        body = self._body(int(status[1]), headers, deadline)
        if headers.get("connection", "").lower() == "close":
            self.close()
        return int(status[1]), headers, body

    def _body(self, status: int, headers: dict, deadline: float) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            return self._chunked(deadline)
        length = headers.get("content-length")
        if length is not None:
            if not length.isascii() or not length.isdigit():
                raise AnswerError(f"the answer's Content-Length {length[:20]!r} is not a size")
            if int(length) > MAX_ANSWER_BYTES:
                raise AnswerError(f"the answer is {int(length):,} bytes, over {MAX_ANSWER_BYTES >> 20} MB")
            return self._exactly(int(length), deadline)
        if status < 200 or status in (204, 304):
            return b""
        body = self._to_close(deadline)  # neither length nor chunks: the body ends with the connection
        self.close()
        return body

    def _chunked(self, deadline: float) -> bytes:
        body = bytearray()
        while True:
            size = self._line(deadline).split(b";")[0].strip()
            if not size or len(size) > 16 or any(c not in b"0123456789abcdefABCDEF" for c in size):
                raise AnswerError("the answer's chunk size is not a hexadecimal size")
            if int(size, 16) == 0:
                while self._line(deadline) not in (b"\r\n", b"\n"):
                    pass
                return bytes(body)
            if len(body) + int(size, 16) > MAX_ANSWER_BYTES:
                raise AnswerError(f"the answer is over {MAX_ANSWER_BYTES >> 20} MB")
            body += self._exactly(int(size, 16) + 2, deadline)[:-2]

    def close(self) -> None:
        """Closes the socket (a request blocked on it, in another thread, ends at once)."""
        sock, self.socket = self.socket, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def read_json(data: bytes, what: str):
    """A JSON document of an answer, or an `AnswerError` (not JSON, or nested past Python's limit)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise AnswerError(f"{what} is not JSON") from None


class RestConnection:
    """The Open Inference Protocol's REST form over one kept-alive HTTP connection, tensors in
    Triton's binary extension: a Ray Serve application of `resnet-deploy ray`, or Triton's HTTP
    endpoint (with its config and statistics)."""

    def __init__(self, served: ServedTarget) -> None:
        self.served = served
        self.http = HttpConnection(served.url)
        self.expected: dict | None = None
        self.rows: int | None = None

    def _request(self, request: bytes, timeout: float | None = None) -> tuple[dict, bytes]:
        """The answer's JSON and the binary data after it (the binary extension)."""
        status, headers, data = self.http.exchange(request, timeout)
        if status != 200:
            reason = data[:200].decode(errors="replace")
            try:
                document = json.loads(data)
                reason = str(document.get("error", reason)) if isinstance(document, dict) else reason
            except (ValueError, RecursionError):
                pass
            raise RefusedError(status, f"HTTP {status}: {clip(reason) if reason.strip() else 'no reason given'}")
        split = headers.get("inference-header-content-length")
        if split is not None and (not split.isascii() or not split.isdigit() or int(split) > len(data)):
            raise AnswerError(
                f"the answer's Inference-Header-Content-Length {split[:20]!r} does not fit its {len(data)} bytes"
            )
        split = int(split) if split is not None else len(data)
        document = read_json(data[:split], "the answer")
        if not isinstance(document, dict):
            raise AnswerError("the answer is JSON but not an object")
        return document, data[split:]

    def _get(self, path: str) -> dict:
        return self._request(self.http.request_bytes("GET", path), STATISTICS_TIMEOUT_S)[0]

    def describe(self) -> tuple[dict, int]:
        metadata = self._get(f"/v2/models/{self.served.model}")
        if self.served.server == "ray":  # no config: a leading -1 is its batch axis
            return signature(
                metadata, -1 if (metadata.get("inputs") or [{}])[0].get("shape", [None])[:1] == [-1] else 0
            )
        return signature(metadata, _max_batch(self._get(f"/v2/models/{self.served.model}/config")))

    def expect(self, output: dict | None, rows: int | None) -> None:
        self.expected, self.rows = output, rows

    def prepare(self, name: str, datatype: str, batch: np.ndarray) -> bytes:
        """One request in Triton's binary tensor extension (the JSON of a ResNet-50 input alone is
        3 MB of text, more than the model's time), answers asked in binary too."""
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
        """The batch the answer says it ran in (a Ray application's answers say; Triton's don't),
        after checking the answer (`check_answer`)."""
        document, binary = self._request(prepared)
        outputs = document.get("outputs")
        raw, offset = [], 0
        for output in outputs if isinstance(outputs, list) else []:
            size = ((output.get("parameters") or {}) if isinstance(output, dict) else {}).get("binary_data_size")
            if size is None:
                raw.append(None)
                continue
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
                raise AnswerError(
                    f"the answer's binary_data_size {str(size)[:20]} does not fit its {len(binary)} bytes"
                )
            raw.append(binary[offset : offset + size])
            offset += size
        check_answer(outputs, raw, self.expected, self.rows)
        ran_in = (
            (document.get("parameters") or {}).get("batch_size")
            if isinstance(document.get("parameters"), dict)
            else None
        )
        if ran_in is not None and (
            not isinstance(ran_in, int) or isinstance(ran_in, bool) or not 1 <= ran_in <= 1 << 20
        ):
            raise AnswerError(f"the answer's batch_size {json.dumps(ran_in)[:20]} is not a batch size")
        return ran_in

    def infer(self, name: str, datatype: str, batch: np.ndarray) -> int | None:
        return self.send(self.prepare(name, datatype, batch))

    def statistics(self) -> dict:
        if self.served.server == "ray":
            return {}
        return split_statistics(self._get(f"/v2/models/{self.served.model}/stats"))

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


def split_statistics(found: dict) -> dict:
    """The model's cumulative statistics (Triton's statistics extension, as JSON over either
    protocol): request counts, inference and execution counts, and the nanoseconds spent in each
    part; an `AnswerError` for a document that is not that."""
    try:
        stats = found["model_stats"][0]
        inference = stats.get("inference_stats", {})
        parts = {part: int(inference.get(part, {}).get("ns", 0)) for part in STAT_PARTS}
        counts = {
            "success": int(inference.get("success", {}).get("count", 0)),
            "inferences": int(stats.get("inference_count", 0)),
            "executions": int(stats.get("execution_count", 0)),
        }
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        raise AnswerError("the model's statistics are not Triton's statistics extension") from None
    if any(value < 0 for value in (*parts.values(), *counts.values())):
        raise AnswerError("the model's statistics hold negative counts")
    return counts | parts
