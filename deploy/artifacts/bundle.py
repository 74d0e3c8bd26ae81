"""Bundles for boards, as artifacts: one self-contained folder (`deploy.bundle` writes it).

    DIR/
      model.onnx          the model (the engine is built from it on the board)
      model.ort           optional: the model in ONNX Runtime's format, optimized for the board's
                          platform (manifest "ort_format"; `deploy.runtimes.ort_format`)
      model.plan          optional: a prebuilt engine, only for a board identical to the builder
      model.plan.json     its manifest
      labels.txt          optional: one class name per line
      manifest.json       input spec, precision, inputs/outputs, versions, SHA-256 of every file
      README.md           how to install and run it on the board (and build the engine, for a GPU)
      wheels/, board-requirements.txt   optional: the board's install (`deploy.bundle.wheelhouse`)

Opening a bundle verifies every checksum (or, `verify_models=False`, every one but the model
files', which `Bundle.verify` checks for the one that runs); a missing, truncated or altered file is
refused with a sentence naming it. Which runtime runs it is the runtimes' choice
(`deploy.runtimes.open_bundle`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.errors import ArtifactError
from toolkit.files import SMALL_FILE_LIMIT, parse_json

from .labels import resolve_labels
from .metadata import ModelInfo
from .onnx_file import inspect_onnx

BUNDLE_FORMAT = "resnet-bundle/1"
ONNX_NAME, ORT_NAME, ENGINE_NAME, LABELS_NAME, MANIFEST_NAME, README_NAME = (
    "model.onnx",
    "model.ort",
    "model.plan",
    "labels.txt",
    "manifest.json",
    "README.md",
)
MODEL_FILES = (ONNX_NAME, ORT_NAME, ENGINE_NAME)  # the model's forms: checksums verified when one runs


@dataclass
class Bundle:
    """An opened (and verified) bundle folder."""

    folder: Path
    manifest: dict
    info: ModelInfo
    onnx: Path
    engine: Path | None
    labels: list[str] | None
    reads: dict[str, tuple[str, ...]] = field(default_factory=dict)  # a model file -> the files it reads
    verified: set[str] = field(default_factory=set)  # the files whose checksums were verified

    @classmethod
    def open(cls, folder: str | Path, *, verify_models: bool = True) -> Bundle:
        """Read `manifest.json` and verify every file it lists: a regular file inside the folder
        (a symbolic link is refused, even to a file inside), of the listed size and SHA-256.

        `verify_models` False leaves the model files' checksums (`MODEL_FILES` and the ONNX file's
        external data; their sizes are checked) to `verify`, called for the one that runs, while
        its runtime loads it (`deploy.runtimes.open_bundle`): a bundle carries the model in two
        or three forms, and hashing them all is a board's cold start spent on files it never reads."""
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
        if ONNX_NAME not in files:
            raise ArtifactError(f"{manifest_file} lists no {ONNX_NAME}")
        for name, entry in files.items():  # names, kinds and sizes first: checksums below
            _verify_member(folder, name, entry, checksum=False)
        try:  # its structure (which external data it reads), before its checksum is verified
            data = inspect_onnx(folder / ONNX_NAME).external_data
        except ArtifactError:
            _verify_member(folder, ONNX_NAME, files[ONNX_NAME])  # an altered file: that is the reason
            raise
        for location in data:
            if location not in files or location == MANIFEST_NAME:
                raise ArtifactError(
                    f"bundle {ONNX_NAME} reads its weights from {location}, which the manifest does not list: "
                    "no checksum covers it"
                )
        small = [name for name in files if name not in MODEL_FILES and name not in data]
        for name in small:  # before any is read
            _verify_member(folder, name, files[name])
        labels = resolve_labels(folder / LABELS_NAME, info.num_classes) if LABELS_NAME in files else None
        engine = folder / ENGINE_NAME if ENGINE_NAME in files else None
        bundle = cls(folder, manifest, info, folder / ONNX_NAME, engine, labels, verified=set(small))
        bundle.reads = {ONNX_NAME: (ONNX_NAME, *data), ORT_NAME: (ORT_NAME,), ENGINE_NAME: (ENGINE_NAME,)}
        if verify_models:
            bundle.verify(*MODEL_FILES)
        return bundle

    def verify(self, *models: str) -> None:
        """The checksums of these model files (`MODEL_FILES` names) and of the files each reads (an
        ONNX file's external data), where listed and not verified yet."""
        self._verify([name for model in models for name in self.reads.get(model, ())])

    def _verify(self, names: list[str]) -> None:
        for name in names:
            if name in self.manifest["files"] and name not in self.verified:
                _verify_member(self.folder, name, self.manifest["files"][name])
                self.verified.add(name)

    @property
    def ort(self) -> Path | None:
        """`model.ort`, where the bundle carries one (and its manifest says for what: `ort_format`)."""
        return self.folder / ORT_NAME if ORT_NAME in self.manifest["files"] else None

    @property
    def ort_format(self) -> dict:
        """The manifest's record of `model.ort`: platform, ONNX Runtime release, x86-64 flags."""
        record = self.manifest.get("ort_format")
        return record if isinstance(record, dict) else {}

    @property
    def runtime(self) -> dict:
        """The runtime the bundle names for its ONNX file ({"backend": "openvino", "precision": ...}),
        or {} for ONNX Runtime."""
        named = self.manifest.get("runtime")
        return named if isinstance(named, dict) else {}


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


def _verify_member(folder: Path, name, entry, checksum: bool = True) -> None:
    """A listed file: a plain name in the folder, a regular file (no link), of the listed size and
    (`checksum`) SHA-256."""
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
        if not checksum:
            return
        digest = hashlib.sha256()
        while block := stream.read(1 << 20):
            digest.update(block)
    if digest.hexdigest() != sha256:
        raise ArtifactError(f"bundle file {path} does not match its checksum in {MANIFEST_NAME}: altered or corrupt")
