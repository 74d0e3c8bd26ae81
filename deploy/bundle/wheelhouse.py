"""A board's install, carried in its bundle: `wheels/` holds the toolkit's own wheel, the wheels of
what the board runs (the `cpu` and `images` extras, and `openvino` when the bundle names it) for
the board's platform and Python, pinned to the versions installed here, and pip's own wheel; and
`board-requirements.txt` pins every one of them by SHA-256, so that

    pip install --no-index --find-links wheels --require-hashes -r board-requirements.txt

installs the toolkit with no network, and refuses a wheel that is not the one written (the bundle's
manifest, in turn, covers `board-requirements.txt`). The wheels are fetched here, where there is a
network, with pip's own `download --platform` (binary wheels only: nothing is built for the board).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from toolkit import NAME
from toolkit.errors import ToolkitError, clip

WHEELS, REQUIREMENTS = "wheels", "board-requirements.txt"
PLATFORMS = {
    "aarch64": ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"),
    "x86_64": ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
}
PYTHON = re.compile(r"^3\.(\d{1,2})$")


def board_extras(runtime: dict | None) -> tuple[str, ...]:
    """The toolkit's extras a board needs to run a bundle: ONNX Runtime and Pillow, and OpenVINO when
    the bundle names it."""
    return ("cpu", "images", *(("openvino",) if (runtime or {}).get("backend") == "openvino" else ()))


def check_platform(platform: str, python: str | None) -> str:
    """The Python version ("3.11") for a wheelhouse of `platform`, or one sentence."""
    if platform not in PLATFORMS:
        raise ToolkitError(f"--wheels takes {' or '.join(PLATFORMS)} (the board's machine), not {platform!r}")
    python = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    if not PYTHON.match(python):
        raise ToolkitError(f"--python takes the board's Python as 3.N (3.11 for Debian 12), not {python!r}")
    return python


def write_wheelhouse(folder: Path, platform: str, python: str, extras: tuple[str, ...]) -> dict:
    """`wheels/` and `board-requirements.txt` in `folder` (see the module docstring); the record
    the bundle's manifest keeps of them."""
    wheels = folder / WHEELS
    wheels.mkdir()
    _own_wheel(wheels)
    requirements = _requirements(extras)
    with tempfile.TemporaryDirectory(prefix="constraints-") as temporary:
        constraints = Path(temporary) / "constraints.txt"
        constraints.write_text("\n".join(_installed_pins()) + "\n")
        tags = [option for tag in PLATFORMS[platform] for option in ("--platform", tag)]
        abi = f"cp3{python.split('.')[1]}"
        _pip("download", "--dest", str(wheels), "--find-links", str(wheels), *tags, "--python-version", python,
             "--implementation", "cp", "--abi", abi, "--only-binary=:all:", "-c", str(constraints), *requirements)  # fmt: skip
        _pip("download", "--dest", str(wheels), "--no-deps", "--only-binary=:all:", f"pip=={_version('pip')}")
    pinned = sorted(_pin(wheel) for wheel in wheels.glob("*.whl") if not wheel.name.startswith("pip-"))
    (folder / REQUIREMENTS).write_text(
        f"# {NAME} for {platform}, Python {python}: pip install --no-index --find-links {WHEELS} --require-hashes "
        f"-r {REQUIREMENTS}\n" + "\n".join(pinned) + "\n",
        encoding="utf-8",
    )
    return {"platform": platform, "python": python, "extras": list(extras), "requirements": REQUIREMENTS,
            "wheels": len(pinned)}  # fmt: skip


def _requirements(extras: tuple[str, ...]) -> list[str]:
    """The toolkit and what it requires with `extras`, by name (versions come from the constraints)."""
    names = [NAME]
    for requirement in importlib.metadata.requires(NAME) or []:
        spec, _, marker = requirement.partition(";")
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        platform_only = "platform_" in marker
        if (extra is None or extra.group(1) in extras) and not platform_only:
            names.append(re.split(r"[<>=!~\[ ]", spec.strip(), maxsplit=1)[0])
    return names


def _installed_pins() -> list[str]:
    """name==version of every distribution installed here but the toolkit (its wheel is in the folder)."""
    pins = {}
    for distribution in importlib.metadata.distributions():
        name = distribution.metadata["Name"]
        if name and _normal(name) != _normal(NAME):
            pins[_normal(name)] = f"{name}=={distribution.version}"
    return sorted(pins.values())


def _own_wheel(wheels: Path) -> None:
    """The toolkit's wheel, built from the folder it was installed from (a checkout: pip install -e,
    or a local path), so the board gets exactly this code. Its files' times are fixed (SOURCE_DATE_EPOCH),
    so the same source gives the same wheel, byte for byte, and the same hash."""
    source = _source_folder()
    with tempfile.TemporaryDirectory(prefix="toolkit-source-") as temporary:
        copy = Path(temporary) / "source"  # pip builds in the tree: a copy keeps the checkout clean
        ignore = shutil.ignore_patterns(".venv", ".git", "tests", "__pycache__", "*.egg-info", "build", "tour")
        shutil.copytree(source, copy, ignore=ignore)
        _pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(wheels), str(copy),
             environment={"SOURCE_DATE_EPOCH": "315532800"})  # fmt: skip


def _source_folder() -> Path:
    url = ""  # the installed distribution's (an egg-info in the working folder has none: looked past)
    for distribution in importlib.metadata.distributions(name=NAME):
        try:
            url = json.loads(distribution.read_text("direct_url.json") or "{}").get("url", "")
        except ValueError:
            continue
        if url:
            break
    source = Path(url.removeprefix("file://")) if url.startswith("file://") else None
    if source is None or not (source / "setup.cfg").is_file():
        raise ToolkitError(
            f"{NAME} was not installed from a folder of its source here, so its own wheel can't be built for the "
            "board: install it from a checkout (pip install -e .) to write a wheelhouse"
        )
    return source


def _pin(wheel: Path) -> str:
    name, version = wheel.name.split("-")[:2]
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return f"{name.replace('_', '-')}=={version} --hash=sha256:{digest}"


def _version(distribution: str) -> str:
    return importlib.metadata.version(distribution)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pip(*arguments: str, environment: dict | None = None) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *arguments, "--quiet", "--disable-pip-version-check"],
                          capture_output=True, text=True, timeout=1800, env={**os.environ, **(environment or {})})  # fmt: skip
    if done.returncode != 0:
        said = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("WARNING: Location")]
        raise ToolkitError(
            f"pip could not {arguments[0]} the board's wheels: {clip(said[-1] if said else 'it said nothing')}"
        )
