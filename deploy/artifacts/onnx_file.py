"""What later stages need to know about a classifier's ONNX file, read without running it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import ArtifactError
from toolkit.files import input_file

from .metadata import ModelInfo
from .tensors import TensorInfo


@dataclass(frozen=True)
class OnnxSignature:
    """The input, output, precision and metadata of an ONNX classifier."""

    path: Path
    input: TensorInfo  # (N, C, H, W); N is None when the batch axis is dynamic
    output: TensorInfo  # (N, classes)
    precision: str  # the graph's arithmetic: "fp32" or "fp16"
    info: ModelInfo | None  # None for a file without resnet-export metadata

    def sha256(self) -> str:
        from toolkit.files import sha256_file

        return sha256_file(self.path)


def inspect_onnx(path: str | Path) -> OnnxSignature:
    """Names, shapes, element types, precision and metadata of a classifier's ONNX file.

    Reads the graph without its external data, so it is cheap even for large files. Raises
    `ArtifactError` for a missing or unreadable file, or one that is not a single-input,
    single-output model taking (N, C, H, W) with fixed C, H and W.
    """
    import onnx

    path = input_file(path, "ONNX file", "an ONNX file", ArtifactError)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 - protobuf raises several types on a foreign file
        first = str(error).splitlines()[0][:120] if str(error) else type(error).__name__
        raise ArtifactError(f"{path} is not a readable ONNX file ({first})") from None
    graph = proto.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ArtifactError(
            f"{path} has {len(inputs)} inputs and {len(graph.output)} outputs; a classifier has one of each"
        )

    def tensor(value) -> TensorInfo:
        elem_type = value.type.tensor_type.elem_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type).name if elem_type else "undefined"
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim)
        return TensorInfo(value.name, dtype, shape)

    inp, out = tensor(inputs[0]), tensor(graph.output[0])
    if len(inp.shape) != 4 or None in inp.shape[1:]:
        raise ArtifactError(f"{path} takes input of shape {inp.shape}; expected (N, C, H, W) with fixed C, H, W")
    props = {p.key: p.value for p in proto.metadata_props}
    info = ModelInfo.from_metadata(props, source=str(path)) if "model_name" in props else None
    has_fp16 = any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
    precision = info.precision if info is not None else ("fp16" if has_fp16 else "fp32")
    return OnnxSignature(path, inp, out, precision, info)


def read_onnx_info(path: str | Path) -> ModelInfo | None:
    """The `ModelInfo` in an ONNX file's metadata, or None when the file has none of ours."""
    return inspect_onnx(path).info
