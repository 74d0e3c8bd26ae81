"""Plumbing shared by the commands' `cli.py` modules: error handling, option groups, output.

Every command is a `ToolkitCommand` (or `ToolkitGroup`): a user error, whether click's (a bad
option value) or the library's (`ToolkitError`, a file that can't be read or written), becomes
one line `PROG: what was wrong` on stderr and exit status 2. Anything else is a bug and keeps its
traceback. The command's callback returns its exit status (0, or 1 for "ran, but a check
failed", such as validation). `-h` works like `--help` everywhere.

Options that belong together are declared once, as an option group that parses into the
library's own object, as Polygraphy's argument groups do: `option_group(name, build, ...)` adds
click options to a command and hands the command one value, `build(**their values)`, under
`name` (`resnet.cli.model_options` gives a `resnet.ModelOptions`, `export.cli.threshold_options`
a `Thresholds`, `benchmark.cli.loop_options` a `LoopSettings`, ...). `options(...)` combines
click options into one decorator without building anything; `json_option` is one option.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import click

from .errors import ToolkitError
from .optional import install_hint

USAGE_ERROR = 2
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


def _one_line(prog: str, message: str) -> None:
    text = " ".join(str(message).split())
    click.echo(f"{prog}: {text}", err=True)


def _stdout_closed() -> bool:
    """Whether standard output is closed (`>&-`): Python then has no `sys.stdout`, and whatever a
    command prints would vanish while it exits 0."""
    if sys.stdout is None:
        return True
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # not a file (a test's buffer): open
        return False
    try:
        os.fstat(descriptor)
    except OSError:
        return True
    return False


class _OneLineErrors:
    """Mixin for click commands: user errors as one line and exit 2 (see the module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("context_settings", CONTEXT_SETTINGS)
        super().__init__(*args, **kwargs)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: D102
        from .files import on_notice

        prog = prog_name or self.name
        on_notice(lambda message: _one_line(prog, f"note: {message}"))
        if _stdout_closed():
            _one_line(prog, "standard output is closed, so what this command prints would be lost; redirect it instead")
            sys.exit(USAGE_ERROR)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            sys.stdout.flush()  # a write error (a full disk) is this command's error, not a message at exit
        except click.exceptions.Exit as done:
            sys.exit(done.exit_code)
        except click.Abort as stop:
            from .launch import Terminated

            terminated = isinstance(stop.__cause__ or stop.__context__, Terminated)
            what = "terminated" if terminated else "interrupted"
            _one_line(prog, f"{what} (files are only ever written complete, so nothing half-written was left)")
            sys.exit(143 if terminated else 130)
        except click.ClickException as error:
            _one_line(prog, error.format_message())
            sys.exit(USAGE_ERROR if isinstance(error, click.UsageError) else error.exit_code)
        except ToolkitError as error:
            _one_line(prog, str(error))
            sys.exit(USAGE_ERROR)
        except ModuleNotFoundError as error:  # an extra's package, on an install without that extra
            hint = install_hint(error.name)
            if hint is None:
                raise
            _one_line(prog, f"this needs {error.name}, which is not installed here: {hint}")
            sys.exit(USAGE_ERROR)
        except BrokenPipeError:  # the reader stopped reading (`| head`): stop quietly, as click does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
            sys.exit(1)
        except OSError as error:  # a file that can't be read or written, a full disk
            where = f": {error.filename}" if error.filename else ""
            _one_line(prog, f"{error.strerror or error}{where}")
            sys.exit(USAGE_ERROR)
        sys.exit(result if isinstance(result, int) else 0)


class ToolkitCommand(_OneLineErrors, click.Command):
    pass


class ToolkitGroup(_OneLineErrors, click.Group):
    command_class = ToolkitCommand


def options(*decorators: Callable) -> Callable:
    """Several click options as one decorator: an option group that commands share."""

    def apply(function: Callable) -> Callable:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def option_group(name: str, build: Callable[..., object], *decorators: Callable) -> Callable:
    """click options that reach the command as one value: the command receives `name`, which is
    `build(**values of those options)` (build raises a `ToolkitError` or `click.BadParameter`
    for values that don't go together: one line and exit 2, like any bad option)."""
    probe = options(*decorators)(lambda: None)
    keys = [parameter.name for parameter in probe.__click_params__]

    def apply(function: Callable) -> Callable:
        @functools.wraps(function)
        def with_group(*args, **kwargs):
            values = {key: kwargs.pop(key) for key in keys}
            return function(*args, **{name: build(**values)}, **kwargs)

        return options(*decorators)(with_group)

    return apply


def json_option(what: str = "the report") -> Callable:
    """`--json PATH`: write `what` as JSON to a file, or to stdout with '-' (nothing else printed)."""
    return click.option(
        "--json",
        "json_path",
        default=None,
        help=f"Write {what} as JSON to this file ('-': stdout, nothing else printed).",
    )


def parse_floats(text: str, count: int, what: str) -> tuple[float, ...]:
    """`"0.5,0.5,0.5"` -> (0.5, 0.5, 0.5); a `click.BadParameter` naming `what` otherwise."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        raise click.BadParameter(f"{what} takes {count} comma-separated numbers, got {text!r}")
    return values


def parse_ints(text: str, what: str) -> list[int]:
    """`"8,32"` -> [8, 32]; a `click.BadParameter` naming `what` otherwise."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{what} takes comma-separated integers, got {text!r}") from None


def parse_size(text: str) -> tuple[int, int]:
    """`"224"` -> (224, 224); `"256x192"` -> (256, 192) (height x width)."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values, default=0) < 1:
        raise click.BadParameter(f"input size is one positive number or HEIGHTxWIDTH, got {text!r}")
    return (values[0], values[-1])


def write_json(path: str, data: dict) -> None:
    """`data` as indented JSON to `path`, or to stdout when `path` is "-"."""
    text = json.dumps(data, indent=2, default=str) + "\n"
    if path == "-":
        click.echo(text, nl=False)
        return
    from .files import write_text_atomic

    write_text_atomic(Path(path), text)


def progress_printer(enabled: bool):
    """A progress callback that prints to stderr when `enabled` and stderr is a terminal."""
    if not enabled or not sys.stderr.isatty():
        return None
    return lambda message: click.echo(f"  ... {message}", err=True)


class ProgressBar:
    """One line on stderr, redrawn at most ten times a second: `bar(text, fraction)`. Draws only
    on a terminal (and when `enabled`), so pipes and `--json -` stay clean."""

    def __init__(self, enabled: bool = True) -> None:
        import time

        self.enabled = enabled and sys.stderr.isatty()
        self._clock, self._last = time.monotonic, 0.0

    def __call__(self, text: str, fraction: float) -> None:
        if not self.enabled:
            return
        now = self._clock()
        if fraction < 1.0 and now - self._last < 0.1:
            return
        self._last = now
        filled = int(fraction * 30)
        sys.stderr.write(f"\r  {text[:60]:<60} [{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%}")
        if fraction >= 1.0:
            sys.stderr.write("\r" + " " * 100 + "\r")
        sys.stderr.flush()


def run_script(prog: str, main: Callable[[], int]) -> int:
    """A `python -m` script's `main`, with the commands' rule: a `ToolkitError`, or a missing
    package of an extra, is one line on stderr and exit status 2."""
    try:
        return main()
    except ToolkitError as error:
        _one_line(prog, str(error))
    except ModuleNotFoundError as error:
        hint = install_hint(error.name)
        if hint is None:
            raise
        _one_line(prog, f"this needs {error.name}, which is not installed here: {hint}")
    return USAGE_ERROR
