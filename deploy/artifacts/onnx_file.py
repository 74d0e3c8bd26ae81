"""What later stages need to know about a classifier's ONNX file, read without running it."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from toolkit.errors import ArtifactError
from toolkit.files import input_file

from .metadata import ModelInfo
from .onnx_wire import read_onnx_facts
from .tensors import TensorInfo


@dataclass(frozen=True)
class OnnxSignature:
    """The input, output, precision and metadata of an ONNX classifier."""

    path: Path
    input: TensorInfo  # (N, C, H, W); N is None when the batch axis is dynamic
    output: TensorInfo  # (N, classes)
    precision: str  # the graph's arithmetic: "fp32", "fp16" or "int8" (from its metadata; else guessed)
    info: ModelInfo | None  # None for a file without resnet-export metadata
    external_data: tuple[str, ...] = ()  # the files its weights are read from, as the file names them

    def sha256(self) -> str:
        from toolkit.files import sha256_file

        return sha256_file(self.path)


def inspect_onnx(path: str | Path) -> OnnxSignature:
    """Names, shapes, element types, precision and metadata of a classifier's ONNX file.

    Read from the protobuf itself (`onnx_wire`: no onnx import, no weights read), so it is cheap
    even for large files. Raises `ArtifactError` for a missing or unreadable file, or one that is
    not a single-input, single-output model taking (N, C, H, W) with fixed C, H and W.
    """
    return read_signature(input_file(path, "ONNX file", "an ONNX file", ArtifactError))


def read_signature(path: Path) -> OnnxSignature:
    """`inspect_onnx` of a path already checked (`toolkit.files.input_file`) by the caller: a
    command checks its model's path once."""
    facts = read_onnx_facts(path)
    if not facts.inputs and not facts.outputs:
        raise ArtifactError(f"{path} is not a readable ONNX file (it has no graph)")
    guess = "fp16" if facts.has_fp16_weights else "fp32"
    signature = classifier_signature(path, facts.inputs, facts.outputs, facts.metadata, guess)
    check_quantization(path, facts)
    return replace(signature, external_data=tuple(sorted(facts.external_data)))


# What a quantization scale may be: finite, positive, and within what any calibration gives (a
# scale is the step of one integer: 1e-12 makes every value saturate, 1e6 rounds all to zero)
SCALE_RANGE = (1e-12, 1e6)
ZERO_POINT_TYPES = {2: "uint8", 3: "int8"}  # and int32 on a bias's DequantizeLinear (the value 0)


def quantization_problems(nodes, tensors) -> list[str]:
    """What is wrong with the scales and zero points of Q/DQ nodes (`onnx_wire.read_qdq`'s), each a
    phrase naming the node: a scale that is not a finite, positive number in `SCALE_RANGE`, a
    zero point of another type than int8 or uint8 (int32 0 on a bias), or one not an initializer."""
    low, high = SCALE_RANGE
    problems = []
    for node in nodes:
        scale = tensors.get(node.inputs[1]) if len(node.inputs) > 1 else None
        if scale is None:
            problems.append(f"{node.op_type} {node.name}'s scale is not a constant of the file")
        elif scale.values is not None:
            bad = [v for v in scale.values if not (math.isfinite(v) and low <= v <= high)]
            if bad or not scale.values:
                what = f"{bad[0]:g}" if bad else "nothing"
                problems.append(
                    f"{node.op_type} {node.name}'s scale {node.inputs[1]} holds {what} "
                    f"(a scale is finite, from {low:g} to {high:g})"
                )
        zero = tensors.get(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
        if len(node.inputs) > 2 and node.inputs[2] and zero is None:
            problems.append(f"{node.op_type} {node.name}'s zero point is not a constant of the file")
        elif zero is not None and zero.data_type not in ZERO_POINT_TYPES:
            bias = zero.data_type == 6 and node.op_type == "DequantizeLinear" and not any(zero.values or ())
            if not bias:
                problems.append(
                    f"{node.op_type} {node.name}'s zero point {node.inputs[2]} is not int8 or uint8 "
                    "(int32 0 only on a bias)"
                )
    return problems


def check_quantization(path: Path, facts=None) -> None:
    """Refuse an INT8 file whose Q/DQ scales or zero points could not come from a calibration
    (`quantization_problems`): a NaN, zero or 1e38 scale makes every image's logits the same,
    finite and confident, and nothing downstream would notice. Reads the Q/DQ nodes only of a
    file with 8-bit initializers (cheap otherwise)."""
    from .onnx_wire import read_qdq

    facts = facts if facts is not None else read_onnx_facts(path)
    if not facts.initializer_types & set(ZERO_POINT_TYPES):
        return
    problems = quantization_problems(*read_qdq(path))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ArtifactError(f"{path} is a damaged INT8 file: {problems[0]}{more}; quantize the model again")


def external_data_files(signature: OnnxSignature) -> list[Path]:
    """The files beside an ONNX file that hold its external weights (to copy with it), after
    checking each is a plain file name in the file's own folder: a location elsewhere (a
    subfolder, `..`, an absolute path) is `ArtifactError`, as a copied model could not find it,
    or would read a file nobody meant to ship."""
    files = []
    for location in signature.external_data:
        if not location or Path(location).name != location or location in (".", ".."):
            raise ArtifactError(
                f"{signature.path} reads weights from {location}, which is not a file beside it; "
                "save the model with its data in its own folder (onnx.save_model(..., location='NAME.data'))"
            )
        files.append(input_file(signature.path.with_name(location), "external data file", "a data file", ArtifactError))
    return files


def tensor_info(value) -> TensorInfo:
    """The `TensorInfo` of an ONNX graph input or output (a `ValueInfoProto`)."""
    import onnx

    tensor = value.type.tensor_type
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name if tensor.elem_type else "undefined"
    shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
    return TensorInfo(value.name, dtype, shape)


def classifier_signature(
    path: Path, inputs: list[TensorInfo], outputs: list[TensorInfo], metadata: dict[str, str], precision: str
) -> OnnxSignature:
    """The signature of a classifier from what a reader found in it (the file's graph, or an ONNX
    Runtime session's inputs, outputs and metadata): one input (N, C, H, W) with fixed C, H, W and
    one output, else `ArtifactError`; the resnet-export metadata when present (its precision then
    overrides `precision`, the reader's guess)."""
    if len(inputs) != 1 or len(outputs) != 1:
        raise ArtifactError(f"{path} has {len(inputs)} inputs and {len(outputs)} outputs; a classifier has one of each")
    inp, out = inputs[0], outputs[0]
    if len(inp.shape) != 4 or None in inp.shape[1:]:
        raise ArtifactError(f"{path} takes input of shape {inp.shape}; expected (N, C, H, W) with fixed C, H, W")
    info = ModelInfo.from_metadata(metadata, source=str(path)) if "model_name" in metadata else None
    return OnnxSignature(path, inp, out, info.precision if info is not None else precision, info)


def read_onnx_info(path: str | Path) -> ModelInfo | None:
    """The `ModelInfo` in an ONNX file's metadata, or None when the file has none of ours."""
    return inspect_onnx(path).info


def module_tensors(model, points: list[str]) -> dict[str, str]:
    """Module name -> the tensor of the ONNX graph `model` (a `ModelProto`) that holds its output, for
    the points (`Architecture.module_points`) the graph holds: the tensor the ONNX writer named
    after the module (Option A's shortcut: its Pad), or, in a Q/DQ file, the dequantized tensor
    after the QuantizeLinear that reads it (what the next layer reads); the graph's output for
    `fc`. A point the quantizer fused away (the "cpu" INT8 form makes a convolution and its ReLU
    one tensor, named after the ReLU) is left out."""
    graph = model.graph
    produced = {out for node in graph.node for out in node.output}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)

    def dequantized(tensor: str) -> str:
        for q in readers.get(tensor, []):
            if q.op_type == "QuantizeLinear":
                for dq in readers.get(q.output[0], []):
                    if dq.op_type == "DequantizeLinear":
                        return dq.output[0]
        return tensor

    found = {}
    for point in points:
        if point == "fc":
            found[point] = graph.output[0].name
            continue
        tensor = next((t for t in (point, f"{point}.pad") if t in produced), None)
        if tensor is not None:
            found[point] = dequantized(tensor)
    return found


def tapped_onnx(path: Path, points: list[str], folder: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the ONNX file at `path`, in `folder`, that lists the tensor of each module point it
    holds (`module_tensors`) as an extra graph output (its type from ONNX's shape inference); returns
    the copy and point -> tensor name. What every backend that runs ONNX files uses for named outputs."""
    import onnx

    model = onnx.load(str(path))
    taps = module_tensors(model, points)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    present = {o.name for o in model.graph.output}
    for tensor in dict.fromkeys(taps.values()):
        if tensor in present:
            continue
        if tensor not in types:
            raise ArtifactError(f"ONNX's shape inference gives no type for tensor {tensor} of {path.name}")
        model.graph.output.append(types[tensor])
        present.add(tensor)
    tapped = folder / f"tapped_{path.stem}.onnx"
    onnx.save(model, str(tapped))
    return tapped, taps


def metadata_props(path: str | Path) -> dict[str, str]:
    """An ONNX file's `metadata_props` (what resnet-export records: the model, its input spec,
    precision, quantization), without reading its graph."""
    path = input_file(path, "ONNX file", "an ONNX file", ArtifactError)
    return read_onnx_facts(path, graph=False).metadata
