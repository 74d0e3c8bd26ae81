"""Errors of the model zoo. `ToolkitError` is the toolkit's base class (`toolkit.errors`),
re-exported here because every error a caller of `resnet` can cause is one."""

from toolkit.errors import ToolkitError


class CheckpointError(ToolkitError):
    """A checkpoint file that can't be read, or whose tensors don't fit the model."""


__all__ = ["CheckpointError", "ToolkitError"]
