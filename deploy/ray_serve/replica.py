"""The Ray Serve application `resnet-deploy ray` writes: `build` is its application builder
(`import_path: deploy.serving.ray_app:build`, its `args` from `serve_config.yaml`).

Each replica opens the artifact with the toolkit's own runtime (`ServedArtifact`: ONNX, INT8,
OpenVINO BF16 and engines serve what was validated) and answers, under the route prefix:

- `POST /v2/models/NAME/infer`: the Open Inference Protocol's REST form, as Triton and KServe
  accept it: `{"inputs": [{"name", "shape", "datatype", "data"}]}` with the file's own input name,
  shape and type (FP32 or FP16), `data` flat in row-major order (or nested); the answer carries the
  logits as `outputs` and, in `parameters`, the batch the request ran in (`batch_size`) and the
  replica that ran it. Triton's binary tensor extension is understood too (what `tritonclient.http`
  sends): the JSON's length in `Inference-Header-Content-Length`, the tensor's little-endian bytes
  after it (`binary_data_size`), and the logits answered so when `outputs` asks for `binary_data`;
  JSON text of a ResNet-50 input is 3 MB and costs more than the model.
- `POST /v2/models/NAME/classify[?top_k=5]`: one encoded JPEG or PNG as the body; the top-k
  classes with their probabilities and labels (the artifact's recipe, the bounded loader).
- `GET /v2/health/live`, `/v2/health/ready`, `/v2/models/NAME`, `/v2/models/NAME/ready`: health
  and the model's metadata (its tensors, as the protocol gives them).

Requests of both routes are gathered into one batch by `serve.batch` (at most `batch_requests`
inputs' requests, waiting `batch_wait_ms` for more). A bad request (not JSON, another tensor,
shape or type, an unreadable or oversized image, a body over the bound) gets a 4xx with one
sentence; the replica keeps serving.

What slow clients can't take from the others: Serve gives a request one of a replica's slots
(`max_ongoing_requests`) as soon as its headers arrive and streams the body after, so clients that
send headers and then their bodies slowly, or never, would hold the slots (Serve's own
`request_timeout_s` is no bound: a client turns it off with a header). Here a body must arrive
whole within `body_timeout_s` (408 after); and a body still arriving after `STALLED_S` is stalled:
at most `stalled_bodies` stalled bodies keep their slots (the oldest), any other is refused at
once (408), so what slow clients hold of a replica is those few slots, for a second each, and the
room the writer adds for them (`deploy.ray_serve`). Images are decoded in threads of their own
(`DECODERS` at once, 503 past `DECODE_TIMEOUT_S`), and the model runs in a worker thread: the
event loop stays free to read requests and answer health while a batch runs.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from toolkit.errors import ToolkitError

from ..shipping.served import ServedArtifact, ServingOptions
from .rest import (
    DATATYPES,
    HEADER_LENGTH,
    RequestError,
    infer_answer,
    read_infer_request,
    shown,
    split_body,
    whole_number,
)

IMAGE_BYTES = 32 << 20  # an encoded image larger than this is refused before it is read
JSON_OVERHEAD = 24  # characters of JSON per element a tensor's text may take ("-1.2345678e-05, ")
BODY_TIMEOUT_S = 30.0  # default: a request's whole body arrives within this
STALLED_S = 1.0  # a body still arriving after this long is stalled
STALLED_BODIES = 4  # default: stalled bodies that keep their slots (the oldest)
DECODERS = 2  # images decoded at once per replica (each up to preprocess.MAX_DECODED_BYTES)
DECODE_TIMEOUT_S = 30.0  # an image waits this long for its decoding, queue included


class ResNetDeployment:
    """One replica: the artifact, the routes of the module docstring."""

    def __init__(self, settings: dict) -> None:
        labels = settings.get("labels")
        requests = int(settings.get("batch_requests", settings.get("max_batch", 32)))  # max_batch: configs before
        options = ServingOptions(
            device=settings.get("device", "cpu"),
            largest_run=requests,
            backend=settings.get("backend"),
            precision=settings.get("precision", "fp32"),
        )
        self.name = settings["name"]
        self.served = ServedArtifact(settings["artifact"], options, name=self.name, labels=labels and Path(labels))
        self.served.warm_up()
        if settings.get("labels") or self.served.runtime.info is not None:
            self.served.predictor  # noqa: B018 - the recipe is read before the replica says it is ready
        self.top_k = int(settings.get("top_k", 5))
        self._batched.set_max_batch_size(requests)
        self._batched.set_batch_wait_timeout_s(float(settings.get("batch_wait_ms", 5)) / 1000)
        runtime = self.served.runtime
        self.tensor_bytes = requests * math.prod(runtime.input_shape[1:]) * JSON_OVERHEAD + 4096
        self.body_timeout_s = float(settings.get("body_timeout_s", BODY_TIMEOUT_S))
        self.stalled_bodies = int(settings.get("stalled_bodies", STALLED_BODIES))
        self.arriving: dict[int, float] = {}  # bodies arriving now: number -> when their request came
        self.numbers = itertools.count()
        self.decoders = ThreadPoolExecutor(DECODERS, thread_name_prefix="decode")
        context = serve.get_replica_context()
        self.replica = f"{context.replica_id.unique_id} on {os.environ.get('RAY_NODE_IP_ADDRESS') or _node_ip()}"

    async def __call__(self, request: Request) -> JSONResponse:
        try:
            return await self._route(request)
        except RequestError as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        except ToolkitError as error:  # the input's shape, batch, an unreadable image: the request's fault
            return JSONResponse({"error": str(error)}, status_code=400)

    async def _route(self, request: Request) -> JSONResponse:
        prefix = request.scope.get("root_path", "")
        path = request.url.path[len(prefix) :] if request.url.path.startswith(prefix) else request.url.path
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["v2", "health"] and len(parts) == 3 and parts[2] in ("live", "ready"):
            return JSONResponse({})
        if parts[:2] != ["v2", "models"] or len(parts) < 3:
            raise RequestError(
                404, f"no route {shown(path)}: this application answers /v2/models/{self.name}/infer and /classify"
            )
        if parts[2] != self.name:
            raise RequestError(404, f"no model {shown(parts[2])} here; this application serves {self.name!r}")
        action = parts[3] if len(parts) > 3 else ""
        if request.method == "GET" and action in ("", "ready"):
            return JSONResponse(self.metadata() if action == "" else {})
        if request.method == "POST" and action == "infer":
            return await self._infer(request)
        if request.method == "POST" and action == "classify":
            return await self._classify(request)
        raise RequestError(
            405 if action in ("", "ready", "infer", "classify") else 404, f"no {request.method} {shown(path)}"
        )

    def metadata(self) -> dict:
        runtime = self.served.runtime
        datatype = next(k for k, v in DATATYPES.items() if np.dtype(v) == runtime.input_dtype)
        return {
            "name": self.name,
            "platform": f"resnet-deploy-toolkit ({runtime.backend})",
            "inputs": [{"name": runtime.input_name, "datatype": datatype, "shape": _dims(runtime.input_shape)}],
            "outputs": [{"name": runtime.output_name, "datatype": "FP32", "shape": [-1, self._classes()]}],
        }

    def _classes(self) -> int:
        info = self.served.runtime.info
        return info.num_classes if info is not None else -1

    async def _body(self, request: Request, limit: int) -> bytes:
        """The request's whole body: at most `limit` bytes (413), within `body_timeout_s`, and
        refused while stalled beyond the oldest `stalled_bodies` (408; the module docstring)."""
        number, started = next(self.numbers), time.monotonic()
        self.arriving[number] = started
        reading = asyncio.ensure_future(_body(request, limit))
        try:
            while True:
                done, _ = await asyncio.wait({reading}, timeout=STALLED_S / 4)
                if done:
                    return reading.result()
                waited = time.monotonic() - started
                if waited >= self.body_timeout_s:
                    raise RequestError(408, f"the request's body did not arrive within {self.body_timeout_s:g} s")
                if waited >= STALLED_S and self._stalled_beyond_the_oldest(number):
                    raise RequestError(
                        408,
                        f"the request's body was still arriving after {waited:.1f} s while the replica's room for "
                        f"slow bodies ({self.stalled_bodies}) was taken; send it whole",
                    )
        finally:
            reading.cancel()
            del self.arriving[number]

    def _stalled_beyond_the_oldest(self, number: int) -> bool:
        """Whether body `number` is stalled and not among the oldest `stalled_bodies` stalled ones."""
        cutoff = time.monotonic() - STALLED_S
        stalled = sorted((started, n) for n, started in self.arriving.items() if started <= cutoff)
        return number not in {n for _, n in stalled[: self.stalled_bodies]}

    async def _infer(self, request: Request) -> Response:
        body = await self._body(request, self.tensor_bytes)
        text, binary = split_body(body, request.headers.get(HEADER_LENGTH))
        runtime = self.served.runtime
        asked = read_infer_request(text, binary, runtime.input_name, runtime.input_dtype, runtime.output_name)
        logits, batch_size = await self._batched(self.served.tensor(asked.array))
        parameters = {"batch_size": batch_size, "replica": self.replica}
        answer, data = infer_answer(self.name, runtime.output_name, logits, asked, parameters)
        if not asked.binary_output:
            return JSONResponse(answer)
        text = json.dumps(answer).encode()
        return Response(text + data, media_type="application/octet-stream", headers={HEADER_LENGTH: str(len(text))})

    async def _classify(self, request: Request) -> JSONResponse:
        top_k = whole_number(request.query_params.get("top_k", str(self.top_k)), "top_k")
        if top_k < 1:
            raise RequestError(400, f"top_k must be a whole number of at least 1, got {top_k}")
        body = await self._body(request, IMAGE_BYTES)
        decoding = asyncio.get_running_loop().run_in_executor(self.decoders, self.served.images, [body])
        try:
            batch = await asyncio.wait_for(decoding, DECODE_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise RequestError(503, f"the image was not decoded within {DECODE_TIMEOUT_S:g} s; try again") from None
        logits, batch_size = await self._batched(batch)
        (prediction,) = self.served.predictor.from_logits(logits, top_k)
        answer = prediction.to_dict() | {"model_name": self.name}
        answer.pop("source", None)
        return JSONResponse(answer | {"parameters": {"batch_size": batch_size, "replica": self.replica}})

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _batched(self, arrays: list[np.ndarray]) -> list[tuple[np.ndarray, int]]:
        """The requests gathered by Ray: one run of all their inputs (in a worker thread: the event
        loop reads requests meanwhile; in pieces where the runtime takes fewer), each its own part
        back with the batch size of the run its first row was in."""
        logits, sizes = await asyncio.to_thread(self.served.runs, np.concatenate(arrays))
        start, parts = 0, []
        for array in arrays:
            parts.append((logits[start : start + len(array)], int(sizes[start])))
            start += len(array)
        return parts


def build(args: dict):
    """Ray Serve's application builder: `args` are the `serve_config.yaml` application's (the
    artifact, name, labels, backend, precision, device, batch_requests, batch_wait_ms, top_k). The
    deployment's replicas, autoscaling and resources come from the config's `deployments`."""
    missing = [key for key in ("artifact", "name") if key not in args]
    if missing:
        raise ValueError(f"the application's args lack {', '.join(missing)} (see resnet-deploy ray)")
    deployment = serve.deployment(ResNetDeployment, name=args.get("deployment", "ResNet"))
    return deployment.bind(dict(args))


async def _body(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) past `limit` bytes before more is read."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"the request's body is {int(declared):,} bytes; this route takes at most {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the request's body is over {limit:,} bytes, the most this route takes")
        chunks.append(chunk)
    return b"".join(chunks)


def _dims(shape) -> list[int]:
    return [-1 if d is None else int(d) for d in shape]


def _node_ip() -> str:
    import ray

    return ray.util.get_node_ip_address()
