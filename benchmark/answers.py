"""What an answer of a served model must be before the load generator counts it: the model's
signature read from its metadata (`signature`), each answer's output checked against it
(`check_answer`: present, of its type and shape, every number finite), the statistics extension
(`split_statistics`), and the errors for answers that are not answers."""

from __future__ import annotations

import math

import numpy as np

from toolkit.errors import ToolkitError

STAT_PARTS = ("queue", "compute_input", "compute_infer", "compute_output")
NUMBER_TYPES = {"FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32,
                "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_}  # fmt: skip


class AnswerError(ToolkitError):
    """An answer that can't count as one: malformed, too large, late, or not the model's output."""


class RefusedError(ToolkitError):
    """The server's answer was an HTTP error status (its own refusal, not a lack of answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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
        "classes": output_classes(metadata),
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


def max_batch_size(config) -> int:
    value = config.get("max_batch_size", 0) if isinstance(config, dict) else None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise AnswerError(f"the model's config gives max_batch_size {str(value)[:40]}") from None
    if number < 0:
        raise AnswerError(f"the model's config gives max_batch_size {number}")
    return number


def output_classes(metadata: dict) -> int | None:
    """The last axis of the model's first output (its classes, for logits), where it is known."""
    outputs = metadata.get("outputs") or [{}]
    shape = outputs[0].get("shape", []) if isinstance(outputs[0], dict) else []
    shape = [d for d in shape if isinstance(d, int)] if isinstance(shape, list) else []
    return shape[-1] if shape and shape[-1] > 0 else None


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
