"""Which versions made an artifact or a measurement: one place that asks.

Versions come from the installed distributions' metadata (cheap: nothing heavy is imported),
falling back to a module's `__version__` when it is already imported without metadata (JetPack
installs TensorRT as a system package).
"""

from __future__ import annotations

import platform
import sys

from . import NAME, __version__

# module -> the distributions that provide it, in the order to look for them
DISTRIBUTIONS = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12"),
    "PIL": ("pillow",),
}


def version_of(module: str) -> str | None:
    """The installed version of `module` (a name like "torch" or "onnxruntime"), or None.

    A module provided by another distribution than its own name says so: onnxruntime from
    onnxruntime-gpu is "1.31.1 (onnxruntime-gpu)".
    """
    import importlib.metadata as metadata  # here: its import is a tenth of a board's cold start

    names = DISTRIBUTIONS.get(module, (module,))
    for name in names:
        try:
            found = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        return found if name == names[0] else f"{found} ({name})"
    loaded = sys.modules.get(module)
    return getattr(loaded, "__version__", None) if loaded is not None else None


def versions(*modules: str, python: bool = False) -> dict[str, str]:
    """{toolkit: version, module: version, ...} for the given modules that are installed."""
    found = {NAME: __version__}
    if python:
        found["python"] = platform.python_version()
    for module in modules:
        version = version_of(module)
        if version is not None:
            found[module] = version
    return found
