"""What an artifact says about the model inside it: the ONNX metadata written at export.

`resnet-export` writes a `ModelInfo` into the ONNX file's `metadata_props`; every later stage
(engine manifest, benchmark, Predictor, bundle, Triton) reads it back from the file, so a user
never repeats how the model was made. All values are strings, as ONNX requires; lists and
mappings are JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from resnet.model import Architecture
from resnet.spec import InputSpec

from .errors import ArtifactError

PRECISIONS = ("fp32", "fp16")
KEYS = (
    "model_name",
    "depth",
    "dataset",
    "shortcut",
    "num_classes",
    "input_height",
    "input_width",
    "input_channels",
    "resize",
    "mean",
    "std",
    "precision",
    "io_dtype",
    "architecture",
    "producer",
)


@dataclass(frozen=True)
class ModelInfo:
    """The model behind an artifact: name, architecture, input spec, precision, provenance.

    `precision` is the arithmetic of the graph ("fp32" or "fp16"); `io_dtype` the element type of
    its input and output tensors (an FP16 graph may keep FP32 I/O, casting at the edges).
    """

    name: str
    depth: int
    dataset: str
    shortcut: str
    input_spec: InputSpec
    precision: str = "fp32"
    io_dtype: str = "fp32"
    architecture: dict = field(default_factory=dict)
    producer: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return self.input_spec.num_classes

    def to_architecture(self) -> Architecture | None:
        """The `resnet.Architecture` recorded at export (None for an empty record)."""
        if not self.architecture:
            return None
        arch = self.architecture
        return Architecture(
            arch["block"], tuple(arch["layers"]), tuple(arch["widths"]), arch["stem"], self.shortcut, self.num_classes
        )

    @classmethod
    def from_model(
        cls, model, precision: str = "fp32", io_dtype: str = "fp32", producer: dict | None = None
    ) -> "ModelInfo":
        """The info of a `resnet.ResNet` about to be exported."""
        # JSON-shaped (lists, not tuples), so that an info read back from a file compares equal.
        arch = {k: list(v) if isinstance(v, tuple) else v for k, v in model.architecture.to_dict().items()}
        del arch["num_classes"]  # kept once, in the input spec
        return cls(
            name=model.name,
            depth=model.depth,
            dataset=model.dataset,
            shortcut=arch.pop("shortcut"),
            input_spec=model.input_spec,
            precision=precision,
            io_dtype=io_dtype,
            architecture=arch,
            producer=dict(producer or {}),
        )

    def to_metadata(self) -> dict[str, str]:
        spec = self.input_spec
        return {
            "model_name": self.name,
            "depth": str(self.depth),
            "dataset": self.dataset,
            "shortcut": self.shortcut,
            "num_classes": str(spec.num_classes),
            "input_height": str(spec.height),
            "input_width": str(spec.width),
            "input_channels": str(spec.channels),
            "resize": "" if spec.resize is None else str(spec.resize),
            "mean": json.dumps(list(spec.mean)),
            "std": json.dumps(list(spec.std)),
            "precision": self.precision,
            "io_dtype": self.io_dtype,
            "architecture": json.dumps(self.architecture, sort_keys=True),
            "producer": json.dumps(self.producer, sort_keys=True),
        }

    @classmethod
    def from_metadata(cls, props: dict[str, str], source: str = "the model") -> "ModelInfo":
        """Read back `to_metadata`'s output; `ArtifactError` when keys are missing or malformed."""
        missing = [k for k in KEYS if k not in props]
        if missing:
            raise ArtifactError(
                f"{source} carries no resnet-export metadata (missing {', '.join(missing[:4])}); export it with resnet-export"
            )
        try:
            spec = InputSpec(
                height=int(props["input_height"]),
                width=int(props["input_width"]),
                channels=int(props["input_channels"]),
                mean=tuple(json.loads(props["mean"])),
                std=tuple(json.loads(props["std"])),
                num_classes=int(props["num_classes"]),
                resize=int(props["resize"]) if props["resize"] else None,
            )
            return cls(
                name=props["model_name"],
                depth=int(props["depth"]),
                dataset=props["dataset"],
                shortcut=props["shortcut"],
                input_spec=spec,
                precision=props["precision"],
                io_dtype=props["io_dtype"],
                architecture=json.loads(props["architecture"]),
                producer=json.loads(props["producer"]),
            )
        except (ValueError, TypeError) as error:
            raise ArtifactError(f"{source} has malformed resnet-export metadata ({error})") from None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "depth": self.depth,
            "dataset": self.dataset,
            "shortcut": self.shortcut,
            "input_spec": self.input_spec.to_dict(),
            "precision": self.precision,
            "io_dtype": self.io_dtype,
            "architecture": self.architecture,
            "producer": self.producer,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ModelInfo":
        return cls(**{**data, "input_spec": InputSpec.from_dict(data["input_spec"])})


@dataclass
class OnnxInterface:
    """What later stages need to know about a classifier's ONNX file, read without running it."""

    path: Path
    input_name: str
    input_shape: tuple  # (N, C, H, W); N is None when the batch axis is dynamic
    input_dtype: str  # "float32" or "float16"
    output_name: str
    output_shape: tuple
    output_dtype: str
    precision: str  # the graph's arithmetic: "fp32" or "fp16"
    info: ModelInfo | None  # None for a file without resnet-export metadata

    def sha256(self) -> str:
        from .files import sha256_file

        return sha256_file(self.path)


def inspect_onnx(path: str | Path) -> OnnxInterface:
    """Names, shapes, element types, precision and metadata of a classifier's ONNX file.

    Reads the graph without its external data, so it is cheap even for large files. Raises
    `ArtifactError` for a missing or unreadable file, or one that is not a single-input,
    single-output model taking (N, C, H, W) with fixed C, H and W.
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"ONNX file {path} does not exist")
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
    element_types = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}

    def shape_of(value) -> tuple:
        return tuple(d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim)

    def dtype_of(value) -> str:
        elem_type = value.type.tensor_type.elem_type
        return element_types.get(elem_type, onnx.TensorProto.DataType.Name(elem_type).lower())

    (inp,), out = inputs, graph.output[0]
    input_shape = shape_of(inp)
    if len(input_shape) != 4 or None in input_shape[1:]:
        raise ArtifactError(f"{path} takes input of shape {input_shape}; expected (N, C, H, W) with fixed C, H, W")
    props = {p.key: p.value for p in proto.metadata_props}
    info = ModelInfo.from_metadata(props, source=str(path)) if "model_name" in props else None
    has_fp16 = any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
    precision = info.precision if info is not None else ("fp16" if has_fp16 else "fp32")
    return OnnxInterface(
        path, inp.name, input_shape, dtype_of(inp), out.name, shape_of(out), dtype_of(out), precision, info
    )


def read_onnx_info(path: str | Path) -> ModelInfo | None:
    """The `ModelInfo` in an ONNX file's metadata, or None when the file has none of ours."""
    return inspect_onnx(path).info
