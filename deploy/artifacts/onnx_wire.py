"""What an ONNX file says about itself, read straight from the protobuf wire format: its graph's
inputs and outputs, its initializers' names, element types and external data files, and its
`metadata_props`. Without the onnx package (whose import was 2.6 s of a board's 3.2 s cold start)
and without reading the weights: the reader seeks past every field it does not need, so a
ResNet-50 file is read in milliseconds.

The fields read, by number (onnx.proto): ModelProto graph 7, metadata_props 14; GraphProto
node 1, initializer 5, input 11, output 12; NodeProto input 1, name 3, op_type 4; TensorProto
dims 1, data_type 2, float_data 4, int32_data 5, name 8, raw_data 9, external_data 13,
data_location 14; ValueInfoProto name 1, type 2; TypeProto tensor_type 1; TypeProto.Tensor
elem_type 1, shape 2; TensorShapeProto dim 1; Dimension dim_value 1; StringStringEntryProto key 1,
value 2. tests/deploy/test_runtime.py checks the reader against onnx's own parser on every kind of
file the toolkit writes.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.errors import ArtifactError

from .tensors import TensorInfo

# TensorProto.DataType -> NumPy's name (as onnx.helper.tensor_dtype_to_np_dtype gives it)
ELEMENT_TYPES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "object", 9: "bool",
    10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 14: "complex64", 15: "complex128",
}  # fmt: skip
FLOAT16, EXTERNAL = 10, 1
QDQ = ("QuantizeLinear", "DequantizeLinear")
SMALL = 1 << 16  # bytes of an initializer's data read for a Q/DQ parameter (a per-channel scale: 4 a channel)


@dataclass
class OnnxFacts:
    """What `read_onnx_facts` found."""

    inputs: list[TensorInfo] = field(default_factory=list)  # the graph's inputs, initializers left out
    outputs: list[TensorInfo] = field(default_factory=list)
    initializer_types: set[int] = field(default_factory=set)  # TensorProto.DataType values
    external_data: set[str] = field(default_factory=set)  # file names the initializers are read from
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def has_fp16_weights(self) -> bool:
        return FLOAT16 in self.initializer_types


class _Wire:
    """A protobuf message in an open file: its fields between two offsets."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def fields(self, start: int, end: int):
        """(field number, value) of each field: an int for varints, (offset, length) for
        length-delimited ones; fixed-size fields are stepped over. A malformed message is an
        `ArtifactError` (the file is not ONNX, or is cut short)."""
        position = start
        while position < end:
            tag, position = self._varint(position)
            number, wire = tag >> 3, tag & 7
            if wire == 0:
                value, position = self._varint(position)
                yield number, value
            elif wire == 2:
                length, position = self._varint(position)
                if position + length > end:
                    raise ArtifactError(
                        f"{self.stream.name} is not a readable ONNX file (a field runs past its message)"
                    )
                yield number, (position, length)
                position += length
            elif wire in (1, 5):
                position += 8 if wire == 1 else 4
            else:
                raise ArtifactError(f"{self.stream.name} is not a readable ONNX file (protobuf wire type {wire})")

    def _varint(self, position: int) -> tuple[int, int]:
        self.stream.seek(position)
        value = shift = 0
        while True:
            byte = self.stream.read(1)
            if not byte or shift > 63:
                raise ArtifactError(f"{self.stream.name} is not a readable ONNX file (it ends inside a field)")
            position += 1
            value |= (byte[0] & 0x7F) << shift
            if byte[0] < 0x80:
                return value, position
            shift += 7

    def bytes(self, span: tuple[int, int]) -> bytes:
        self.stream.seek(span[0])
        return self.stream.read(span[1])

    def text(self, span: tuple[int, int]) -> str:
        return self.bytes(span).decode("utf-8", "replace")

    def entry(self, span: tuple[int, int]) -> tuple[str, str]:
        """A StringStringEntryProto's (key, value)."""
        found = {number: self.text(value) for number, value in self.fields(span[0], sum(span)) if number in (1, 2)}
        return found.get(1, ""), found.get(2, "")


def read_onnx_facts(path: Path, *, graph: bool = True) -> OnnxFacts:
    """The facts of the ONNX file at `path` (see the module docstring); only its metadata when
    `graph` is False."""
    facts = OnnxFacts()
    initializer_names: set[str] = set()
    inputs = []
    with open(path, "rb") as stream:
        wire = _Wire(stream)
        for number, value in wire.fields(0, os.fstat(stream.fileno()).st_size):
            if number == 14 and isinstance(value, tuple):
                key, text = wire.entry(value)
                facts.metadata[key] = text
            elif number == 7 and graph and isinstance(value, tuple):
                for inner, span in wire.fields(value[0], sum(value)):
                    if inner == 5 and isinstance(span, tuple):
                        initializer_names.add(_initializer(wire, span, facts))
                    elif inner in (11, 12) and isinstance(span, tuple):
                        (inputs if inner == 11 else facts.outputs).append(_value_info(wire, span))
    facts.inputs = [tensor for tensor in inputs if tensor.name not in initializer_names]
    return facts


def _initializer(wire: _Wire, span: tuple[int, int], facts: OnnxFacts) -> str:
    """A TensorProto's name; its element type and external data file go into `facts`."""
    name, location, external = "", None, False
    for number, value in wire.fields(span[0], sum(span)):
        if number == 2 and isinstance(value, int):
            facts.initializer_types.add(value)
        elif number == 8 and isinstance(value, tuple):
            name = wire.text(value)
        elif number == 13 and isinstance(value, tuple):
            key, text = wire.entry(value)
            location = text if key == "location" else location
        elif number == 14 and isinstance(value, int):
            external = value == EXTERNAL
    if external and location is not None:
        facts.external_data.add(location)
    return name


def _value_info(wire: _Wire, span: tuple[int, int]) -> TensorInfo:
    """A ValueInfoProto as a `TensorInfo` (a dimension without a value, a named one, is None)."""
    name, element, shape = "", 0, []
    for number, value in wire.fields(span[0], sum(span)):
        if number == 1 and isinstance(value, tuple):
            name = wire.text(value)
        elif number == 2 and isinstance(value, tuple):
            for kind, tensor in wire.fields(value[0], sum(value)):
                if kind == 1 and isinstance(tensor, tuple):  # TypeProto.tensor_type
                    element, shape = _tensor_type(wire, tensor)
    return TensorInfo(name, ELEMENT_TYPES.get(element, "undefined"), tuple(shape))


def _tensor_type(wire: _Wire, span: tuple[int, int]) -> tuple[int, list[int | None]]:
    element, shape = 0, []
    for number, value in wire.fields(span[0], sum(span)):
        if number == 1 and isinstance(value, int):
            element = value
        elif number == 2 and isinstance(value, tuple):
            for dim_number, dim in wire.fields(value[0], sum(value)):
                if dim_number == 1 and isinstance(dim, tuple):
                    sizes = [v for n, v in wire.fields(dim[0], sum(dim)) if n == 1 and isinstance(v, int)]
                    shape.append(sizes[0] if sizes else None)
    return element, shape


@dataclass(frozen=True)
class QdqNode:
    """A QuantizeLinear or DequantizeLinear node: its name, type and inputs (x, scale, zero point)."""

    name: str
    op_type: str
    inputs: tuple[str, ...]


@dataclass(frozen=True)
class SmallTensor:
    """An initializer a Q/DQ node reads: its element type (TensorProto.DataType) and values, as a
    tuple of numbers (None when its data is external or larger than `SMALL`)."""

    data_type: int
    values: tuple | None


def read_qdq(path: Path) -> tuple[list[QdqNode], dict[str, SmallTensor]]:
    """The Q/DQ nodes of an ONNX file's graph and the initializers they read as scale and zero
    point (not the weights they quantize), from the wire like the rest of this module."""
    nodes: list[QdqNode] = []
    spans: dict[str, tuple[int, int]] = {}
    with open(path, "rb") as stream:
        wire = _Wire(stream)
        for number, value in wire.fields(0, os.fstat(stream.fileno()).st_size):
            if number != 7 or not isinstance(value, tuple):
                continue
            for inner, span in wire.fields(value[0], sum(value)):
                if inner == 1 and isinstance(span, tuple):
                    node = _qdq_node(wire, span)
                    if node is not None:
                        nodes.append(node)
                elif inner == 5 and isinstance(span, tuple):
                    spans[_initializer_name(wire, span)] = span
        wanted = {name for node in nodes for name in node.inputs[1:3] if name}
        tensors = {name: _small_tensor(wire, spans[name]) for name in wanted if name in spans}
    return nodes, tensors


def _qdq_node(wire: _Wire, span: tuple[int, int]) -> QdqNode | None:
    name, op_type, inputs = "", "", []
    for number, value in wire.fields(span[0], sum(span)):
        if number == 4 and isinstance(value, tuple):
            op_type = wire.text(value)
        elif number == 3 and isinstance(value, tuple):
            name = wire.text(value)
        elif number == 1 and isinstance(value, tuple):
            inputs.append(wire.text(value))
    return QdqNode(name, op_type, tuple(inputs)) if op_type in QDQ else None


def _initializer_name(wire: _Wire, span: tuple[int, int]) -> str:
    return next((wire.text(v) for n, v in wire.fields(span[0], sum(span)) if n == 8 and isinstance(v, tuple)), "")


def _small_tensor(wire: _Wire, span: tuple[int, int]) -> SmallTensor:
    """A small initializer's element type and values: from raw_data (little-endian), or float_data
    (packed fixed32) or int32_data (packed varints; a float16's bits for float16)."""
    data_type, raw, floats, integers, external = 0, None, [], [], False
    for number, value in wire.fields(span[0], sum(span)):
        if number == 2 and isinstance(value, int):
            data_type = value
        elif number == 9 and isinstance(value, tuple):
            raw, external = (wire.bytes(value), external) if value[1] <= SMALL else (None, True)
        elif number == 14 and isinstance(value, int):
            external = external or value == EXTERNAL
        elif number == 4 and isinstance(value, tuple) and value[1] <= SMALL:
            data = wire.bytes(value)
            floats += struct.unpack(f"<{len(data) // 4}f", data)
        elif number == 5 and isinstance(value, tuple) and value[1] <= SMALL:
            integers += _varints(wire.bytes(value))
        elif number == 5 and isinstance(value, int):
            integers.append(value)
    if external:
        return SmallTensor(data_type, None)
    formats = {1: "f", 10: "e", 2: "B", 3: "b", 6: "i", 4: "H", 5: "h"}
    if raw is not None and data_type in formats:
        size = struct.calcsize(formats[data_type])
        return SmallTensor(data_type, struct.unpack(f"<{len(raw) // size}{formats[data_type]}", raw))
    if data_type == FLOAT16:
        return SmallTensor(data_type, tuple(struct.unpack("<e", struct.pack("<H", n & 0xFFFF))[0] for n in integers))
    return SmallTensor(data_type, tuple(floats) + tuple(n - (1 << 64) if n >> 63 else n for n in integers))


def _varints(data: bytes) -> list[int]:
    values, value, shift = [], 0, 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            values.append(value)
            value, shift = 0, 0
    return values
