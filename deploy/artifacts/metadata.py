"""What an artifact says about the model inside it: the ONNX metadata written at export.

`resnet-export` writes a `ModelInfo` into the ONNX file's `metadata_props`; every later stage
(engine manifest, benchmark, Predictor, bundle, Triton) reads it back from the file, so a user
never repeats how the model was made. All values are strings, as ONNX requires; lists and
mappings are JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from resnet.model import Architecture
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
    """The model behind an artifact: name, architecture, input spec, precision, provenance.

    `precision` is the arithmetic of the model (one of `toolkit.precision.PRECISIONS`: "fp32",
    "fp16", ...); `io_dtype` the element type of its input and output tensors (an FP16 graph
    may keep FP32 I/O, casting at the edges).
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
    quantization: dict = field(default_factory=dict)  # INT8: target, calibration method, images, their hash

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
    ) -> ModelInfo:
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
                quantization=json.loads(props.get("quantization") or "{}"),
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
            "quantization": self.quantization,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ModelInfo:
        return cls(**{**data, "input_spec": InputSpec.from_dict(data["input_spec"])})
