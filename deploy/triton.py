"""Triton model repositories: serving beyond one machine.

    REPOSITORY/NAME/config.pbtxt
    REPOSITORY/NAME/1/model.onnx      (platform onnxruntime_onnx)   or   1/model.plan (tensorrt_plan)
    REPOSITORY/NAME/labels.txt        optional: Triton's classification extension uses it

The config is derived from the model file: platform, input and output names, data types and
dims (without the batch axis), `max_batch_size` (no larger than an engine's profile maximum),
dynamic batching and instance groups.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from resnet.errors import ToolkitError

from .artifact import inspect_onnx
from .errors import ArtifactError
from .files import staging_folder
from .manifest import read_manifest

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}
DEFAULT_MAX_BATCH = 64


@dataclass
class TritonModel:
    """What config.pbtxt says, as data."""

    name: str
    platform: str
    max_batch_size: int
    input_name: str
    input_type: str
    input_dims: list[int]
    output_name: str
    output_type: str
    output_dims: list[int]
    instances: int = 1
    kind: str = "KIND_GPU"
    preferred_batch_sizes: list[int] = field(default_factory=list)
    max_queue_delay_us: int = 100
    labels: bool = False

    def to_pbtxt(self) -> str:
        lines = [
            f'name: "{self.name}"',
            f'platform: "{self.platform}"',
            f"max_batch_size: {self.max_batch_size}",
            "input [",
            "  {",
            f'    name: "{self.input_name}"',
            f"    data_type: {self.input_type}",
            f"    dims: [ {', '.join(map(str, self.input_dims))} ]",
            "  }",
            "]",
            "output [",
            "  {",
            f'    name: "{self.output_name}"',
            f"    data_type: {self.output_type}",
            f"    dims: [ {', '.join(map(str, self.output_dims))} ]",
        ]
        if self.labels:
            lines.append('    label_filename: "labels.txt"')
        lines += ["  }", "]"]
        if self.max_batch_size > 0:
            lines.append("dynamic_batching {")
            if self.preferred_batch_sizes:
                lines.append(f"  preferred_batch_size: [ {', '.join(map(str, self.preferred_batch_sizes))} ]")
            lines.append(f"  max_queue_delay_microseconds: {self.max_queue_delay_us}")
            lines.append("}")
        lines += ["instance_group [", "  {", f"    count: {self.instances}", f"    kind: {self.kind}", "  }", "]"]
        return "\n".join(lines) + "\n"


def default_model_name(model: str | Path) -> str:
    """The model's name from its metadata (ONNX) or manifest (engine), else the file's stem."""
    model = Path(model)
    info = None
    if model.is_file():
        if model.suffix.lower() in (".plan", ".engine"):
            manifest = read_manifest(model)
            info = manifest.model if manifest is not None else None
        else:
            info = inspect_onnx(model).info
    return info.name if info is not None else model.stem


def triton_model_for(
    model: str | Path,
    name: str,
    *,
    max_batch: int | None = None,
    instances: int = 1,
    preferred_batch: Sequence[int] = (),
    max_queue_delay_us: int = 100,
    kind: str = "KIND_GPU",
    labels: bool = False,
) -> TritonModel:
    """The Triton config for an ONNX file or a TensorRT engine (with its manifest)."""
    model = Path(model)
    if not NAME_PATTERN.match(name):
        raise ToolkitError(
            f"model name {name!r} must be letters, digits, '_', '.' or '-' (no slashes or spaces), starting with a letter or digit"
        )
    if instances < 1:
        raise ToolkitError(f"--instances must be at least 1, got {instances}")
    if max_queue_delay_us < 0:
        raise ToolkitError(f"--max-queue-delay-us must be 0 or more, got {max_queue_delay_us}")
    if kind not in ("KIND_GPU", "KIND_CPU"):
        raise ToolkitError(f"instance kind must be KIND_GPU or KIND_CPU, got {kind!r}")
    if not model.is_file():
        raise ArtifactError(f"model {model} does not exist")
    if model.suffix.lower() in (".plan", ".engine"):
        manifest = read_manifest(model)
        if manifest is None:
            raise ArtifactError(f"engine {model} has no manifest ({model.name}.json); build it with resnet-build")
        if kind == "KIND_CPU":
            raise ToolkitError("a TensorRT engine runs on the GPU; --cpu serves ONNX files only")
        platform = "tensorrt_plan"
        (inp,), (out,) = manifest.inputs, manifest.outputs
        in_name, in_type, in_shape, out_name, out_type, out_shape = (
            inp.name,
            inp.dtype,
            inp.shape,
            out.name,
            out.dtype,
            out.shape,
        )
        profile = manifest.profile
        dynamic = in_shape[0] == -1
        if dynamic and profile.min != 1:
            raise ToolkitError(
                f"engine {model.name}'s profile starts at batch {profile.min}; Triton's batcher sends batches from 1, so rebuild with --min-batch 1"
            )
        limit = profile.max if dynamic else None
    else:
        onnx_file = inspect_onnx(model)
        in_name, in_type, out_name, out_type = (
            onnx_file.input_name,
            onnx_file.input_dtype,
            onnx_file.output_name,
            onnx_file.output_dtype,
        )
        in_shape = [-1 if d is None else d for d in onnx_file.input_shape]
        out_shape = [-1 if d is None else d for d in onnx_file.output_shape]
        platform = "onnxruntime_onnx"
        dynamic = in_shape[0] == -1
        limit = None
    if in_type not in TRITON_TYPES or out_type not in TRITON_TYPES:
        raise ArtifactError(
            f"{model.name} has {in_type}/{out_type} input/output; only float32 and float16 are supported"
        )
    if dynamic:
        max_batch_size = max_batch if max_batch is not None else (limit or DEFAULT_MAX_BATCH)
        if max_batch_size < 1:
            raise ToolkitError(f"--max-batch must be at least 1, got {max_batch_size}")
        if limit is not None and max_batch_size > limit:
            raise ToolkitError(
                f"--max-batch {max_batch_size} is above engine {model.name}'s profile maximum {limit}; "
                f"rebuild with resnet-build --max-batch {max_batch_size}, or lower --max-batch"
            )
        too_big = [b for b in preferred_batch if b < 1 or b > max_batch_size]
        if too_big:
            raise ToolkitError(f"preferred batch sizes must be between 1 and max batch {max_batch_size}, got {too_big}")
        input_dims, output_dims = in_shape[1:], out_shape[1:]
    else:
        # A fixed batch: Triton sees the full shape and does no batching of its own.
        if max_batch not in (None, 0):
            raise ToolkitError(
                f"{model.name} has a fixed batch of {in_shape[0]}, so Triton can't batch it; drop --max-batch "
                "or export with --dynamic-batch"
            )
        if preferred_batch:
            raise ToolkitError(
                f"{model.name} has a fixed batch of {in_shape[0]}; --preferred-batch needs a dynamic batch axis"
            )
        max_batch_size, input_dims, output_dims = 0, in_shape, out_shape
    return TritonModel(
        name=name,
        platform=platform,
        max_batch_size=max_batch_size,
        input_name=in_name,
        input_type=TRITON_TYPES[in_type],
        input_dims=list(input_dims),
        output_name=out_name,
        output_type=TRITON_TYPES[out_type],
        output_dims=list(output_dims),
        instances=instances,
        kind=kind,
        preferred_batch_sizes=sorted(set(preferred_batch)),
        max_queue_delay_us=max_queue_delay_us,
        labels=labels,
    )


def write_triton_model(
    model: str | Path,
    repository: str | Path,
    name: str,
    *,
    labels: str | Path | Sequence[str] | None = None,
    force: bool = False,
    **options,
) -> Path:
    """Write `repository/name/` (config.pbtxt, version 1 of the model, labels) and return it.

    The model folder is assembled in a hidden folder inside the repository and renamed into
    place; an existing model folder of that name is refused unless `force`.
    """
    model, repository = Path(model), Path(repository)
    label_list = None
    if labels is not None:
        from .predictor import read_labels

        label_list = read_labels(labels) if isinstance(labels, (str, Path)) else list(labels)
    config = triton_model_for(model, name, labels=label_list is not None, **options)
    if label_list is not None and len(label_list) != config.output_dims[-1]:
        raise ArtifactError(f"{len(label_list)} labels for a model with {config.output_dims[-1]} classes")
    repository.mkdir(parents=True, exist_ok=True)
    target = repository / name
    if target.exists() and not force:
        raise ToolkitError(f"{target} already exists; choose another --name or pass --force to replace it")
    file_name = "model.plan" if config.platform == "tensorrt_plan" else "model.onnx"
    with staging_folder(repository) as stage:
        folder = stage / name
        (folder / "1").mkdir(parents=True)
        shutil.copyfile(model, folder / "1" / file_name)
        (folder / "config.pbtxt").write_text(config.to_pbtxt(), encoding="utf-8")
        if label_list is not None:
            (folder / "labels.txt").write_text("\n".join(label_list) + "\n", encoding="utf-8")
        if target.exists():
            os.replace(target, stage / "previous")
        os.replace(folder, target)
    return target
