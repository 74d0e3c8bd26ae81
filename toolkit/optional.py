"""The optional packages, what each is for and how to install it: one table, one importer.

Heavy or optional packages are imported inside the functions that need them, through
`require`, so `--help` and every path that does not need them work without them, and a missing
one is one sentence naming what to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

# module -> how to install it (extras of this project's setup.cfg)
INSTALL = {
    # the workshop: exporting, comparing with PyTorch, checkpoints, PyTorch baselines (on a CPU-only
    # machine, `pip install torch==2.13.0` first takes the CPU build)
    "torch": "pip install '.[export]' (PyTorch: exporting, checkpoints, comparisons with PyTorch)",
    "onnxruntime": "pip install '.[cpu]' (or '.[gpu]' for onnxruntime-gpu on a CUDA machine)",
    # a distribution, not a module: it provides `onnxruntime` with the CUDA and TensorRT providers
    "onnxruntime-gpu": "pip uninstall onnxruntime, then pip install '.[gpu]' (the two can't be installed together)",
    "tensorrt": "pip install '.[gpu]' on a machine with an NVIDIA GPU and CUDA",
    "openvino": "pip install '.[openvino]' (Intel's OpenVINO, for CPUs)",
    "PIL": "pip install '.[images]'",
    "matplotlib": "pip install '.[plot]'",
    "tritonclient": "pip install '.[triton]'",
    # a distribution whose files (tritonserver and its Python backend) resnet-deploy serve runs
    "pytriton": "pip install '.[serve]' (Linux x86-64, glibc 2.35 or later)",
    "ray": "pip install '.[ray]' (Ray Serve)",
    "kubernetes_validate": "pip install '.[dev]'",
}


# Modules an extra brings along with one of the table's: a missing one means that extra is missing.
BROUGHT_BY = {"grpc": "tritonclient", "geventhttpclient": "tritonclient", "starlette": "ray", "fastapi": "ray"}


def install_hint(module: str | None) -> str | None:
    """How to install the extra a missing module (a `ModuleNotFoundError`'s name) belongs to, or
    None for a module of no extra (a broken install, or a bug: its traceback stands)."""
    top = (module or "").split(".")[0]
    return INSTALL.get(BROUGHT_BY.get(top, top))


def require(module: str, purpose: str) -> ModuleType:
    """Import an optional module, or raise `MissingDependencyError` saying what to install.

    `purpose` completes "... needs the X package": e.g. "running an ONNX model".
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"{purpose} needs the {module} package, which is not installed: {INSTALL[module]}"
        ) from None
