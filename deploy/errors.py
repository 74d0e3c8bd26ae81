"""Errors raised by `deploy` (all `ToolkitError`s: one sentence, exit status 2 in the CLI)."""

from __future__ import annotations

from resnet.errors import ToolkitError


class MissingDependencyError(ToolkitError):
    """An optional package (ONNX Runtime, TensorRT, Pillow, matplotlib) is needed but absent."""


class ArtifactError(ToolkitError):
    """A model file, engine, manifest or bundle that is missing, corrupt or foreign."""


def require(module: str, install: str, purpose: str):
    """Import an optional module, or raise `MissingDependencyError` naming what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"{purpose} needs the {module} package, which is not installed: {install}"
        ) from None
