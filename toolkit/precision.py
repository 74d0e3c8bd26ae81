"""The arithmetic precisions the toolkit knows, in one table.

A precision names the arithmetic of a model: of an ONNX graph (what `resnet-export` writes and
TensorRT compiles, since TensorRT 11 builds exactly the types a graph declares) or of PyTorch
(`resnet-bench --precision`). `dtype` is the NumPy element type of its tensors; `torch_dtype` the
PyTorch one; `graph` says whether `resnet-export` writes ONNX graphs of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ToolkitError

FP16_MAX = float(np.finfo(np.float16).max)  # 65504: an FP16 activation beyond it overflows


@dataclass(frozen=True)
class Precision:
    name: str  # "fp32"
    dtype: str | None  # NumPy element type: "float32"; None where NumPy has none (bf16)
    torch_dtype: str | None  # torch.<name>; None: not a precision PyTorch computes a model in here
    graph: bool  # resnet-export writes ONNX graphs of this precision


PRECISIONS = {
    p.name: p
    for p in (
        Precision("fp32", "float32", "float32", graph=True),
        Precision("fp16", "float16", "float16", graph=True),
        Precision("bf16", None, "bfloat16", graph=False),
        Precision("int8", "int8", None, graph=True),  # Q/DQ graphs; their input and output stay float
    )
}
GRAPH_PRECISIONS = tuple(name for name, p in PRECISIONS.items() if p.graph)
TORCH_PRECISIONS = tuple(name for name, p in PRECISIONS.items() if p.torch_dtype is not None)
IO_DTYPES = ("fp32", "fp16")  # element types of a graph's input and output


def check_precision(precision: str, choices: tuple[str, ...] = GRAPH_PRECISIONS, what: str = "precision") -> str:
    """`precision` when it is one of `choices`; a `ToolkitError` listing them otherwise."""
    if precision not in choices:
        raise ToolkitError(f"{what} must be one of {', '.join(choices)}, got {precision!r}")
    return precision


def numpy_dtype(precision: str) -> np.dtype:
    """The NumPy element type of a precision ("fp16" -> float16)."""
    dtype = PRECISIONS[check_precision(precision, IO_DTYPES)].dtype
    return np.dtype(dtype)
