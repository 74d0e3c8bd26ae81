"""Writing files and folders so that a reader never sees half of one, and checksums.

A file is written to a temporary name beside its destination and renamed onto it (`atomic_path`,
`write_bytes_atomic`); several files that belong together are prepared in a hidden staging
folder beside their destination and moved into place once they are complete and checked
(`staging_folder`, `publish`); a whole folder (a bundle, a Triton model) is assembled the same
way and renamed into place (`publish_folder`). Being on the same file system, each move is one
atomic rename.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ToolkitError


def check_writable(path: str | Path) -> Path:
    """`path` as a Path, after checking that its folder exists and can be written to."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ToolkitError(f"cannot write {path}: it is a folder; give a file name")
    if not folder.is_dir():
        raise ToolkitError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ToolkitError(f"cannot write {path}: folder {folder} is not writable")
    return path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path`; renamed onto `path` when the block ends without error.

    An exception (or Ctrl-C) inside the block removes the temporary file, so `path` is either
    the complete new file or whatever was there before.
    """
    path = check_writable(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        publish(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def staging_folder(folder: str | Path) -> Iterator[Path]:
    """A hidden temporary folder inside `folder`, removed with whatever is left in it at the end.

    Files are prepared (and checked) there, then moved into place with `publish`.
    """
    folder = Path(folder)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def publish(staged: str | Path, final: str | Path) -> Path:
    """Move a finished file from a staging folder onto `final` (flushed to disk first)."""
    staged, final = Path(staged), Path(final)
    with open(staged, "rb+") as written:
        os.fsync(written.fileno())
    os.chmod(staged, 0o644)
    os.replace(staged, final)
    return final


@contextmanager
def publish_folder(target: str | Path) -> Iterator[Path]:
    """An empty folder to fill, renamed onto `target` when the block ends without error.

    The folder is assembled in a staging folder beside `target`. An existing `target` (the
    caller decided that it may be replaced) is moved aside only once the new folder is
    complete, and removed with the staging folder. An exception (or Ctrl-C) inside the block
    leaves `target` as it was.
    """
    target = Path(target)
    with staging_folder(target.parent if str(target.parent) else Path(".")) as stage:
        folder = stage / "new"
        folder.mkdir()
        yield folder
        for path in folder.rglob("*"):
            if path.is_file():
                with open(path, "rb") as written:
                    os.fsync(written.fileno())
        if target.exists():
            os.replace(target, stage / "previous")
        os.replace(folder, target)
