"""The toolkit's error base class.

Every error a user can cause (a bad argument, a missing or mismatched file, a missing optional
dependency) is raised as a subclass of `ToolkitError`. Library callers can catch it like any
`ValueError`; the command-line tools turn it into one sentence on stderr and exit status 2.
Anything else that escapes is a bug and keeps its traceback.
"""


class ToolkitError(ValueError):
    """A problem with what the caller asked for, stated in one sentence."""


class CheckpointError(ToolkitError):
    """A checkpoint file that can't be read, or whose tensors don't fit the model."""
