"""Bundles for boards, as artifacts: one self-contained folder (`deploy.bundle` writes it).

    DIR/
      model.onnx          the model (the engine is built from it on the board)
      model.plan          optional: a prebuilt engine, only for a board identical to the builder
      model.plan.json     its manifest
      labels.txt          optional: one class name per line
      manifest.json       input spec, precision, inputs/outputs, versions, SHA-256 of every file
      README.md           how to build the engine on the board and run predictions

Opening a bundle verifies every checksum; a missing, truncated or altered file is refused with
a sentence naming it. Which runtime runs it is the runtimes' choice (`deploy.runtimes.open_bundle`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import ArtifactError
from toolkit.files import SMALL_FILE_LIMIT, parse_json

from .labels import resolve_labels
from .metadata import ModelInfo
from .onnx_file import inspect_onnx

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
