"""What keeps a served repository up: the server dies with `serve` (Linux's parent-death signal),
each server's files (its folder, its shared-memory regions) are held locked for its life, so that
a later `serve` removes exactly those of servers that are gone (`ServerFolder`), and what
`TritonServer.watch` needs to say when the server exits on its own (with its signal), hangs (its
state), or a model's Python process (its stub) dies or stops while the server runs on
(`StubWatch`).

Why: Triton 2.51's own binary can be ended by one request (a KServe JSON shape of a billion
rows: SIGABRT; JSON nested 50,000 deep: SIGSEGV), and a stub that dies leaves its model failing
every request ("Stub process is not healthy") while the server's health endpoints answer 200.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import shutil
import signal
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

SHM = Path("/dev/shm")
PREFIX = "resnet_deploy_"  # shared-memory regions: resnet_deploy_<serve pid>_<folder's random part>_<Triton's>
FOLDER_PREFIX = "resnet-deploy-serve-"  # temporary folders: resnet-deploy-serve-<serve pid>-<random>
LOCK = "server.lock"  # in each folder: held (flock) by serve and the server for the server's life
STUB = "triton_python_backend_stub"
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """For `Popen(preexec_fn=...)`: the child gets SIGKILL when the process that started it ends,
    however it ends (SIGKILL included). Linux only; elsewhere nothing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


class ServerFolder:
    """A server's temporary folder (its backends, its log) and the prefix of its shared-memory
    regions, proved to be this toolkit's and alive by a lock: `LOCK` in the folder, held (flock)
    from creation on by this process and by the server, which inherits it (`lock_fd`, for
    `Popen(pass_fds=...)`). A lock, unlike a pid, says whether its holder is alive across PID
    namespaces (a container with a shared /tmp or /dev/shm) and the reuse of pids."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-"))  # 0700: this user's alone
        self.shm_prefix = f"{PREFIX}{os.getpid()}_{self.path.name.rsplit('-', 1)[1]}_"
        self.lock_fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(
            self.lock_fd, json.dumps({"written_by": "resnet-deploy serve", "shm_prefix": self.shm_prefix}).encode()
        )

    def remove(self) -> None:
        """Remove its regions and the folder (the server has stopped), then let go of the lock."""
        remove_own_regions(self.shm_prefix)
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.close(self.lock_fd)


def remove_own_regions(prefix: str) -> int:
    """Remove the shared-memory regions of this user whose names start with `prefix` (a server's,
    after it stopped); how many."""
    return _remove(path for path in SHM.glob(f"{prefix}*") if _owned(path, directory=False))


def remove_leftovers() -> int:
    """Remove what servers that are gone (their `serve` killed) left: each folder of this user
    whose lock nobody holds any longer, with its shared-memory regions; how many folders. Another
    user's entries, entries that carry no lock of this toolkit's, and those of a live server (in
    any PID namespace) stay."""
    removed = 0
    for folder in _entries(Path(tempfile.gettempdir())):
        if not folder.name.startswith(FOLDER_PREFIX) or not _owned(folder, directory=True):
            continue
        try:
            fd = os.open(folder / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue  # no lock: not provably ours
        try:
            if not _owned_fd(fd):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # held: its server (or its serve) is alive
            prefix = _recorded_prefix(fd)
            if prefix is not None:
                remove_own_regions(prefix)
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
        finally:
            os.close(fd)
    return removed


def _owned(path: Path, directory: bool) -> bool:
    """A real folder (or a plain file) of this user, not a link."""
    try:
        info = path.lstat()
    except OSError:
        return False
    kind = stat.S_ISDIR(info.st_mode) if directory else stat.S_ISREG(info.st_mode)
    return kind and info.st_uid == os.geteuid()


def _owned_fd(fd: int) -> bool:
    info = os.fstat(fd)
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid()


def _recorded_prefix(fd: int) -> str | None:
    """The shared-memory prefix a lock file records (None for anything else than what
    `ServerFolder` writes)."""
    try:
        record = json.loads(os.read(fd, 4096))
        prefix = record["shm_prefix"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return prefix if isinstance(prefix, str) and prefix.startswith(PREFIX) and "/" not in prefix else None


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _remove(paths) -> int:
    removed = 0
    for path in paths:
        try:
            path.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def stubs(server_pid: int) -> dict[int, str]:
    """The model stubs of a server: {pid: the model's name}, from /proc (children of the server
    whose command is the Python backend's stub; its first argument is the model's file)."""
    found = {}
    for entry in _entries(Path("/proc")):
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if parent == server_pid and arguments and arguments[0].endswith(STUB.encode()):
            found[int(entry.name)] = _model_of(arguments)
    return found


class StubWatch:
    """The model stubs of one server, looked at again and again (`died`): a stub gone while its
    model is still READY, and not replaced, died (the server would fail its every request to it);
    so is one stopped (SIGSTOP) at two looks in a row: the server fails every request to its model
    with "Stub process ... is not healthy" while the model still reports ready. (A stub stopped by
    a debugger, state `t`, is left alone.) A model unloaded (the repository API) ends its stubs:
    no death. One loaded again starts new stubs, then ends the old: the stubs a model had when new
    ones of it appear are replaced. (Not by start times: a killed instance would look replaced by a
    sibling started a tick later.)"""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.known = stubs(server_pid)
        self.replaced: set[int] = set()
        self.stopped: set[int] = set()  # stubs found stopped at the last look

    def died(self, ready_models: Callable[[set[str]], set[str] | None]) -> str | None:
        """What died, in words, or None; `ready_models(names)` asks the server which of those models
        are ready (None when it doesn't answer: asked again at the next look; a hung server is
        caught so)."""
        alive = stubs(self.server_pid)
        reloaded = {name for pid, name in alive.items() if pid not in self.known}
        self.replaced |= {pid for pid, name in self.known.items() if name in reloaded}
        gone = {pid: name for pid, name in self.known.items() if pid not in alive and pid not in self.replaced}
        if gone:
            ready = ready_models(set(gone.values()))
            if ready is None:
                return None
            for pid, name in gone.items():
                if name in ready:
                    return (
                        f"the Python process of model {name} (pid {pid}) died; the server would fail its every request"
                    )
        stopped = {pid for pid in alive if _state(pid) == "T"}
        for pid in sorted(stopped & self.stopped):
            with contextlib.suppress(OSError):  # a stopped process never acts on the server's SIGTERM
                os.kill(pid, signal.SIGKILL)
            return (
                f"the Python process of model {alive[pid]} (pid {pid}) is stopped (SIGSTOP); the server fails its "
                "every request"
            )
        self.known, self.replaced, self.stopped = alive, self.replaced & set(alive), stopped
        return None


def _state(pid: int) -> str:
    """A process's state letter from /proc (R, S, D, T, t, Z, ...); "" when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _model_of(arguments: list[bytes]) -> str:
    """The model's name from a stub's arguments (REPOSITORY/NAME/VERSION/model.py)."""
    model = next((a.decode(errors="replace") for a in arguments[1:] if a.endswith(b"model.py")), "")
    parts = Path(model).parts
    return parts[-3] if len(parts) >= 3 else "a model"


def exit_reason(status: int) -> str:
    """A process's exit status in words: its signal's name, or the status."""
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return f"exit status {status}"


def process_state(pid: int) -> str:
    """A hung process's state where /proc tells one worth saying (stopped, or waiting on a device),
    as a clause to end a sentence with; else ""."""
    return {
        "T": " (it is stopped: SIGSTOP, or Ctrl-Z in a terminal)",
        "D": " (it waits on a disk or a device)",
    }.get(_state(pid), "")
