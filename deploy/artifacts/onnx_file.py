"""What later stages need to know about a classifier's ONNX file, read without running it."""

from __future__ import annotations

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
    path = input_file(path, "ONNX file", "an ONNX file", ArtifactError)
    facts = read_onnx_facts(path)
    if not facts.inputs and not facts.outputs:
        raise ArtifactError(f"{path} is not a readable ONNX file (it has no graph)")
    guess = "fp16" if facts.has_fp16_weights else "fp32"
    signature = classifier_signature(path, facts.inputs, facts.outputs, facts.metadata, guess)
    return replace(signature, external_data=tuple(sorted(facts.external_data)))


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
