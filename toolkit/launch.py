"""The commands' entry points (setup.cfg's console_scripts).

Each imports its command only after the signal handling is in place: Ctrl-C while torch is
still importing is one line and exit 130 (SIGTERM or SIGHUP: 143), not a traceback nor a C++
abort; once the command runs, SIGTERM (and SIGHUP) is handled like Ctrl-C, so that a terminated
run removes its staging folder like an interrupted one does (exit 143), and a signal that comes
while a module imports (torch, imported late by most commands) acts once that import ended.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import time

# When the launcher started (just after Python itself): what a command imported after it is its
# import time (`imported_seconds`), reported in a board's cold start.
STARTED = time.perf_counter()
IMPORTED: float | None = None  # seconds the command's modules took to import, once they have

COMMANDS = {
    "resnet-export": ("export.cli.export_command", "main"),
    "resnet-build": ("export.cli.build_command", "build_main"),
    "resnet-compare": ("export.cli.compare_command", "compare_main"),
    "resnet-bench": ("benchmark.cli", "main"),
    "resnet-deploy": ("deploy.cli", "main"),
    "resnet-eval": ("deploy.cli", "eval_main"),
}


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP), raised where the program is, so that `finally` blocks clean up as for Ctrl-C."""


DEFER_LIMIT_S = 5.0  # how long a signal waits for an import to end before it acts anyway
_deferred: dict[int, float] = {}  # signal -> when it first arrived during an import


def _importing() -> bool:
    """Whether a module's code is running its import now (importlib marks its spec so)."""
    return any(getattr(getattr(m, "__spec__", None), "_initializing", False) for m in list(sys.modules.values()))


def _when_no_import(act):
    """A handler that does `act` (raise), but not while a module is importing: torch runs Python
    code from C++ while it imports (pybind11), and an exception through those frames aborts the
    process with a C++ message instead of cleaning up. Then the signal is sent again 50 ms later,
    until the import ends (at most DEFER_LIMIT_S)."""

    def handler(signum, frame):
        now = time.monotonic()
        if _importing() and now - _deferred.setdefault(signum, now) < DEFER_LIMIT_S:
            threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
            return
        _deferred.pop(signum, None)
        act()

    return handler


def _terminate() -> None:
    raise Terminated()


def _interrupt() -> None:
    raise KeyboardInterrupt()


def handle_running() -> None:
    """The signals while a command runs: Ctrl-C raises KeyboardInterrupt, SIGTERM and SIGHUP (the
    terminal closed) raise Terminated, so that `finally` blocks clean up; each waits for an import
    in progress to end."""
    _handle(
        {
            signal.SIGINT: _when_no_import(_interrupt),
            signal.SIGTERM: _when_no_import(_terminate),
            signal.SIGHUP: _when_no_import(_terminate),
        }
    )


def _while_starting(name: str):
    """The handler of SIGINT, SIGTERM and SIGHUP while the command imports: one line and out at once.
    An exception can't be raised there: torch runs Python code from C++ while it imports (pybind11),
    and an exception through those frames aborts the process with a C++ message. Nothing is
    written yet, so there is nothing to clean up."""

    def stop(signum, frame):
        interrupted = signum == signal.SIGINT
        word = "interrupted" if interrupted else "terminated"
        print(f"{name}: {word} while starting; nothing was written", file=sys.stderr, flush=True)
        os._exit(130 if interrupted else 143)

    return stop


def _handle(handlers: dict) -> None:
    """Each signal to its handler, except one already ignored (under nohup, or in the background)."""
    for signum, handler in handlers.items():
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, handler)


def launch(name: str) -> None:
    starting = _while_starting(name)
    _handle({signal.SIGINT: starting, signal.SIGTERM: starting, signal.SIGHUP: starting})
    module, attribute = COMMANDS[name]
    global IMPORTED
    try:
        command = getattr(importlib.import_module(module), attribute)
        IMPORTED = time.perf_counter() - STARTED
        handle_running()
    except ModuleNotFoundError as missing:  # resnet-export, resnet-build, resnet-compare on a board
        from .optional import install_hint

        hint = install_hint(missing.name)
        if hint is None:
            raise
        print(f"{name}: this needs {missing.name}, which is not installed here: {hint}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        print(
            f"{name}: {'terminated' if terminated else 'interrupted'} while starting; nothing was written",
            file=sys.stderr,
        )
        sys.exit(143 if terminated else 130)
    command(prog_name=name)


def resnet_export() -> None:
    launch("resnet-export")


def resnet_build() -> None:
    launch("resnet-build")


def resnet_compare() -> None:
    launch("resnet-compare")


def resnet_bench() -> None:
    launch("resnet-bench")


def resnet_deploy() -> None:
    launch("resnet-deploy")


def resnet_eval() -> None:
    launch("resnet-eval")
