"""Numbers a user gives: finite, and within sane, documented bounds. One validator for every
option and library argument, so that `nan`, `inf` or an absurd size is one sentence, not a hang,
a runaway allocation or a NaN in a file.

The bounds (`LIMITS`) are generous for real use and small enough that a mistake is refused
before it allocates memory or loops forever.
"""

from __future__ import annotations

import math
import numbers

import click

from .errors import ToolkitError

# what -> (low, high): the documented bounds of the toolkit's numeric options
LIMITS = {
    "batch": (1, 4096),  # images per batch (benchmark sweeps, export example batch, engine profiles)
    "threads": (1, 1024),  # CPU threads for ONNX Runtime and PyTorch
    "input size": (8, 2048),  # pixels per side of a model's input
    "classes": (1, 100_000),  # a classifier's outputs
    "seconds": (0.0, 24 * 3600.0),  # warm-up and measuring durations
    "iterations": (1, 10_000_000),
    "workspace MiB": (1, 1 << 24),  # 16 TiB
    "top-k": (1, 100_000),
    "int32": (0, 2**31 - 1),  # Triton's int32 config fields
    "uint64": (0, 2**64 - 1),
    "images": (1, 100_000),  # images read from a folder or drawn at random (calibration, comparison)
    "milliseconds": (0.0, 3.6e6),  # a latency budget (an hour)
}


def check_number(
    value, what: str, *, low=None, high=None, integer: bool = False, low_open: bool = False, limit: str | None = None
):
    """`value` when it is a finite number within [low, high] (an integer when `integer`); else a
    `ToolkitError` naming `what` and the accepted range. `limit` names a row of `LIMITS`."""
    if limit is not None:
        low, high = LIMITS[limit]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ToolkitError(f"{what} must be a number, got {value!r}")
    if integer and not float(value).is_integer():
        raise ToolkitError(f"{what} must be a whole number, got {value}")
    if not math.isfinite(value):
        raise ToolkitError(f"{what} must be a finite number, got {value}")
    too_low = low is not None and (value <= low if low_open else value < low)
    if too_low or (high is not None and value > high):
        lower = "" if low is None else f"{'above' if low_open else 'at least'} {_shown(low)}"
        upper = "" if high is None else f"at most {_shown(high)}"
        raise ToolkitError(f"{what} must be {' and '.join(filter(None, [lower, upper]))}, got {_shown(value)}")
    return int(value) if integer else float(value) + 0.0  # + 0.0: -0 is 0 (never "<= -0" in a message)


def _shown(value) -> str:
    """A number as short as it can be without changing it (1e-05, 0.5, 1.0000001)."""
    if isinstance(value, numbers.Integral):
        return str(value)
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def shown_apart(a: float, b: float, percent: bool = False) -> tuple[str, str]:
    """`a` and `b` with as many decimals as it takes for two different numbers to look different
    (never "99.60% is below 99.60%"); percentages with `percent`."""
    scale, suffix = (100.0, "%") if percent else (1.0, "")
    for decimals in range(2 if percent else 3, 13):
        first, second = f"{a * scale:.{decimals}f}", f"{b * scale:.{decimals}f}"
        if first != second or a == b:
            break
    return first + suffix, second + suffix


class Number(click.ParamType):
    """A click option type: a number checked by `check_number` (finite, within bounds)."""

    def __init__(self, *, low=None, high=None, integer: bool = False, low_open: bool = False, limit: str | None = None):
        if limit is not None:
            low, high = LIMITS[limit]
        self.low, self.high, self.integer, self.low_open = low, high, integer, low_open
        self.name = "integer" if integer else "float"

    def convert(self, value, param, ctx):
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(value) if self.integer else float(value)
            except (TypeError, ValueError):
                kind = "a whole number" if self.integer else "a number"
                self.fail(f"{value!r} is not {kind}", param, ctx)
        what = f"--{param.name.replace('_', '-')}" if param is not None else "the value"
        try:
            return check_number(
                number, what, low=self.low, high=self.high, integer=self.integer, low_open=self.low_open
            )
        except ToolkitError as error:
            self.fail(str(error).removeprefix(f"{what} "), param, ctx)

    def get_metavar(self, param, ctx=None):
        low = "" if self.low is None else f"{self.low:g}"
        high = "" if self.high is None else f"{self.high:g}"
        return f"{'INTEGER' if self.integer else 'FLOAT'} {low}..{high}" if (low or high) else None


def available_memory() -> int | None:
    """Bytes of memory this machine can give a new allocation now (Linux's MemAvailable), or
    None where it can't be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(needed: float, what: str, remedy: str) -> None:
    """A `ToolkitError` when `what` would need more than half the memory available now."""
    available = available_memory()
    if available is not None and needed > available / 2:
        raise ToolkitError(
            f"{what} needs about {needed / 2**30:.1f} GiB of memory and this machine has {available / 2**30:.1f} GiB "
            f"available; {remedy}"
        )
