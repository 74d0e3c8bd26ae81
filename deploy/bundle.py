"""Deployment bundles: one self-contained folder to copy onto a board.

    DIR/
      model.onnx          the model (the engine is built from it on the board)
      model.plan          optional: a prebuilt engine, only for a board identical to the builder
      model.plan.json     its manifest
      labels.txt          optional: one class name per line
      manifest.json       input spec, precision, inputs/outputs, versions, SHA-256 of every file
      README.md           how to build the engine on the board and run predictions

Opening a bundle verifies every checksum; a missing, truncated or altered file is refused with
a sentence naming it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from toolkit.errors import ArtifactError, MissingDependencyError, ToolkitError
from toolkit.files import (
    SMALL_FILE_LIMIT,
    check_replaceable_folder,
    input_file,
    notice,
    parse_json,
    publish_folder,
    sha256_file,
)
from toolkit.provenance import versions

from .artifacts.labels import resolve_labels
from .artifacts.manifest import EngineManifest, manifest_path, read_manifest
from .artifacts.metadata import ModelInfo
from .artifacts.onnx_file import external_data_files, inspect_onnx
from .runtimes import Runtime, RuntimeOptions, backend_of, open_runtime
from .runtimes.choices import BUNDLE_BACKEND_CHOICES

BUNDLE_FORMAT = "resnet-bundle/1"
ONNX_NAME, ENGINE_NAME, LABELS_NAME, MANIFEST_NAME, README_NAME = (
    "model.onnx",
    "model.plan",
    "labels.txt",
    "manifest.json",
    "README.md",
)


@dataclass
class Bundle:
    """An opened (and verified) bundle folder."""

    folder: Path
    manifest: dict
    info: ModelInfo
    onnx: Path
    engine: Path | None
    labels: list[str] | None

    @classmethod
    def open(cls, folder: str | Path) -> Bundle:
        """Read `manifest.json` and verify every file it lists: a regular file inside the folder
        (a symbolic link is refused, even to a file inside), of the listed size and SHA-256."""
        folder = Path(folder)
        manifest_file = folder / MANIFEST_NAME
        if not folder.is_dir() or not (manifest_file.exists() or manifest_file.is_symlink()):
            raise ArtifactError(f"{folder} is not a bundle (no {MANIFEST_NAME}); make one with resnet-deploy bundle")
        try:
            manifest = parse_json(_read_member(manifest_file), str(manifest_file), "a bundle manifest", ArtifactError)
            files = manifest["files"]
            info = ModelInfo.from_dict(manifest["model"])
            if not isinstance(files, dict):
                raise TypeError(f"'files' is a {type(files).__name__}, not a mapping of file names")
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ArtifactError(f"{manifest_file} is not a readable bundle manifest ({error})") from None
        if manifest.get("format") != BUNDLE_FORMAT:
            raise ArtifactError(
                f"{manifest_file} has format {manifest.get('format')!r}; this toolkit reads {BUNDLE_FORMAT!r}"
            )
        for name, entry in files.items():
            _verify_member(folder, name, entry)
        if ONNX_NAME not in files:
            raise ArtifactError(f"{manifest_file} lists no {ONNX_NAME}")
        for location in inspect_onnx(folder / ONNX_NAME).external_data:
            if location not in files or location == MANIFEST_NAME:
                raise ArtifactError(
                    f"bundle {ONNX_NAME} reads its weights from {location}, which the manifest does not list: "
                    "no checksum covers it"
                )
        labels = resolve_labels(folder / LABELS_NAME, info.num_classes) if LABELS_NAME in files else None
        engine = folder / ENGINE_NAME if ENGINE_NAME in files else None
        return cls(folder, manifest, info, folder / ONNX_NAME, engine, labels)

    @property
    def runtime(self) -> dict:
        """The runtime the bundle names for its ONNX file ({"backend": "openvino", "precision": ...}),
        or {} for ONNX Runtime."""
        named = self.manifest.get("runtime")
        return named if isinstance(named, dict) else {}

    def open_runtime(
        self, *, backend: str | None = None, device: str | None = None, precision: str | None = None
    ) -> Runtime:
        """The bundle's engine when TensorRT and a compatible GPU are here, else its ONNX file: in
        the runtime the bundle names (OpenVINO, in its precision), falling back to ONNX Runtime
        (said on stderr) where that can't run here, else in ONNX Runtime.

        `backend` "tensorrt" demands the engine (an error, not a fallback, when it can't run);
        "openvino" demands OpenVINO; "onnxruntime" skips both; "auto" takes the engine where it
        can run, else the backend `--backend auto` chooses for the ONNX file (`choose_backend`).
        `device` ("cpu" or "cuda") is where ONNX Runtime runs; `precision` overrides the bundle's.
        """
        if backend not in (None, *BUNDLE_BACKEND_CHOICES):
            raise ToolkitError(
                f"a bundle holds an ONNX file (and an engine where one was built), no PyTorch checkpoint: it runs in "
                f"{', '.join(BUNDLE_BACKEND_CHOICES)}, not {backend}"
            )
        if backend == "auto":
            return self._open_auto(device, precision)
        if backend == "tensorrt" or (backend is None and self.engine is not None):
            if self.engine is None:
                raise ArtifactError(
                    f"bundle {self.folder} has no engine; build one on this machine: resnet-build {self.onnx}"
                )
            try:
                return open_runtime(self.engine, backend="tensorrt")
            except (MissingDependencyError, ArtifactError):
                if backend == "tensorrt":
                    raise
        named = self.runtime
        if backend == "openvino" or (backend is None and named.get("backend") == "openvino" and device != "cuda"):
            options = RuntimeOptions(precision=precision or named.get("precision", "fp32"))
            try:
                return open_runtime(self.onnx, options, backend="openvino")
            except ToolkitError as error:
                if backend == "openvino":
                    raise
                notice(f"the bundle names OpenVINO, which can't run here ({error}); running it in ONNX Runtime")
        return open_runtime(self.onnx, RuntimeOptions(device=device), backend="onnxruntime")

    def _open_auto(self, device: str | None, precision: str | None) -> Runtime:
        """`--backend auto`: the engine where TensorRT and its GPU are here, else the ONNX file in the
        backend `choose_backend` takes for it (OpenVINO for INT8 on VNNI, and BF16; ONNX Runtime else)."""
        from .runtimes.open import choose_backend

        if self.engine is not None:
            try:
                return open_runtime(self.engine, backend="tensorrt")
            except (MissingDependencyError, ArtifactError):
                pass
        options = RuntimeOptions(device=device, precision=precision or self.runtime.get("precision", "fp32"))
        return open_runtime(self.onnx, options, backend=choose_backend(self.onnx, options))


def is_bundle(folder: Path) -> bool:
    """Whether `folder` is a bundle this toolkit wrote (its manifest names our format)."""
    try:
        manifest = folder / MANIFEST_NAME
        return parse_json(_read_member(manifest), str(manifest), "a bundle manifest", ArtifactError).get("format") == (
            BUNDLE_FORMAT
        )
    except (ArtifactError, ValueError, AttributeError):
        return False


def _open_member(path: Path) -> int:
    """A file descriptor of a bundle member, opened without following a symbolic link."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise ArtifactError(f"bundle file {path} is missing") from None
    except OSError as error:
        if error.errno == errno.ELOOP or path.is_symlink():
            raise ArtifactError(
                f"bundle file {path} is a symbolic link; a bundle holds its own files (copy the file into the folder)"
            ) from None
        raise ArtifactError(f"bundle file {path} can't be read ({error.strerror})") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise ArtifactError(f"bundle file {path} is not a regular file")
    return descriptor


def _read_member(path: Path) -> bytes:
    """A bundle's manifest (a member, opened without following a link), at most `SMALL_FILE_LIMIT`."""
    with os.fdopen(_open_member(path), "rb") as stream:
        data = stream.read(SMALL_FILE_LIMIT + 1)
    if len(data) > SMALL_FILE_LIMIT:
        raise ArtifactError(f"{path} is larger than {SMALL_FILE_LIMIT >> 20} MiB: not a bundle manifest")
    return data


def _verify_member(folder: Path, name, entry) -> None:
    """A listed file: a plain name in the folder, a regular file (no link), of the listed size and checksum."""
    manifest_file = folder / MANIFEST_NAME
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", "..", MANIFEST_NAME):
        raise ArtifactError(f"{manifest_file} lists {name!r}, which is not a file of the bundle folder")
    sha256, size = (entry.get("sha256"), entry.get("bytes")) if isinstance(entry, dict) else (None, None)
    if not (isinstance(sha256, str) and re.fullmatch("[0-9a-f]{64}", sha256)) or type(size) is not int or size < 0:
        raise ArtifactError(
            f"{manifest_file} describes {name} wrongly: each file needs 'sha256' (64 hex digits) and 'bytes' (a whole number)"
        )
    path = folder / name
    with os.fdopen(_open_member(path), "rb") as stream:
        actual = os.fstat(stream.fileno()).st_size
        if actual != size:
            raise ArtifactError(
                f"bundle file {path} has {actual} bytes, the manifest says {size}: truncated or replaced"
            )
        digest = hashlib.sha256()
        while block := stream.read(1 << 20):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise ArtifactError(f"bundle file {path} does not match its checksum in {MANIFEST_NAME}: altered or corrupt")


def _readme(info: ModelInfo, has_engine: bool, has_labels: bool, engine_env: dict | None) -> str:
    spec = info.input_spec
    prebuilt = ""
    if has_engine:
        prebuilt = (
            f"\n`{ENGINE_NAME}` was built on {engine_env.get('gpu_name')} (compute capability "
            f"{engine_env.get('compute_capability')}) with TensorRT {engine_env.get('tensorrt_version')}. It runs only on "
            "the same GPU architecture and TensorRT release; anywhere else the loader refuses it and says so. "
            "On any other board, build the engine there (step 2) and it replaces this one.\n"
        )
    return f"""# {info.name} deployment bundle

{info.name}: ResNet-{info.depth} for {info.dataset} ({info.num_classes} classes), {info.precision.upper()} graph,
input `[N, {spec.channels}, {spec.height}, {spec.width}]` ({info.io_dtype}), normalised with mean {list(spec.mean)} and std
{list(spec.std)}{f", after resizing the shorter side to {spec.resize} and centre-cropping" if spec.resize else ", after resizing the image"}.
The toolkit reads all of this from `{MANIFEST_NAME}`; nothing needs to be repeated on the command line.
{prebuilt}
## On the board (e.g. a Jetson with JetPack)

1. Install the toolkit where JetPack's TensorRT is visible:

       python3 -m venv --system-site-packages .venv && . .venv/bin/activate
       pip install './resnet-deploy-toolkit[cpu,images]'    # from a copy of the toolkit

   This installs no PyTorch: running a bundle needs none (`[cpu]` is ONNX Runtime, `[images]`
   Pillow; PyTorch comes only with `[export]`, for exporting). An engine built with
   `resnet-build --version-compatible` runs where only TensorRT's lean runtime is installed.

2. Build the engine **on the board itself**: engines are tied to the GPU and the TensorRT
   release that built them.

       resnet-build {ONNX_NAME} -o {ENGINE_NAME} --max-batch 8
       resnet-deploy bundle {ONNX_NAME} --engine {ENGINE_NAME} -o ../{info.name}-board{" --labels " + LABELS_NAME if has_labels else ""}

   (The second command writes a new bundle with the engine and fresh checksums.)

3. Run predictions:

       resnet-deploy predict . image.jpg other.png --top-k 5

   It uses the engine when TensorRT and a compatible GPU are present, else the runtime that
   `{MANIFEST_NAME}` names (OpenVINO, for a CPU board; `pip install 'resnet-deploy-toolkit[openvino]'`),
   else ONNX Runtime.

Every file is listed in `{MANIFEST_NAME}` with its SHA-256; a file changed after the bundle was
written is refused when the bundle is opened.
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
) -> Bundle:
    """Write a bundle folder for an ONNX file (and optionally its engine and labels).

    `backend` "openvino" names OpenVINO (in `precision`, fp32 or bf16) as what runs its ONNX file
    on the board, with ONNX Runtime as the fallback where OpenVINO can't run.

    The folder is assembled beside `output` and renamed into place at the end, so an
    interrupted run leaves no half-written bundle. An existing `output` is refused unless
    `force`, which replaces it only once the new bundle is complete.
    """
    model, output = Path(model), Path(output)
    named = _named_backend(backend, precision)
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
        (folder / README_NAME).write_text(
            _readme(info, engine is not None, label_list is not None, environment), encoding="utf-8"
        )
        manifest = _manifest(folder, signature, environment) | ({"runtime": named} if named else {})
        (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return Bundle.open(output)


def _named_backend(backend: str | None, precision: str) -> dict | None:
    """The bundle's "runtime" record (the manifest's key), after checking it (None: ONNX Runtime,
    nothing to record)."""
    if backend in (None, "onnxruntime"):
        if precision != "fp32":
            raise ToolkitError("--precision names OpenVINO's arithmetic: add --backend openvino")
        return None
    from .runtimes.choices import OPENVINO_PRECISIONS

    if backend != "openvino":
        raise ToolkitError(f"a bundle's ONNX file runs in onnxruntime or openvino, not {backend!r}")
    if precision not in OPENVINO_PRECISIONS:
        raise ToolkitError(f"OpenVINO computes in {' or '.join(OPENVINO_PRECISIONS)}, not {precision}")
    return {"backend": "openvino", "precision": precision, "fallback": "onnxruntime"}


def _data_files(signature) -> list[Path]:
    """The model's external data files (copied under their own names), none named like a bundle file."""
    files = external_data_files(signature)
    taken = [
        f.name
        for f in files
        if f.name in (ONNX_NAME, ENGINE_NAME, ENGINE_NAME + ".json", LABELS_NAME, MANIFEST_NAME, README_NAME)
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
        "files": {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size} for p in sorted(folder.iterdir())},
    }


def _retarget_engine_manifest(path: Path) -> None:
    """The copied engine manifest names the engine by its bundle file name."""
    data = parse_json(path.read_text(), str(path), "an engine manifest", ArtifactError)
    data["engine_file"] = ENGINE_NAME
    path.write_text(json.dumps(data, indent=2) + "\n")
