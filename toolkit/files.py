"""Writing files and folders so that a reader never sees half of one, nothing a user had is lost,
and checksums.

Every output is prepared in a hidden staging folder beside its destination (`staging_folder`)
and moved into place once it is complete and checked (`publish` for a file, `publish_folder`
for a folder such as a bundle or a Triton model); being on the same file system, each move is one
atomic rename. `atomic_path` and `write_bytes_atomic` do this for a single file.

The rules, checked before any work (`check_outputs`):

- an output's folder exists and can be written to; an existing output file is writable (a
  read-only file is refused, not silently replaced) and keeps its permissions when replaced;
- a folder may be replaced only by the caller's decision (`--force`), and never the current
  folder or one that holds an input.

A staging folder carries a marker naming the process that made it. One left by a run that was
killed (SIGKILL, out of memory) is removed by the next run that stages in the same folder, once
its process is gone (or, on another machine, a day later), and a notice says so. SIGINT and
SIGTERM are handled by the commands (`toolkit.launch`): the staging folder goes with them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ToolkitError, clip

STAGING_PREFIX = ".staging-"
STAGING_MARKER = ".resnet-deploy-toolkit-staging"
STALE_ELSEWHERE_S = 24 * 3600  # a staging folder from another machine is stale after a day

_notice: Callable[[str], None] | None = None


def on_notice(handler: Callable[[str], None] | None) -> None:
    """Where notices go (the commands print them on stderr; library callers get none by default)."""
    global _notice
    _notice = handler


def notice(message: str) -> None:
    if _notice is not None:
        _notice(message)


def _folder_of(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def kind_of(path: Path) -> str | None:
    """What a path that exists but is neither a regular file nor a folder is ("a FIFO", "a
    character device", ...; following links); None for a file, a folder or nothing."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    return next((kind for test, kind in _KINDS if test(mode)), None)


def input_file(path: str | Path, name: str, kind: str, error: type[ToolkitError] = ToolkitError) -> Path:
    """`path` as a Path, after checking that it is an existing regular file: a folder is `error`
    "PATH is a folder, not KIND", a FIFO or device "PATH is a FIFO, not KIND", a missing path
    "NAME PATH does not exist"."""
    if not isinstance(path, (str, os.PathLike)):
        raise error(f"{name} must be a path (str or Path), got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise error(f"{path} is a folder, not {kind}")
    if not path.is_file():
        other = kind_of(path)
        raise error(f"{path} is {other}, not {kind}" if other else f"{name} {path} does not exist")
    return path


SMALL_FILE_LIMIT = 16 * 2**20  # a JSON record, a labels file, a list of names: far below this


def read_small_text(path: str | Path, name: str, kind: str, error: type[ToolkitError] = ToolkitError) -> str:
    """The UTF-8 text of a small input file (`input_file`'s checks: a regular file, so never a FIFO
    or /dev/zero), read up to `SMALL_FILE_LIMIT`: a larger one is refused, not read."""
    path = input_file(path, name, kind, error)
    with path.open("rb") as file:
        data = file.read(SMALL_FILE_LIMIT + 1)
    if len(data) > SMALL_FILE_LIMIT:
        raise error(f"{path} is larger than {SMALL_FILE_LIMIT // 2**20} MiB: not {kind}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as failure:
        raise error(f"{path} is not UTF-8 text (byte {failure.start} can't be decoded): not {kind}") from None


def read_json_file(path: str | Path, name: str, kind: str, error: type[ToolkitError] = ToolkitError):
    """A small JSON input file (`read_small_text`), parsed (`parse_json`)."""
    return parse_json(read_small_text(path, name, kind, error), str(path), kind, error)


def parse_json(text: str | bytes, where: str, kind: str, error: type[ToolkitError] = ToolkitError):
    """JSON the toolkit reads (a file's, a manifest's, an answer's, a request's), parsed: not JSON,
    NaN or Infinity (which JSON does not allow), or nested too deep for Python's parser, is one
    sentence: "`where` is not JSON ...: not `kind`". Every JSON read goes through here."""
    import json

    try:
        return json.loads(text, parse_constant=lambda constant: _not_json(where, constant, kind, error))
    except RecursionError:
        raise error(f"{where} is JSON nested too deep to be {kind}") from None
    except json.JSONDecodeError as failure:
        raise error(f"{where} is not JSON ({clip(failure, 120)}): not {kind}") from None
    except UnicodeDecodeError:
        raise error(f"{where} is not JSON (not UTF-8): not {kind}") from None


def _not_json(where: str, constant: str, kind: str, error):
    raise error(f"{where} holds {constant}, which JSON does not allow: not {kind}")


def check_figure_path(path: str, option: str, formats: tuple[str, ...] = ("png",)) -> None:
    """A figure's file name: not standard output, and ending in a format it is drawn in (the
    suffix decides; a PNG is never written into `x.txt`)."""
    if path == "-":
        raise ToolkitError(f"{option} writes a figure file; give it a file name, not '-'")
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in formats:
        names = ", ".join(f".{f}" for f in formats)
        raise ToolkitError(
            f"{option} {path}: the figure is drawn as {names}; give a file name ending in {names.replace(', ', ' or ')}"
        )


def check_writable(path: str | Path) -> Path:
    """`path` as a Path, after checking that it can be written: its folder exists and is
    writable, it is not a folder, and an existing file there is writable (not read-only)."""
    path = Path(path)
    folder = _folder_of(path)
    if path.is_dir():
        raise ToolkitError(f"cannot write {path}: it is a folder; give a file name")
    if not folder.is_dir():
        raise ToolkitError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ToolkitError(f"cannot write {path}: folder {folder} is not writable")
    _probe(folder, path)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise ToolkitError(f"cannot write {path}: it exists and is not a regular file")
    if path.exists() and (not os.access(path, os.W_OK) or not stat.S_IMODE(path.stat().st_mode) & 0o222):
        raise ToolkitError(f"cannot write {path}: the file is read-only; make it writable or choose another name")
    return path


def _probe(folder: Path, path: Path) -> None:
    """Make (and remove) a staging folder in `folder`, as the command will: `os.access` can say
    yes where nothing can be created (root in /proc, a read-only mount), and the answer must come
    before any work, not after it."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
    except OSError as error:
        raise ToolkitError(f"cannot write {path}: folder {folder} is not writable ({error.strerror})") from None


def check_outputs(*paths: str | Path | None, inputs: Iterable[str | Path | None] = ()) -> list[Path]:
    """Check every output path of a command before any work (`check_writable` for each; "-" and
    None, meaning stdout or nothing, are skipped): no output may be one of the `inputs`, or lie
    inside an input that is a folder (an image folder, a bundle), and two outputs may not be the
    same file."""
    checked, seen = [], {}
    sources = [(str(p), Path(p).resolve()) for p in inputs if p is not None]
    for path in paths:
        if path is None or str(path) == "-":
            continue
        path = check_writable(path)
        resolved = path.resolve()
        for given, source in sources:
            if resolved == source:
                raise ToolkitError(f"cannot write {path}: it is an input of this command")
            if source.is_dir() and source in resolved.parents:
                raise ToolkitError(f"cannot write {path}: it is inside {given}, an input folder of this command")
        if resolved in seen:
            raise ToolkitError(f"{seen[resolved]} and {path} are the same file; give each output its own name")
        seen[resolved] = path
        checked.append(path)
    return checked


def check_replaceable_folder(
    target: str | Path, *, force: bool, is_ours: Callable[[Path], bool], what: str, inputs: Iterable[str | Path] = ()
) -> Path:
    """A folder about to be written whole (a bundle, a Triton model): refused when it exists,
    unless `force` and `is_ours(target)` (it is a folder this toolkit wrote, e.g. it has our
    manifest); never the current folder, an ancestor of it, or a folder that holds an input."""
    target = Path(target)
    resolved = target.resolve()
    if resolved == Path.cwd().resolve() or resolved in Path.cwd().resolve().parents:
        raise ToolkitError(f"{target} is the current folder or holds it; give a new folder for the {what}")
    for given in inputs:
        source = Path(given).resolve()
        if resolved == source or resolved in source.parents:
            raise ToolkitError(
                f"{target} holds {source.name}, an input of this command; give a new folder for the {what}"
            )
        if source.is_dir() and source in resolved.parents:
            raise ToolkitError(f"{target} is inside {given}, an input folder of this command; give another folder")
    if not _folder_of(target).is_dir():
        raise ToolkitError(f"cannot write {target}: folder {_folder_of(target)} does not exist")
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ToolkitError(f"{target} exists and is not a folder; choose another name")
    if target.exists():
        if not force:
            raise ToolkitError(f"{target} already exists; choose another folder or pass --force to replace it")
        if not (is_empty_folder(target) or is_ours(target)):
            raise ToolkitError(
                f"{target} exists and is not a {what} (--force replaces only a {what} this toolkit wrote); choose another folder"
            )
    return target


def is_empty_folder(path: Path) -> bool:
    """A real folder (not a link) with nothing in it: replacing it loses nothing (a mount point
    given as the output, say)."""
    try:
        return path.is_dir() and not path.is_symlink() and not any(path.iterdir())
    except OSError:
        return False


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale(stage: Path) -> bool:
    """A staging folder of ours whose run is over (killed before it could clean up)."""
    try:
        marker = json.loads((stage / STAGING_MARKER).read_text())
    except (OSError, ValueError):
        return False  # not recognisably ours: leave it
    if marker.get("host") == socket.gethostname():
        return not _process_alive(int(marker.get("pid", 0)))
    return time.time() - float(marker.get("created", time.time())) > STALE_ELSEWHERE_S


def remove_stale_staging(folder: str | Path) -> list[Path]:
    """Remove the staging folders in `folder` left by runs that were killed; returns them."""
    removed = []
    for stage in Path(folder).glob(f"{STAGING_PREFIX}*"):
        if stage.is_dir() and not stage.is_symlink() and _is_stale(stage):
            shutil.rmtree(stage, ignore_errors=True)
            removed.append(stage)
            notice(f"removed {stage}, left by an earlier run that was interrupted")
    return removed


@contextmanager
def staging_folder(folder: str | Path) -> Iterator[Path]:
    """A hidden temporary folder inside `folder`, removed with whatever is left in it at the end.

    Files are prepared (and checked) there, then moved into place with `publish`. Staging
    folders left in `folder` by killed runs are removed first.
    """
    folder = Path(folder)
    remove_stale_staging(folder)
    stage = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
    (stage / STAGING_MARKER).write_text(
        json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "created": time.time()})
    )
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _mode_for(final: Path) -> int:
    """The permissions a published file gets: an existing file's own, else the umask's."""
    if final.is_file():
        return stat.S_IMODE(final.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def publish(staged: str | Path, final: str | Path) -> Path:
    """Move a finished file from a staging folder onto `final` (flushed to disk first)."""
    staged, final = Path(staged), Path(final)
    with open(staged, "rb+") as written:
        os.fsync(written.fileno())
    os.chmod(staged, _mode_for(final))
    os.replace(staged, final)
    return final


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path`; renamed onto `path` when the block ends without error.

    An exception (or Ctrl-C) inside the block removes the temporary file, so `path` is either
    the complete new file or whatever was there before.
    """
    path = check_writable(path)
    with staging_folder(_folder_of(path)) as stage:
        temporary = stage / path.name
        yield temporary
        publish(temporary, path)


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


@contextmanager
def publish_folder(target: str | Path, *, replace: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """An empty folder to fill, moved onto `target` when the block ends without error.

    The folder is assembled in a staging folder beside `target`; an exception (or Ctrl-C) inside
    the block leaves `target` as it was. Nothing that appeared at `target` while the command ran
    is ever replaced: without `replace`, `target` is claimed with `os.mkdir` (atomic: it fails when
    anything is there) and the new folder renamed onto that empty claim (a rename replaces an empty
    folder, and fails on one that is not empty, so nothing written there meanwhile can be lost).
    Python has no `renameat2(RENAME_NOREPLACE)`, and it is not on every file system; the claim
    works on any POSIX one. With `replace` (the caller's `--force` check, for a `target` that
    existed when it checked), `target` is checked again with it just before it is moved aside.
    """
    with publish_folders([(target, replace)]) as (folder,):
        yield folder


@contextmanager
def publish_folders(targets: list[tuple[str | Path, Callable[[Path], bool] | None]]) -> Iterator[list[Path]]:
    """`publish_folder` for several folders of one parent, published as one step: each is
    assembled in one staging folder, then moved into place in turn; if one can't be (a name too
    long, something that appeared there, Ctrl-C or SIGTERM meanwhile), those already moved are
    taken back and what they replaced is put back, so either all are there or none changed."""
    targets = [(Path(target), replace) for target, replace in targets]
    with staging_folder(_folder_of(targets[0][0])) as stage:
        folders = [stage / f"new{index}" for index in range(len(targets))]
        for folder in folders:
            folder.mkdir()
        yield folders
        for path in stage.rglob("*"):
            if path.is_file():
                with open(path, "rb") as written:
                    os.fsync(written.fileno())
        done: list[tuple[Path, Path, Path | str | None]] = []  # (target, the new one's source, the previous)
        try:
            for index, ((target, replace), folder) in enumerate(zip(targets, folders, strict=True)):
                done.append((target, folder, _move_into_place(target, folder, replace, stage / f"previous{index}")))
        except BaseException:
            for target, folder, previous in reversed(done):
                _take_back(target, folder, previous)
            raise


EMPTY, FILLED = "an empty folder", "filled in place"  # what `_move_into_place` replaced, besides a folder


def _move_into_place(target: Path, folder: Path, replace, previous: Path) -> Path | str | None:
    """Move `folder` onto `target` (see `publish_folder`); where the folder it replaced went, or
    None (nothing was there), EMPTY (an empty folder, renamed over), FILLED (an empty folder that a
    rename can't replace, a mount point: the new files were copied into it)."""
    if replace is not None and (target.exists() or target.is_symlink()):
        empty = is_empty_folder(target)
        if target.is_symlink() or not target.is_dir() or not (empty or replace(target)):
            raise ToolkitError(
                f"{target} is no longer one this command may replace (it changed while this command ran); "
                "nothing was replaced"
            )
        if empty:
            try:
                os.replace(folder, target)  # a rename replaces an empty folder
                return EMPTY
            except OSError:  # a mount point, or another file system: the files go into it
                shutil.copytree(folder, target, dirs_exist_ok=True, symlinks=True)
                return FILLED
        os.replace(target, previous)
        os.replace(folder, target)
        return previous
    _claim(target)
    try:
        os.replace(folder, target)
    except OSError:
        raise ToolkitError(
            f"{target} was written to while this command ran; it was kept and nothing of this run is in it"
        ) from None
    return None


def _take_back(target: Path, folder: Path, previous: Path | str | None) -> None:
    """Undo one `_move_into_place` (a later folder of the same publication could not be moved)."""
    if previous == FILLED:
        for entry in list(target.iterdir()):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        return
    os.replace(target, folder)
    if previous == EMPTY:
        os.mkdir(target)
    elif previous is not None:
        os.replace(previous, target)


def _claim(target: Path) -> None:
    """Make `target` as an empty folder, or say that something appeared there."""
    try:
        os.mkdir(target)
    except FileExistsError:
        raise ToolkitError(
            f"{target} appeared while this command ran; it was kept as it is and nothing was written there"
        ) from None
