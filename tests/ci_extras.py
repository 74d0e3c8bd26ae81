"""Under CI (`CI=true`), a test skipped because a package of an extra that `make test` installs is
missing fails the run, with the install line: a broken install must not turn whole suites into
green skips. So does a skip of the aarch64 board check (tests/deploy/test_board_aarch64.py), which
every landing must pass. Skips for what the machine can't have (a GPU, TensorRT: the `gpu` extra,
which `make test` does not install) stay skips. The extras are the Makefile's own `EXTRAS`."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"
HINT = re.compile(r"pip install '\.\[([a-z0-9_,-]+)\]'")
BOARD = "the aarch64 board check can't run here"  # tests/deploy/test_board_aarch64.py's skip


def installed_extras() -> set[str]:
    """The extras `make test` installs (the Makefile's EXTRAS line)."""
    found = re.search(r"^EXTRAS\s*:=\s*(\S+)", MAKEFILE.read_text(), re.M) if MAKEFILE.is_file() else None
    return set(found.group(1).split(",")) if found else set()


def broken_install(reason: str) -> bool:
    """Whether a skip's reason names an extra `make test` installs (its package is missing), or is
    the board check's."""
    named = {extra for match in HINT.finditer(reason) for extra in match.group(1).split(",")}
    return bool(named & installed_extras()) or BOARD in reason


def _fail_if_broken(report) -> None:
    if not report.skipped or os.environ.get("CI", "").lower() not in ("true", "1", "yes"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    if broken_install(reason):
        report.outcome = "failed"
        what = (
            "the aarch64 board check must run" if BOARD in reason else "every extra `make test` installs must be there"
        )
        report.longrepr = f"under CI, {what}: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_if_broken(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_if_broken(outcome.get_result())
