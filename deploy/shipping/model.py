"""What every deployment target ships, read and checked once: the model file as a target serves
it (`ShippedModel`, `read_shipped_model`: an ONNX file with its external weights, or an engine
with its manifest), the names a target may give it (`check_model_name`), and the artifact copied
into a target's folder (`copy_artifact`). Triton's repositories, Ray Serve's applications and the
targets to come (ExecuTorch, LiteRT) start here; no target imports another."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import ArtifactError, ToolkitError
from toolkit.files import input_file, read_json_file

from ..artifacts.manifest import BatchRange, read_manifest
from ..artifacts.metadata import ModelInfo
from ..artifacts.onnx_file import external_data_files, read_signature
from ..artifacts.tensors import TensorInfo
from ..runtimes.open import backend_of

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ShippedModel:
    """What a target needs to know of a model file, read once: its platform (Triton's words for
    the two kinds: `onnxruntime_onnx`, `tensorrt_plan`), input and output, an engine's batch
    range, the model's metadata (for its name) and an ONNX file's external weights."""

    path: Path
    platform: str  # "onnxruntime_onnx" or "tensorrt_plan"
    input: TensorInfo
    output: TensorInfo
    batches: BatchRange | None  # an engine's
    info: ModelInfo | None
    data_files: tuple[Path, ...] = ()  # an ONNX file's external weights, copied beside it

    @property
    def default_name(self) -> str:
        """The model's name from its metadata (ONNX) or manifest (engine), else the file's stem."""
        return self.info.name if self.info is not None else self.path.stem


def read_shipped_model(path: str | Path) -> ShippedModel:
    """An ONNX file or a TensorRT engine (with its manifest), as a target will serve it (the path
    is checked here, once for the whole command)."""
    path = input_file(path, "model", "a model file (.onnx, .plan, .engine)", ArtifactError)
    backend = backend_of(path)
    if backend == "tensorrt":
        manifest = read_manifest(path)
        if manifest is None:
            raise ArtifactError(f"engine {path} has no manifest ({path.name}.json); build it with resnet-build")
        (inp,), (out,) = manifest.inputs, manifest.outputs
        return ShippedModel(path, "tensorrt_plan", inp, out, manifest.batches, manifest.model)
    if backend == "onnxruntime":
        signature = read_signature(path)  # the path was checked above
        data = tuple(external_data_files(signature))
        return ShippedModel(path, "onnxruntime_onnx", signature.input, signature.output, None, signature.info, data)
    raise ToolkitError(
        f"{path.name} is a PyTorch checkpoint; Triton serves the ONNX file or engine made from it (resnet-export)"
    )


MAX_NAME_BYTES = 200  # a folder name (255 bytes on Linux) with room for "_images"


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ToolkitError(
            f"model name {name!r} must be letters, digits, '_', '.' or '-' (no slashes or spaces), starting with a letter or digit"
        )
    if len(name.encode()) > MAX_NAME_BYTES:
        raise ToolkitError(
            f"model name {name[:20]}... is {len(name)} characters; a model name is at most {MAX_NAME_BYTES}"
        )
    return name


def artifact_name(model: ShippedModel) -> str:
    return "model.plan" if model.platform == "tensorrt_plan" else "model.onnx"


def copy_artifact(served: ShippedModel, folder: Path, *, with_manifest: bool = True) -> Path:
    """The artifact into `folder` as `model.onnx` (with its external data, named as the file
    names it) or `model.plan` (with its manifest, renamed to match, where the toolkit's runtime
    will open it and check it); its path there."""
    artifact = folder / artifact_name(served)
    shutil.copyfile(served.path, artifact)
    for data in served.data_files:  # the model names its external data by file name
        shutil.copyfile(data, folder / data.name)
    if served.platform == "tensorrt_plan" and with_manifest:
        manifest = read_json_file(f"{served.path}.json", "engine manifest", "an engine manifest", ArtifactError)
        (folder / f"{artifact.name}.json").write_text(json.dumps({**manifest, "engine_file": artifact.name}, indent=2))
    return artifact
