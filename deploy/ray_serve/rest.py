"""The Open Inference Protocol's REST form, as the Ray Serve application speaks it: a request
checked whole against the model before it runs (`read_infer_request`), and the answer
(`infer_answer`). Anything a client could send that is not a request of the model's own tensor is
a `RequestError`: a status and one sentence, never a traceback (deep JSON, a dimension that is
`true` or has 3,000 digits, a superscript digit in a header, outputs or parameters of the wrong
shape, strings or booleans as numbers, an output the model does not give)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from toolkit.errors import ToolkitError
from toolkit.files import parse_json

DATATYPES = {"FP32": np.float32, "FP16": np.float16}  # the protocol's names of the types a model takes
HEADER_LENGTH = "Inference-Header-Content-Length"  # the binary extension: the JSON's length, the bytes after it
MAX_DIMENSION = 2**31 - 1  # a tensor's dimension (Triton's int64 dims, bounded as its int32 batch)
MAX_ID = 256  # characters of a request's "id", echoed in the answer


class RequestError(ToolkitError):
    """A request refused: (status, one sentence)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class InferRequest:
    """A checked request: its input, whether the answer's tensor goes in binary, its id."""

    array: np.ndarray
    binary_output: bool
    id: str | None


def shown(value, limit: int = 60) -> str:
    """A client's value in a message: its JSON, cut to `limit` characters (a 60,000-character
    name, or a 3,000-digit number, is not echoed whole)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(type(value).__name__)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def whole_number(text: str | None, what: str) -> int | None:
    """A header's or a query's whole number: ASCII digits only (a superscript two passes
    `str.isdigit` and fails `int`), at most 18 of them."""
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise RequestError(400, f"{what} must be a whole number, got {shown(text)}")
    return int(text)


def split_body(body: bytes, header: str | None) -> tuple[bytes, bytes]:
    """(the JSON, the binary data after it) of a request's body, by the binary extension's header."""
    split = whole_number(header, HEADER_LENGTH)
    if split is not None and split > len(body):
        raise RequestError(400, f"{HEADER_LENGTH} {split} does not fit a body of {len(body)} bytes")
    return (body, b"") if split is None else (body[:split], body[split:])


def read_infer_request(text: bytes, binary: bytes, input_name: str, input_dtype, output_name: str) -> InferRequest:
    """The request's one input tensor and what it asks of the answer, every field checked before
    the model runs (see the module docstring)."""
    document = parse_json(text, "the request", "a request", _BadRequest)
    if not isinstance(document, dict):
        raise RequestError(400, "the request must be a JSON object")
    for field in ("parameters",):
        if not isinstance(document.get(field, {}), dict):
            raise RequestError(400, f'the request\'s "{field}" must be an object, got {shown(document[field])}')
    request_id = document.get("id")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > MAX_ID):
        raise RequestError(400, f'the request\'s "id" must be a string of at most {MAX_ID} characters')
    binary_output = _outputs(document.get("outputs", []), output_name)
    tensor = _one_input(document.get("inputs"), input_name)
    array = _tensor(tensor, input_name, input_dtype, binary)
    return InferRequest(array, binary_output, request_id)


class _BadRequest(RequestError):
    def __init__(self, message: str) -> None:
        super().__init__(400, message)


def _outputs(outputs, output_name: str) -> bool:
    """Whether the answer's tensor is asked in binary; an output the model does not give, or
    outputs that are not a list of objects, refused."""
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise RequestError(400, f'the request\'s "outputs" must be a list of objects, got {shown(outputs)}')
    for output in outputs:
        name = output.get("name", output_name)
        if name != output_name:
            raise RequestError(400, f"the model gives no output {shown(name)}; it gives {output_name!r}")
        if not isinstance(output.get("parameters", {}), dict):
            raise RequestError(400, f"the parameters of output {output_name!r} must be an object")
    return bool(outputs) and (outputs[0].get("parameters") or {}).get("binary_data") is True


def _one_input(inputs, input_name: str) -> dict:
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise RequestError(400, f'the request must hold "inputs": one tensor, {input_name!r}')
    tensor = inputs[0]
    if tensor.get("name") != input_name:
        raise RequestError(400, f"the request's tensor is {shown(tensor.get('name'))}; this model takes {input_name!r}")
    if not isinstance(tensor.get("parameters", {}), dict):
        raise RequestError(400, f"the parameters of {input_name} must be an object")
    return tensor


def _tensor(tensor: dict, name: str, model_dtype, binary: bytes) -> np.ndarray:
    dtype = DATATYPES.get(tensor.get("datatype")) if isinstance(tensor.get("datatype"), str) else None
    if dtype is None or np.dtype(dtype) != model_dtype:
        wanted = next(k for k, v in DATATYPES.items() if np.dtype(v) == model_dtype)
        raise RequestError(400, f"{name} is {shown(tensor.get('datatype'))}; this model takes {wanted}")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
        type(d) is int and 0 <= d <= MAX_DIMENSION
        for d in shape  # noqa: E721 - bool is an int, and no size
    ):
        raise RequestError(400, f"the shape of {name} must be a list of sizes, got {shown(shape)}")
    array = _values(tensor, dtype, binary, name)
    if array.size != math.prod(shape):
        raise RequestError(400, f"{name} holds {array.size} values; its shape {shown(shape)} needs {math.prod(shape)}")
    if not np.isfinite(array).all():
        raise RequestError(400, f"{name} holds NaN or infinite values")
    return array.reshape(shape)


def _values(tensor: dict, dtype, binary: bytes, name: str) -> np.ndarray:
    """The tensor's values: `data` (numbers only: strings and booleans are refused, not converted),
    or the `binary_data_size` bytes after the JSON."""
    size = (tensor.get("parameters") or {}).get("binary_data_size")
    if size is None:
        data = tensor.get("data")
        try:
            values = np.asarray(data, dtype=object).ravel()
        except ValueError:  # a ragged list
            raise RequestError(400, f"the data of {name} must be a list of numbers, nested as its shape") from None
        if not isinstance(data, list) or not set(map(type, values)) <= {int, float}:
            raise RequestError(400, f"the data of {name} must be numbers (not strings, booleans or lists of lists)")
        try:
            with np.errstate(over="ignore"):  # a number past the type's range becomes inf: refused as such
                return values.astype(dtype)
        except OverflowError:
            raise RequestError(400, f"the data of {name} holds a number too large for its type") from None
    if type(size) is not int or size != len(binary) or size % np.dtype(dtype).itemsize:
        raise RequestError(
            400, f"{name}'s binary_data_size {shown(size)} does not match the {len(binary)} bytes after the JSON"
        )
    return np.frombuffer(binary, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)


def infer_answer(model: str, output_name: str, logits: np.ndarray, request: InferRequest, parameters: dict):
    """(the answer's JSON, its binary data) for `logits`: non-finite output is refused (422), as
    JSON has no number for it and no client should read it as one."""
    if not np.isfinite(logits).all():
        raise RequestError(422, "the model's output for this input is not finite (NaN or infinite): check its values")
    output = {"name": output_name, "datatype": "FP32", "shape": list(logits.shape)}
    data = np.ascontiguousarray(logits, dtype="<f4").tobytes() if request.binary_output else b""
    output |= (
        {"parameters": {"binary_data_size": len(data)}} if request.binary_output else {"data": logits.ravel().tolist()}
    )
    answer = {"model_name": model, "outputs": [output], "parameters": parameters}
    return answer | ({"id": request.id} if request.id is not None else {}), data
