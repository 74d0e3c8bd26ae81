"""The CI rule of tests/ci_extras.py, run on a throwaway test file in a pytest of its own: under
CI=true a skip for a missing package of an extra `make test` installs fails; elsewhere it stays a
skip; a skip for the `gpu` extra (what the machine can't have) stays a skip everywhere."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
CASES = {
    "ray": 'pytest.importorskip("no_such_module_x", reason="Ray Serve is not installed (pip install \'.[ray]\')")',
    "board": 'pytest.skip("the aarch64 board check can\'t run here: apt-get install qemu-user-static", allow_module_level=True)',
    "gpu": "pytest.skip(\"needs TensorRT and an NVIDIA GPU (pip install '.[gpu]')\", allow_module_level=True)",
}


@pytest.mark.parametrize("extra, ci, outcome", [("ray", True, "failed"), ("ray", False, "skipped"),
                                                ("board", True, "failed"), ("board", False, "skipped"), ("gpu", True, "skipped")])  # fmt: skip
def test_a_skip_for_a_missing_extra_fails_under_ci(extra, ci, outcome, tmp_path):
    (tmp_path / "test_case.py").write_text(f"import pytest\n\n{CASES[extra]}\n\n\ndef test_x():\n    pass\n")
    environment = {k: v for k, v in os.environ.items() if k != "CI"} | ({"CI": "true"} if ci else {})
    environment["PYTHONPATH"] = str(TESTS)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "ci_extras", "-q", "-rs", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    summary = done.stdout.strip().splitlines()[-1]
    if outcome == "failed":
        assert done.returncode in (1, 2) and ("error" in summary or "failed" in summary), (
            done.stdout
        )  # 2: at collection
        assert "under CI, every extra `make test` installs must be there" in done.stdout or (
            "under CI, the aarch64 board check must run" in done.stdout
        ), done.stdout
    else:  # 5: every test of the run was skipped with its module
        assert done.returncode in (0, 5) and "skipped" in summary and "error" not in summary, done.stdout
