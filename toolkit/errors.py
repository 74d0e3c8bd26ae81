"""The toolkit's errors.

Every error a user can cause (a bad argument, a missing or mismatched file, a missing optional
package) is a `ToolkitError`. Library callers can catch it like any `ValueError`; the commands
turn it into one sentence on stderr and exit status 2 (`toolkit.cli`). Anything else that
escapes is a bug and keeps its traceback.
"""


class ToolkitError(ValueError):
    """A problem with what the caller asked for, stated in one sentence."""


class MissingDependencyError(ToolkitError):
    """An optional package (ONNX Runtime, TensorRT, Pillow, matplotlib) is needed but absent."""


class ArtifactError(ToolkitError):
    """A model file, engine, manifest or bundle that is missing, corrupt or foreign."""
