"""What keeps a served repository up: the server dies with `serve` (Linux's parent-death signal),
its shared-memory regions and folders carry the pid of the `serve` that made them (so a later
`serve` removes those of one that is gone), and what `TritonServer.watch` needs to say when the
server exits on its own (with its signal), hangs (its state), or a model's Python process (its
stub) dies while the server runs on (`StubWatch`).

Why: Triton 2.51's own binary can be ended by one request (a KServe JSON shape of a billion
rows: SIGABRT; JSON nested 50,000 deep: SIGSEGV), and a stub that dies leaves its model failing
every request ("Stub process is not healthy") while the server's health endpoints answer 200.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

SHM = Path("/dev/shm")
PREFIX = "resnet_deploy_"  # shared-memory regions: resnet_deploy_<serve pid>_<Triton's own suffix>
FOLDER_PREFIX = "resnet-deploy-serve-"  # temporary folders: resnet-deploy-serve-<serve pid>-<random>
STUB = "triton_python_backend_stub"
PR_SET_PDEATHSIG = 1


def shm_prefix(pid: int | None = None) -> str:
    """The prefix of the shared-memory regions of the server this process starts."""
    return f"{PREFIX}{pid or os.getpid()}_"


def folder_prefix(pid: int | None = None) -> str:
    return f"{FOLDER_PREFIX}{pid or os.getpid()}-"


def die_with_parent() -> None:
    """For `Popen(preexec_fn=...)`: the child gets SIGKILL when the process that started it ends,
    however it ends (SIGKILL included). Linux only; elsewhere nothing."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def remove_own_regions(prefix: str) -> int:
    """Remove the shared-memory regions whose names start with `prefix` (a server's, after it
    stopped); how many."""
    return _remove(SHM.glob(f"{prefix}*"))


def remove_leftovers() -> int:
    """Remove the shared-memory regions and temporary folders of `serve` processes that are gone
    (killed, or their server crashed): how many. Those of a running `serve` stay."""
    found = []
    for pattern, folder in ((re.compile(rf"^{PREFIX}(\d+)_"), SHM), (re.compile(rf"^{FOLDER_PREFIX}(\d+)-"), None)):
        place = folder or Path(tempfile.gettempdir())
        found += [p for p in _entries(place) if (m := pattern.match(p.name)) and not _alive(int(m.group(1)))]
    return _remove(found)


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: not ours to judge
    return True


def _remove(paths) -> int:
    removed = 0
    for path in paths:
        try:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
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
    model is still READY, and not replaced, died (the server would fail its every request to it).
    A model unloaded (the repository API) ends its stubs: no death. One loaded again starts new
    stubs, then ends the old: the stubs a model had when new ones of it appear are replaced. (Not
    by start times: a killed instance would look replaced by a sibling started a tick later.)"""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.known = stubs(server_pid)
        self.replaced: set[int] = set()

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
        self.known, self.replaced = alive, self.replaced & set(alive)
        return None


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
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""
    return {
        "T": " (it is stopped: SIGSTOP, or Ctrl-Z in a terminal)",
        "D": " (it waits on a disk or a device)",
    }.get(state, "")
