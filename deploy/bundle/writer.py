"""Writing a bundle for a board (`write_bundle`): the folder `deploy.artifacts.bundle` describes and
reads (the model, an engine where one was built, labels, a manifest with every file's SHA-256, a
README for the board), staged beside its destination and published whole; `--force` replaces only
a bundle this toolkit wrote.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from toolkit.errors import ArtifactError, ToolkitError
from toolkit.files import (
    check_replaceable_folder,
    input_file,
    parse_json,
    publish_folder,
    sha256_file,
)
from toolkit.provenance import versions

from ..artifacts.bundle import (
    BUNDLE_FORMAT,
    ENGINE_NAME,
    LABELS_NAME,
    MANIFEST_NAME,
    ONNX_NAME,
    ORT_NAME,
    README_NAME,
    Bundle,
    is_bundle,
)
from ..artifacts.labels import resolve_labels
from ..artifacts.manifest import EngineManifest, manifest_path, read_manifest
from ..artifacts.metadata import ModelInfo
from ..artifacts.onnx_file import external_data_files, inspect_onnx
from ..runtimes import backend_of
from ..runtimes.cpu import architecture
from ..runtimes.ort_format import write_ort_format
from .wheelhouse import REQUIREMENTS, WHEELS, board_extras, check_platform, write_wheelhouse


def for_gpu(info: ModelInfo, has_engine: bool) -> bool:
    """Whether a bundle is meant for TensorRT on an NVIDIA GPU (a Jetson): it carries an engine, or
    its graph is what TensorRT builds one from (FP16, or INT8 in TensorRT's form); else it is for a
    CPU board (a Raspberry Pi, an x86 box), whose README says nothing of TensorRT."""
    return has_engine or info.precision == "fp16" or (info.quantization or {}).get("target") == "tensorrt"


def _readme(
    info: ModelInfo,
    has_engine: bool,
    has_labels: bool,
    engine_env: dict | None,
    wheelhouse: dict | None,
    ort_format: dict | None,
) -> str:
    spec = info.input_spec
    gpu = for_gpu(info, has_engine)
    described = f"""# {info.name} deployment bundle

{info.name}: ResNet-{info.depth} for {info.dataset} ({info.num_classes} classes), {info.precision.upper()} graph,
input `[N, {spec.channels}, {spec.height}, {spec.width}]` ({info.io_dtype}), normalised with mean {list(spec.mean)} and std
{list(spec.std)}{f", after resizing the shorter side to {spec.resize} and centre-cropping" if spec.resize else ", after resizing the image"}.
The toolkit reads all of this from `{MANIFEST_NAME}`; nothing needs to be repeated on the command line.
"""
    steps = (
        _gpu_steps(info, has_engine, has_labels, engine_env, wheelhouse) if gpu else _cpu_steps(wheelhouse, ort_format)
    )
    return (
        described
        + steps
        + f"""
Every file is listed in `{MANIFEST_NAME}` with its SHA-256; a file changed after the bundle was
written is refused when the bundle is opened.
"""
    )


def _install(wheelhouse: dict | None, system_site: bool) -> str:
    """The install step: from the bundle's own wheels with no network, or from a copy of the toolkit."""
    venv = f"python3 -m venv {'--system-site-packages ' if system_site else ''}~/resnet && . ~/resnet/bin/activate"
    if wheelhouse:
        return f"""Install the toolkit from this bundle's own wheels ({wheelhouse["platform"]}, Python {wheelhouse["python"]}), with no network:

       {venv}
       pip install --no-index --find-links {WHEELS} --require-hashes -r {REQUIREMENTS}

   (Without `python3-venv`: `python3 {WHEELS}/pip-*.whl/pip install --target ~/resnet-site ...` the same way,
   then `PYTHONPATH=~/resnet-site ~/resnet-site/bin/resnet-deploy ...`.) It installs no PyTorch."""
    return f"""Install the toolkit:

       {venv}
       pip install './resnet-deploy-toolkit[cpu,images]'    # from a copy of the toolkit

   It installs no PyTorch: running a bundle needs none."""


def _cpu_steps(wheelhouse: dict | None, ort_format: dict | None) -> str:
    runs = (
        f"It runs the ONNX file in the runtime `{MANIFEST_NAME}` names (OpenVINO, `[openvino]`), else in ONNX Runtime."
    )
    if ort_format:
        runs = (
            f"It runs `{ORT_NAME}`, the model in ONNX Runtime's own format, optimized for {ort_format['platform']} "
            "(it opens faster and in less memory than the ONNX file, at the same speed), on "
            f"{ort_format['platform']} CPUs{_nchwc_cpus(ort_format.get('nchwc_flags'))} with ONNX Runtime "
            f"{ort_format['onnxruntime']}; elsewhere `{ONNX_NAME}`, the same model, in ONNX Runtime."
        )
    runs += " Its INT8 kernels give the same logits on every ARMv8 CPU and, for the `cpu` INT8 form, on every x86 CPU."
    return f"""
## On a CPU board (a Raspberry Pi, an x86 box)

1. {_install(wheelhouse, system_site=False)}

2. Run predictions:

       resnet-deploy predict . image.jpg other.png --top-k 5

{textwrap.fill(runs, width=96, initial_indent="   ", subsequent_indent="   ")}
"""


def _nchwc_cpus(flags: list | None) -> str:
    """Which x86 CPUs an NCHWc layout runs on (`deploy.runtimes.ort_format`), in words."""
    if flags is None:
        return ""
    return (
        " with AVX-512" if "avx512f" in flags else " with AVX2 and no AVX-512" if "avx2" in flags else " without AVX2"
    )


def _gpu_steps(info: ModelInfo, has_engine: bool, has_labels: bool, engine_env: dict | None, wheelhouse) -> str:
    prebuilt = ""
    if has_engine:
        prebuilt = (
            f"\n`{ENGINE_NAME}` was built on {engine_env.get('gpu_name')} (compute capability "
            f"{engine_env.get('compute_capability')}) with TensorRT {engine_env.get('tensorrt_version')}. It runs only on "
            "the same GPU architecture and TensorRT release; anywhere else the loader refuses it and says so. "
            "On any other board, build the engine there (step 2) and it replaces this one.\n"
        )
    return f"""{prebuilt}
## On a board with an NVIDIA GPU (a Jetson with JetPack)

1. {_install(wheelhouse, system_site=True)} The virtual environment sees JetPack's TensorRT
   (`--system-site-packages`); an engine built with `resnet-build --version-compatible` runs
   where only TensorRT's lean runtime is installed.

2. Build the engine **on the Jetson itself**, with its own TensorRT: engines are tied to the GPU
   and the TensorRT release that built them, so one built elsewhere is refused here.

       resnet-build {ONNX_NAME} -o {ENGINE_NAME} --max-batch 8
       resnet-deploy bundle {ONNX_NAME} --engine {ENGINE_NAME} -o ../{info.name}-board{" --labels " + LABELS_NAME if has_labels else ""}

   (The second command writes a new bundle with the engine and fresh checksums.)

3. Run predictions:

       resnet-deploy predict . image.jpg other.png --top-k 5

   It uses the engine when TensorRT and a compatible GPU are present, else ONNX Runtime.
"""


def write_bundle(
    model: str | Path,
    output: str | Path,
    *,
    engine: str | Path | None = None,
    labels: str | Path | Sequence[str] | None = None,
    force: bool = False,
    backend: str | None = None,
    precision: str = "fp32",
    wheels: str | None = None,
    python: str | None = None,
) -> Bundle:
    """Write a bundle folder for an ONNX file (and optionally its engine and labels).

    `backend` "openvino" names OpenVINO (in `precision`, fp32 or bf16) as what runs its ONNX file
    on the board, with ONNX Runtime as the fallback where OpenVINO can't run. `wheels` ("aarch64"
    or "x86_64") carries the board's install in the bundle, for Python `python` (default: this
    one's): `deploy.bundle.wheelhouse`.

    The folder is assembled beside `output` and renamed into place at the end, so an
    interrupted run leaves no half-written bundle. An existing `output` is refused unless
    `force`, which replaces it only once the new bundle is complete.
    """
    model, output = Path(model), Path(output)
    named = _named_backend(backend, precision)
    python = check_platform(wheels, python) if wheels is not None else None
    if backend_of(model) == "tensorrt":
        raise ToolkitError(
            f"{model.name} is an engine; a bundle is made from the ONNX file (add the engine with --engine)"
        )
    signature = inspect_onnx(model)
    info = signature.info
    if info is None:
        raise ArtifactError(f"{model} carries no resnet-export metadata; export it with resnet-export")
    inputs = [model] + ([engine] if engine is not None else []) + ([labels] if isinstance(labels, (str, Path)) else [])
    check_replaceable_folder(output, force=force, is_ours=is_bundle, what="bundle", inputs=inputs)
    replace = is_bundle if output.exists() else None  # checked again when the new bundle is complete
    engine_manifest = _engine_of(model, engine) if engine is not None else None
    label_list = resolve_labels(labels, info.num_classes)
    data_files = _data_files(signature)
    with publish_folder(output, replace=replace) as folder:
        shutil.copyfile(model, folder / ONNX_NAME)
        for data in data_files:  # the model names its external data by file name: they keep theirs
            shutil.copyfile(data, folder / data.name)
        if engine is not None:
            shutil.copyfile(engine, folder / ENGINE_NAME)
            shutil.copyfile(manifest_path(engine), folder / (ENGINE_NAME + ".json"))
            _retarget_engine_manifest(folder / (ENGINE_NAME + ".json"))
        if label_list is not None:
            (folder / LABELS_NAME).write_text("\n".join(label_list) + "\n", encoding="utf-8")
        environment = engine_manifest.to_dict()["environment"] if engine_manifest else None
        house, ort_format = _for_the_board(folder, info, engine is not None, named, wheels, python)
        (folder / README_NAME).write_text(
            _readme(info, engine is not None, label_list is not None, environment, house, ort_format), encoding="utf-8"
        )
        manifest = _manifest(folder, signature, environment) | ({"runtime": named} if named else {})
        manifest |= ({"wheelhouse": house} if house else {}) | ({"ort_format": ort_format} if ort_format else {})
        (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return Bundle.open(output)


def _for_the_board(folder: Path, info: ModelInfo, has_engine: bool, named: dict | None, wheels, python):
    """The board's install (`wheels`, for that machine) and, for a CPU board running ONNX Runtime,
    `model.ort` for its platform: their manifest records (None where not written)."""
    house = write_wheelhouse(folder, wheels, python, board_extras(named)) if wheels is not None else None
    ort_format = None
    if not for_gpu(info, has_engine) and named is None:
        ort_format = write_ort_format(folder / ONNX_NAME, folder / ORT_NAME, wheels or architecture())
    return house, ort_format


def _named_backend(backend: str | None, precision: str) -> dict | None:
    """The bundle's "runtime" record (the manifest's key), after checking it (None: ONNX Runtime,
    nothing to record)."""
    from ..runtimes.choices import ONNX_BACKENDS, check_shipped_runtime

    check_shipped_runtime(backend, precision, "a bundle's ONNX file", accepted=ONNX_BACKENDS)
    if backend in (None, "onnxruntime"):
        return None
    return {"backend": "openvino", "precision": precision, "fallback": "onnxruntime"}


def _data_files(signature) -> list[Path]:
    """The model's external data files (copied under their own names), none named like a bundle file."""
    files = external_data_files(signature)
    taken = [
        f.name
        for f in files
        if f.name in (ONNX_NAME, ORT_NAME, ENGINE_NAME, ENGINE_NAME + ".json", LABELS_NAME, MANIFEST_NAME, README_NAME)
    ]
    if taken:
        raise ArtifactError(f"{signature.path} reads weights from {taken[0]}, a name a bundle keeps for its own file")
    return files


def _engine_of(model: Path, engine: str | Path) -> EngineManifest:
    """The manifest of a prebuilt engine for the bundle, after checking it was built from `model`."""
    engine = input_file(engine, "engine file", "an engine file", ArtifactError)
    engine_manifest = read_manifest(engine)
    if engine_manifest is None:
        raise ArtifactError(
            f"engine {engine} has no manifest ({manifest_path(engine).name}); build it with resnet-build"
        )
    if engine_manifest.source_onnx.get("sha256") != sha256_file(model):
        raise ArtifactError(
            f"engine {engine.name} was built from another ONNX file than {model.name}; rebuild it from this one"
        )
    return engine_manifest


def _manifest(folder: Path, signature, environment: dict | None) -> dict:
    """`manifest.json`: the model, its inputs and outputs, the engine's environment, versions, and
    the size and SHA-256 of every file already in `folder`."""
    info = signature.info
    return {
        "format": BUNDLE_FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": info.to_dict(),
        "precision": info.precision,
        "io": {"input": signature.input.to_dict(), "output": signature.output.to_dict()},
        "engine": environment,
        "versions": {**versions(), **info.producer},
        "files": {
            p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(folder.iterdir())
            if p.is_file()
        },  # wheels/ is covered by board-requirements.txt's hashes (`wheelhouse`), which is listed here
    }


def _retarget_engine_manifest(path: Path) -> None:
    """The copied engine manifest names the engine by its bundle file name."""
    data = parse_json(path.read_text(), str(path), "an engine manifest", ArtifactError)
    data["engine_file"] = ENGINE_NAME
    path.write_text(json.dumps(data, indent=2) + "\n")
