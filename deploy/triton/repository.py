"""Triton model repositories: serving beyond one machine.

    REPOSITORY/NAME/config.pbtxt
    REPOSITORY/NAME/1/model.onnx      (platform onnxruntime_onnx)   or   1/model.plan (tensorrt_plan)
    REPOSITORY/NAME/labels.txt        optional: Triton's classification extension uses it

The config is derived from the model file: platform, input and output names, data types and
dims (without the batch axis), `max_batch_size` (no larger than an engine's largest batch),
dynamic batching and instance groups.

With the Python backend (`TritonOptions(triton_backend="python")`, `--triton-backend python`), each model runs
the toolkit's own runtime inside Triton (`deploy.serving.backend`: what is served is what was
validated), and the repository gets two models: NAME (the file's tensors, as above) and
NAME_images (encoded images in, the top classes out, with the file's own preprocessing):

    REPOSITORY/NAME/1/model.py          imports deploy.serving.backend.LogitsModel
    REPOSITORY/NAME/1/model.onnx        the artifact (or model.plan with model.plan.json)
    REPOSITORY/NAME_images/1/model.py   imports deploy.serving.backend.ImagesModel
    REPOSITORY/NAME_images/1/model.onnx (a copy: each model folder holds its own files)

Those load in any Triton with a Python backend whose Python environment holds this toolkit
(`resnet-deploy serve` starts one); the platform backends need NVIDIA's Triton container.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from toolkit.errors import ArtifactError, ToolkitError
from toolkit.files import check_replaceable_folder, publish_folders
from toolkit.numbers import check_number

from ..artifacts.labels import resolve_labels
from ..runtimes.choices import TRITON_BACKENDS, check_shipped_runtime
from ..shipping.model import ShippedModel, artifact_name, check_model_name, copy_artifact, read_shipped_model
from .records import check_measured, is_written_model, write_marker

INT32_MAX = 2**31 - 1
TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16"}
INSTANCE_KINDS = ("KIND_GPU", "KIND_CPU")
DEFAULT_MAX_BATCH = 64


def quoted(text: str) -> str:
    """`text` as a protobuf text-format string: in double quotes, with backslashes and quotes
    escaped, so that a tensor name from a foreign file stays one string of the config (a name can
    not end the string and add fields of its own)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_tensor_name(name: str, file_name: str) -> str:
    """A tensor name a config can carry: one sentence for a control character (a newline, a tab...)."""
    bad = next((c for c in name if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise ArtifactError(
            f"{file_name} names a tensor {name!r}, with the control character {bad!r}, which a Triton config "
            "can't carry; rename the tensor"
        )
    return name


@dataclass(frozen=True)
class ConfigTensor:
    """An input or output of a Triton config."""

    name: str
    data_type: str  # TYPE_FP32, TYPE_FP16, TYPE_INT64, TYPE_STRING
    dims: list[int]
    label_filename: str | None = None

    def lines(self) -> list[str]:
        lines = ["  {", f"    name: {quoted(self.name)}", f"    data_type: {self.data_type}"]
        lines.append(f"    dims: [ {', '.join(map(str, self.dims))} ]")
        if self.label_filename:
            lines.append(f"    label_filename: {quoted(self.label_filename)}")
        return lines + ["  }"]


@dataclass
class TritonConfig:
    """What config.pbtxt says, as data: a platform (onnxruntime_onnx, tensorrt_plan) or a backend
    (python), the tensors, batching, instances and string parameters."""

    name: str
    max_batch_size: int
    inputs: list[ConfigTensor]
    outputs: list[ConfigTensor]
    platform: str | None = None
    backend: str | None = None
    instances: int = 1
    instance_kind: str = "KIND_GPU"
    preferred_batch_sizes: list[int] = field(default_factory=list)
    max_queue_delay_us: int = 100
    parameters: dict[str, str] = field(default_factory=dict)

    def to_pbtxt(self) -> str:
        """The config in protobuf's text format; every string quoted and escaped (`quoted`)."""
        lines = [f"name: {quoted(self.name)}"]
        lines.append(f"platform: {quoted(self.platform)}" if self.platform else f"backend: {quoted(self.backend)}")
        lines.append(f"max_batch_size: {self.max_batch_size}")
        for section, tensors in (("input", self.inputs), ("output", self.outputs)):
            lines += [f"{section} ["] + [",\n".join("\n".join(t.lines()) for t in tensors)] + ["]"]
        if self.max_batch_size > 0:
            lines.append("dynamic_batching {")
            if self.preferred_batch_sizes:
                lines.append(f"  preferred_batch_size: [ {', '.join(map(str, self.preferred_batch_sizes))} ]")
            lines.append(f"  max_queue_delay_microseconds: {self.max_queue_delay_us}")
            lines.append("}")
        lines += ["instance_group [", "  {", f"    count: {self.instances}", f"    kind: {self.instance_kind}"]
        lines += ["  }", "]"]
        for key, value in self.parameters.items():
            lines.append(f"parameters {{ key: {quoted(key)} value: {{ string_value: {quoted(value)} }} }}")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class TritonOptions:
    """How Triton serves a model: the backend, the largest batch, model instances and where they
    run, and the dynamic batcher (preferred sizes, longest wait). What `resnet-deploy triton`'s
    options say."""

    max_batch_size: int | None = None  # Triton's; None: an engine's largest batch, else 64
    instances: int = 1
    preferred_batch: tuple[int, ...] = ()
    max_queue_delay_us: int = 100
    instance_kind: str | None = (
        None  # KIND_GPU or KIND_CPU; None: the GPU, but for the Python backend on a machine without one
    )
    triton_backend: str | None = None  # "onnxruntime", "tensorrt" (the file's platform) or "python"; None: the platform
    backend: str | None = (
        None  # inside the Python backend, what runs an ONNX file: "openvino" on CPUs; None: ONNX Runtime
    )
    precision: str = "fp32"  # with backend "openvino": fp32 or bf16
    measured: dict | None = None  # --sla-from's measured file ({"sha256", "target", "record"}): the model must be it
    sla_record: str | None = None  # the --sla-from file the preferred batch and delay came from (for messages)

    def __post_init__(self) -> None:
        # Within the ranges of Triton's ModelConfig fields (int32; uint64 for the queue delay).
        check_number(self.instances, "--instances", integer=True, low=1, high=INT32_MAX)
        check_number(self.max_queue_delay_us, "--max-queue-delay-us", integer=True, limit="uint64")
        if self.max_batch_size is not None:
            check_number(self.max_batch_size, "--max-batch", low=1, high=2**31 - 1, integer=True)
        for size in self.preferred_batch:
            check_number(size, "--preferred-batch", integer=True, limit="int32")
        if self.instance_kind is not None and self.instance_kind not in INSTANCE_KINDS:
            raise ToolkitError(f"instance kind must be {' or '.join(INSTANCE_KINDS)}, got {self.instance_kind!r}")
        if self.triton_backend is not None and self.triton_backend not in TRITON_BACKENDS:
            raise ToolkitError(
                f"Triton backend must be one of {', '.join(TRITON_BACKENDS)}, got {self.triton_backend!r}"
            )
        object.__setattr__(self, "preferred_batch", tuple(self.preferred_batch))
        check_shipped_runtime(self.backend, self.precision, "the Python backend")
        if self.backend == "openvino" and self.triton_backend != "python":
            raise ToolkitError("--backend openvino runs inside Triton's Python backend: add --triton-backend python")
        if self.backend == "openvino" and self.instance_kind == "KIND_GPU":
            raise ToolkitError("OpenVINO runs on the CPU: --backend openvino takes CPU instances (--cpu)")


def triton_config(
    model: ShippedModel, name: str, options: TritonOptions = TritonOptions(), *, labels: bool = False
) -> TritonConfig:
    """The Triton config for a model read by `read_shipped_model`: with its platform backend, or
    with the Python backend running the toolkit's runtime (`options.triton_backend == "python"`)."""
    check_model_name(name)
    python = _check_backend(model, options)
    kind = _instance_kind(model, options, python)
    limit = _engine_limit(model, kind)
    for tensor in (model.input, model.output):
        check_tensor_name(tensor.name, model.path.name)
    if model.input.dtype not in TRITON_TYPES or model.output.dtype not in TRITON_TYPES:
        raise ArtifactError(
            f"{model.path.name} has {model.input.dtype}/{model.output.dtype} input/output; only float32 and float16 are supported"
        )
    max_batch_size, input_dims, output_dims = _batching(model, options, limit)
    label_file = "labels.txt" if labels else None
    return TritonConfig(
        name=name,
        max_batch_size=max_batch_size,
        inputs=[ConfigTensor(model.input.name, TRITON_TYPES[model.input.dtype], input_dims)],
        outputs=[ConfigTensor(model.output.name, TRITON_TYPES[model.output.dtype], output_dims, label_file)],
        platform=None if python else model.platform,
        backend="python" if python else None,
        instances=options.instances,
        instance_kind=kind,
        preferred_batch_sizes=sorted(set(options.preferred_batch)),
        max_queue_delay_us=options.max_queue_delay_us,
        parameters=_python_parameters(model, options) if python else {},
    )


def images_config(logits: TritonConfig, model: ShippedModel, top_k: int) -> TritonConfig:
    """The image-classification model served beside a Python-backend `logits` model: `image`, one
    encoded JPEG or PNG per batch item (TYPE_STRING), in; the `top_k` best classes out, as three
    plain tensors (`indices`, `scores`, `labels`) a client reads without Triton's classification
    extension (which answers only when asked, and in strings)."""
    batched = logits.max_batch_size > 0
    item = [1] if batched else [model.input.shape[0], 1]
    top = [top_k] if batched else [model.input.shape[0], top_k]
    return replace(
        logits,
        name=images_model_name(logits.name),
        inputs=[ConfigTensor("image", "TYPE_STRING", item)],
        outputs=[
            ConfigTensor("indices", "TYPE_INT64", top),
            ConfigTensor("scores", "TYPE_FP32", top),
            ConfigTensor("labels", "TYPE_STRING", top),
        ],
        parameters={**logits.parameters, "top_k": str(top_k)},
    )


def images_model_name(name: str) -> str:
    """NAME_images: the image model written beside a Python-backend model NAME."""
    return f"{name}_images"


def _check_backend(model: ShippedModel, options: TritonOptions) -> bool:
    """Whether the model is served by the Python backend; a platform the file can't have is an error."""
    own = "tensorrt" if model.platform == "tensorrt_plan" else "onnxruntime"
    if options.backend not in (None, own, *(("openvino",) if own == "onnxruntime" else ())):
        raise ToolkitError(f"{model.path.name} runs in {own}, not {options.backend}")
    if options.triton_backend in (None, "python"):
        return options.triton_backend == "python"
    if options.triton_backend != own:
        raise ToolkitError(
            f"{model.path.name} is served by Triton's {own} backend (or python), not {options.triton_backend}"
        )
    return False


def _instance_kind(model: ShippedModel, options: TritonOptions, python: bool) -> str:
    """Where instances run: as asked; else on the GPU, but for a Python-backend ONNX model on a
    machine without one (its runtime then runs on the CPU)."""
    if options.instance_kind is not None:
        return options.instance_kind
    if python and model.platform != "tensorrt_plan":
        from ..runtimes.gpu import cuda_available

        return "KIND_GPU" if cuda_available() and options.backend != "openvino" else "KIND_CPU"
    return "KIND_GPU"


def _python_parameters(model: ShippedModel, options: TritonOptions) -> dict[str, str]:
    """What a Python-backend model needs, in its config: the artifact's file name, the toolkit
    and Python it was written for (the server's Python environment must have them), and the
    runtime and precision when OpenVINO runs it."""
    from toolkit import __version__

    if options.backend == "openvino" and model.platform == "tensorrt_plan":
        raise ToolkitError(f"{model.path.name} is an engine: OpenVINO runs ONNX files")
    return {
        "artifact": artifact_name(model),
        "toolkit": __version__,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
    } | ({"runtime": "openvino", "precision": options.precision} if options.backend == "openvino" else {})


def _engine_limit(model: ShippedModel, kind: str) -> int | None:
    """An engine's largest batch (None for ONNX, or a fixed batch), after checking that Triton can
    serve the engine as asked: on the GPU, from batch 1."""
    if model.platform != "tensorrt_plan":
        return None
    if kind == "KIND_CPU":
        raise ToolkitError("a TensorRT engine runs on the GPU; --cpu serves ONNX files only")
    if model.input.batch is None and model.batches.min != 1:
        raise ToolkitError(
            f"engine {model.path.name}'s batch range starts at batch {model.batches.min}; Triton's batcher sends batches "
            "from 1, so rebuild with --min-batch 1"
        )
    return model.batches.max if model.input.batch is None else None


def _batching(model: ShippedModel, options: TritonOptions, limit: int | None) -> tuple[int, list[int], list[int]]:
    """(max_batch_size, input dims, output dims): without the batch axis when Triton batches (a
    dynamic batch axis); the full shapes and max_batch_size 0 for a fixed batch."""
    file_name, preferred = model.path.name, options.preferred_batch
    in_shape = [-1 if d is None else d for d in model.input.shape]
    out_shape = [-1 if d is None else d for d in model.output.shape]
    if model.input.batch is not None:  # a fixed batch: Triton sees the full shape and does no batching of its own
        if options.max_batch_size not in (None, 0):
            raise ToolkitError(
                f"{file_name} has a fixed batch of {in_shape[0]}, so Triton can't batch it; drop --max-batch "
                "or export with --dynamic-batch"
            )
        if preferred:
            given = (
                f"{options.sla_record} (--sla-from) sets a preferred batch, which"
                if options.sla_record
                else ("--preferred-batch")
            )
            raise ToolkitError(f"{file_name} has a fixed batch of {in_shape[0]}; {given} needs a dynamic batch axis")
        return 0, in_shape, out_shape
    max_batch_size = options.max_batch_size if options.max_batch_size is not None else (limit or DEFAULT_MAX_BATCH)
    if max_batch_size < 1:
        raise ToolkitError(f"--max-batch must be at least 1, got {max_batch_size}")
    if limit is not None and max_batch_size > limit:
        raise ToolkitError(
            f"--max-batch {max_batch_size} is above engine {file_name}'s largest batch {limit}; "
            f"rebuild with resnet-build --max-batch {max_batch_size}, or lower --max-batch"
        )
    too_big = [b for b in preferred if b < 1 or b > max_batch_size]
    if too_big and options.sla_record:
        raise ToolkitError(
            f"{options.sla_record} chose batch {too_big[0]}, above max batch {max_batch_size}: give --max-batch "
            f"{too_big[0]}, or measure batches up to {max_batch_size}"
        )
    if too_big:
        raise ToolkitError(f"preferred batch sizes must be between 1 and max batch {max_batch_size}, got {too_big}")
    return max_batch_size, in_shape[1:], out_shape[1:]


def write_triton_model(
    model: str | Path,
    repository: str | Path,
    name: str | None = None,
    options: TritonOptions = TritonOptions(),
    *,
    labels: str | Path | Sequence[str] | None = None,
    force: bool = False,
) -> Path:
    """Write `repository/name/` (config.pbtxt, version 1 of the model, labels) and return it; with
    the Python backend also `repository/name_images/` (see the module docstring).

    `name` defaults to the model's own (`ShippedModel.default_name`); `options` say how Triton
    serves it (`TritonOptions`). Each model folder is assembled in a hidden folder beside it and
    renamed into place; an existing model folder of that name is refused unless `force`.
    """
    served = read_shipped_model(model)
    check_measured(served.path, options.measured)
    repository = Path(repository)
    if name is not None and not name:
        raise ToolkitError("the model name is empty; give --name a name, or leave it out for the model's own")
    name = name or served.default_name
    configs = [triton_config(served, name, options, labels=labels is not None)]
    label_list = resolve_labels(labels, served.output.shape[-1])
    if configs[0].backend == "python":
        configs.append(images_config(configs[0], served, top_k=min(5, served.output.shape[-1])))
    if repository.exists() and not repository.is_dir():
        raise ToolkitError(f"repository {repository} exists and is not a folder")
    inputs = [served.path] + ([labels] if isinstance(labels, (str, Path)) else [])
    replaceable = {}
    for config in configs:
        target, is_ours = repository / config.name, _triton_model_named(config.name)
        if repository.is_dir():
            check_replaceable_folder(target, force=force, is_ours=is_ours, what="Triton model", inputs=inputs)
        replaceable[config.name] = is_ours if target.exists() else None  # checked again at publish time
    created = _missing_folders(repository)
    try:
        repository.mkdir(parents=True, exist_ok=True)
        # NAME and NAME_images as one step: both there, or neither changed
        with publish_folders([(repository / c.name, replaceable[c.name]) for c in configs]) as folders:
            for folder, config in zip(folders, configs, strict=True):
                _fill_model_folder(folder, served, config, label_list)
                write_marker(folder, config.name)
    except BaseException:
        for folder in created:  # the repository folders this run created go with it
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    return repository / name


def _fill_model_folder(folder: Path, served: ShippedModel, config: TritonConfig, labels: list[str] | None) -> None:
    """config.pbtxt, version 1 (the artifact, its external data or manifest; a Python model's
    model.py) and labels.txt."""
    version = folder / "1"
    version.mkdir()
    copy_artifact(served, version, with_manifest=config.backend == "python")
    if config.backend == "python":
        kind = "ImagesModel" if config.inputs[0].data_type == "TYPE_STRING" else "LogitsModel"
        (version / "model.py").write_text(_model_py(kind, config.parameters), encoding="utf-8")
    (folder / "config.pbtxt").write_text(config.to_pbtxt(), encoding="utf-8")
    if labels is not None:
        (folder / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")


def _model_py(kind: str, parameters: dict[str, str]) -> str:
    """The model.py of a Python-backend model: the toolkit's class, imported from the server's
    Python environment (which must hold the toolkit)."""
    return f'''"""A Triton Python-backend model written by `resnet-deploy triton --triton-backend python`.

It runs resnet-deploy-toolkit's own runtime on the artifact beside it ({parameters["artifact"]}), so
the server's Python environment needs the toolkit (version {parameters["toolkit"]}, Python
{parameters["python"]}): `pip install 'resnet-deploy-toolkit[serve]'`, then `resnet-deploy serve
REPOSITORY` starts a server with it (the stub of the running Python, that environment's packages).
"""

from deploy.triton.python_model import {kind} as TritonPythonModel  # noqa: F401
'''


def _missing_folders(path: Path) -> list[Path]:
    """The folders `mkdir(parents=True)` would create for `path`, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def _triton_model_named(name: str):
    return lambda folder: is_written_model(folder, name)
