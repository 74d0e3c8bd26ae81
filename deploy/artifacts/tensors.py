"""`TensorInfo`: the name, element type and shape of a model's input or output, however it
was learned (an ONNX file, an engine, a runtime session); one description for every stage."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorInfo:
    """A model input or output. `shape` holds None for a dynamic axis (the batch)."""

    name: str
    dtype: str  # NumPy element type name: "float32", "float16"
    shape: tuple[int | None, ...]

    @property
    def batch(self) -> int | None:
        """The fixed batch size, or None when the batch axis is dynamic."""
        return self.shape[0]

    def __str__(self) -> str:
        dims = ", ".join("batch" if d is None else str(d) for d in self.shape)
        return f"{self.name} {self.dtype} [{dims}]"

    def to_dict(self) -> dict:
        """JSON form; a dynamic axis is -1, as TensorRT and Triton write it."""
        return {"name": self.name, "dtype": self.dtype, "shape": [-1 if d is None else d for d in self.shape]}

    @classmethod
    def from_dict(cls, data: dict) -> TensorInfo:
        shape = tuple(None if d is None or d == -1 else int(d) for d in data["shape"])
        return cls(str(data["name"]), str(data["dtype"]), shape)
