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
from dataclasses import dataclass

import numpy as np

from toolkit.errors import ToolkitError, clip
from toolkit.optional import require

from .answers import (
    STAT_PARTS,
    AnswerError,
    RefusedError,
    check_answer,
    max_batch_size,
    signature,
    split_statistics,
)
from .http_connection import MAX_ANSWER_BYTES, REQUEST_TIMEOUT_S, HttpConnection, read_json

PROTOCOLS = ("grpc", "http")
SERVERS = ("triton", "ray")
STATISTICS_TIMEOUT_S = 5.0  # metadata and statistics: a server that takes longer is not answering
__all__ = ["STAT_PARTS", "AnswerError", "HttpConnection", "RestConnection", "ServedTarget", "TritonConnection",
           "other_protocol", "payload", "split_statistics"]  # fmt: skip


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
        return signature(metadata, max_batch_size(config))

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


def payload(datatype: str, batch: np.ndarray) -> bytes:
    """A tensor's bytes as both of Triton's protocols carry them: little-endian numbers, or for
    BYTES each element's length (4 bytes, little-endian) before it."""
    if datatype == "BYTES":
        return b"".join(len(item).to_bytes(4, "little") + bytes(item) for item in batch.ravel())
    return np.ascontiguousarray(batch).astype(batch.dtype.newbyteorder("<")).tobytes()


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
                document = read_json(data, "the answer")
                reason = str(document.get("error", reason)) if isinstance(document, dict) else reason
            except AnswerError:
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
        return signature(metadata, max_batch_size(self._get(f"/v2/models/{self.served.model}/config")))

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
