"""What an artifact says about the model inside it: the ONNX metadata written at export.

`resnet-export` writes a `ModelInfo` into the ONNX file's `metadata_props`; every later stage
(engine manifest, benchmark, Predictor, bundle, Triton) reads it back from the file, so a user
never repeats how the model was made. All values are strings, as ONNX requires; lists and
mappings are JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from resnet.architecture import Architecture
from resnet.spec import InputSpec
from toolkit.errors import ArtifactError

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
    """The model behind an artifact: name, dataset, architecture, input spec, precision, provenance.

    `precision` is the arithmetic of the model (one of `toolkit.precision.PRECISIONS`: "fp32",
    "fp16", "int8", ...); `io_dtype` the element type of its input and output tensors (an FP16
    graph may keep FP32 I/O, casting at the edges). `architecture` rebuilds the network
    (`resnet.ResNet.from_architecture`); the name alone omits the shortcut and the class count.
    """

    name: str
    dataset: str
    architecture: Architecture
    input_spec: InputSpec
    precision: str = "fp32"
    io_dtype: str = "fp32"
    producer: dict = field(default_factory=dict)
    quantization: dict = field(default_factory=dict)  # INT8: target, calibration method, images, their hash

    def __post_init__(self) -> None:
        if self.architecture.num_classes != self.input_spec.num_classes:
            raise ArtifactError(
                f"{self.name}'s architecture has {self.architecture.num_classes} classes and its input spec "
                f"{self.input_spec.num_classes}"
            )

    @property
    def depth(self) -> int:
        return self.architecture.depth

    @property
    def shortcut(self) -> str:
        return self.architecture.shortcut

    @property
    def num_classes(self) -> int:
        return self.input_spec.num_classes

    @classmethod
    def from_model(
        cls, model, precision: str = "fp32", io_dtype: str = "fp32", producer: dict | None = None
    ) -> ModelInfo:
        """The info of a `resnet.ResNet` about to be exported."""
        return cls(
            name=model.name,
            dataset=model.dataset,
            architecture=model.architecture,
            input_spec=model.input_spec,
            precision=precision,
            io_dtype=io_dtype,
            producer=dict(producer or {}),
        )

    def to_metadata(self) -> dict[str, str]:
        """The `metadata_props` of an ONNX file: strings, lists and mappings as JSON."""
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
            "architecture": json.dumps(_architecture_record(self.architecture), sort_keys=True),
            "producer": json.dumps(self.producer, sort_keys=True),
        } | ({"quantization": json.dumps(self.quantization, sort_keys=True)} if self.quantization else {})

    @classmethod
    def from_metadata(cls, props: dict[str, str], source: str = "the model") -> ModelInfo:
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
            architecture = _read_architecture(json.loads(props["architecture"]), props["shortcut"], spec.num_classes)
            _check_depth(int(props["depth"]), architecture)
            return cls(
                name=props["model_name"],
                dataset=props["dataset"],
                architecture=architecture,
                input_spec=spec,
                precision=props["precision"],
                io_dtype=props["io_dtype"],
                producer=json.loads(props["producer"]),
                quantization=json.loads(props.get("quantization") or "{}"),
            )
        except (ValueError, TypeError, KeyError) as error:
            raise ArtifactError(f"{source} has malformed resnet-export metadata ({error})") from None

    def to_dict(self) -> dict:
        """JSON form (engine and bundle manifests, reports): the architecture record as in the
        metadata, with the shortcut and class count beside it."""
        return {
            "name": self.name,
            "depth": self.depth,
            "dataset": self.dataset,
            "shortcut": self.shortcut,
            "input_spec": self.input_spec.to_dict(),
            "precision": self.precision,
            "io_dtype": self.io_dtype,
            "architecture": _architecture_record(self.architecture),
            "producer": self.producer,
            "quantization": self.quantization,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ModelInfo:
        spec = InputSpec.from_dict(data["input_spec"])
        architecture = _read_architecture(data["architecture"], data["shortcut"], spec.num_classes)
        _check_depth(data["depth"], architecture)
        return cls(
            name=data["name"],
            dataset=data["dataset"],
            architecture=architecture,
            input_spec=spec,
            precision=data.get("precision", "fp32"),
            io_dtype=data.get("io_dtype", "fp32"),
            producer=data.get("producer", {}),
            quantization=data.get("quantization", {}),
        )


def _architecture_record(architecture: Architecture) -> dict:
    """The architecture as files record it: block, layers, widths, stem (lists, JSON-shaped);
    the shortcut and the class count are recorded once, beside it."""
    return {
        "block": architecture.block,
        "layers": list(architecture.layers),
        "widths": list(architecture.widths),
        "stem": architecture.stem,
    }


def _read_architecture(record: dict, shortcut: str, num_classes: int) -> Architecture:
    return Architecture(
        record["block"], tuple(record["layers"]), tuple(record["widths"]), record["stem"], shortcut, num_classes
    )


def _check_depth(depth: int, architecture: Architecture) -> None:
    """The recorded depth is the architecture's (a record that contradicts itself is malformed)."""
    if depth != architecture.depth:
        raise ValueError(f"depth {depth} disagrees with its architecture, which has depth {architecture.depth}")
