"""The engine manifest: `NAME.plan.json` beside every engine `resnet-build` writes.

A TensorRT engine is compiled for one GPU architecture and one TensorRT release; run anywhere
else it fails, or deserializes and misbehaves. The manifest records where and how the engine was
built, what it takes and returns, and the model inside (copied from the ONNX metadata), so the
runtime can refuse a foreign engine with a sentence instead of a crash, and the benchmark,
Predictor and Triton writer never ask how it was made.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from toolkit.errors import ArtifactError
from toolkit.files import parse_json, read_small_text, write_text_atomic

from .metadata import ModelInfo
from .tensors import TensorInfo

MANIFEST_FORMAT = "resnet-engine-manifest/1"


@dataclass(frozen=True)
class BatchRange:
    """The batch sizes an engine was built for (TensorRT's optimization profile of the batch axis):
    it accepts min <= batch <= max and is tuned for opt."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ArtifactError(
                f"a batch range must satisfy 1 <= min <= opt <= max, got min {self.min}, opt {self.opt}, max {self.max}"
            )

    def __str__(self) -> str:
        return f"min {self.min}, opt {self.opt}, max {self.max}"


@dataclass(frozen=True)
class EngineEnvironment:
    """What an engine depends on: the TensorRT release and the GPU it runs on."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "9.0"
    cuda_version: str = ""  # CUDA runtime (as torch reports it)
    driver_version: str = ""

    def describe(self) -> str:
        return f"{self.gpu_name} (compute capability {self.compute_capability}) with TensorRT {self.tensorrt_version}"


@dataclass
class EngineManifest:
    engine_file: str
    engine_sha256: str
    environment: EngineEnvironment
    precision: str  # the graph's: "fp32", "fp16" or "int8"
    tf32: bool
    batches: BatchRange  # the batch sizes it was built for (TensorRT's optimization profile of the batch axis)
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    model: ModelInfo | None
    source_onnx: dict  # {"file", "sha256"}
    build: dict = field(default_factory=dict)  # seconds, workspace, opt level, timing cache, flags, toolkit version
    format: str = MANIFEST_FORMAT

    @property
    def version_compatible(self) -> bool:
        """Built with `--version-compatible`: it runs on this TensorRT release and later ones."""
        return "VERSION_COMPATIBLE" in self.build.get("flags", [])

    @property
    def carries_lean_runtime(self) -> bool:
        """A version-compatible engine that holds its own lean runtime (host code the loader must
        be allowed to run: `Runtime.engine_host_code_allowed`), i.e. not built `--exclude-lean-runtime`."""
        return self.version_compatible and "EXCLUDE_LEAN_RUNTIME" not in self.build.get("flags", [])

    def to_dict(self) -> dict:
        data = asdict(self)
        data["inputs"] = [t.to_dict() for t in self.inputs]
        data["outputs"] = [t.to_dict() for t in self.outputs]
        data["model"] = None if self.model is None else self.model.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> EngineManifest:
        return cls(
            engine_file=data["engine_file"],
            engine_sha256=data["engine_sha256"],
            environment=EngineEnvironment(**data["environment"]),
            precision=data["precision"],
            tf32=data["tf32"],
            batches=BatchRange(**data.get("batches", data.get("profile"))),  # "profile" before 0.2
            inputs=[TensorInfo.from_dict(t) for t in data["inputs"]],
            outputs=[TensorInfo.from_dict(t) for t in data["outputs"]],
            model=None if data.get("model") is None else ModelInfo.from_dict(data["model"]),
            source_onnx=data["source_onnx"],
            build=data.get("build", {}),
            format=data.get("format", MANIFEST_FORMAT),
        )


def manifest_path(engine_path: str | Path) -> Path:
    """`model.plan` -> `model.plan.json`."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def write_manifest(manifest: EngineManifest, engine_path: str | Path) -> Path:
    return write_text_atomic(manifest_path(engine_path), json.dumps(manifest.to_dict(), indent=2) + "\n")


def read_manifest(engine_path: str | Path) -> EngineManifest | None:
    """The manifest beside an engine, or None when there is none (an engine from trtexec)."""
    path = manifest_path(engine_path)
    if not path.is_file():
        return None
    try:
        data = parse_json(read_small_text(path, "engine manifest", "an engine manifest", ArtifactError), str(path),
                          "an engine manifest", ArtifactError)  # fmt: skip
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {MANIFEST_FORMAT!r}")
        return EngineManifest.from_dict(data)
    except (ValueError, KeyError, TypeError) as error:
        raise ArtifactError(f"engine manifest {path} is not readable ({error})") from None


def check_compatible(manifest: EngineManifest, here: EngineEnvironment, engine_path: str | Path) -> list[str]:
    """Refuse an engine built for another TensorRT release or GPU architecture.

    Raises `ArtifactError` (one sentence that says to rebuild here) when the TensorRT version or
    the compute capability differs; returns warnings for softer differences (another GPU model of
    the same architecture runs the engine, but its tactics were timed elsewhere).
    """
    built = manifest.environment
    source = manifest.source_onnx.get("file") or "the ONNX file"
    problems = []
    later = manifest.version_compatible and _release(here.tensorrt_version) >= _release(built.tensorrt_version)
    if built.tensorrt_version != here.tensorrt_version and not later:
        problems.append(
            f"TensorRT {built.tensorrt_version}"
            + (" (version-compatible: it runs on that release and later ones)" if manifest.version_compatible else "")
            + f", this machine has {here.tensorrt_version}"
        )
    if built.compute_capability != here.compute_capability:
        problems.append(
            f"compute capability {built.compute_capability} ({built.gpu_name}), this GPU is {here.compute_capability} ({here.gpu_name})"
        )
    if problems:
        raise ArtifactError(
            f"engine {Path(engine_path).name} was built for {' and '.join(problems)}; engines are tied to both, "
            f"so rebuild it on this machine: resnet-build {source}"
        )
    warnings = []
    if built.tensorrt_version != here.tensorrt_version:
        warnings.append(
            f"engine {Path(engine_path).name} was built --version-compatible with TensorRT {built.tensorrt_version} and "
            f"runs on {here.tensorrt_version}; version-compatible engines can be slower: rebuild here for speed"
        )
    if built.gpu_name != here.gpu_name:
        warnings.append(
            f"engine {Path(engine_path).name} was built on {built.gpu_name} and runs on {here.gpu_name}; "
            "same architecture, but rebuild here for the fastest tactics"
        )
    return warnings


def _release(version: str) -> tuple[int, ...]:
    """ "11.4.0.106" -> (11, 4, 0, 106), for ordering releases."""
    return tuple(int(part) for part in version.split(".") if part.isdigit())
