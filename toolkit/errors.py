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


def clip(text: str, limit: int = 200) -> str:
    """Someone else's words (a library's error, a server's answer) for one of our sentences: the
    first line, its spacing folded, cut at a word's end past `limit` characters with "..."."""
    line = " ".join(str(text).strip().splitlines()[0].split()) if str(text).strip() else ""
    if len(line) <= limit:
        return line
    cut = line[:limit].rsplit(" ", 1)[0] if " " in line[:limit] else line[:limit]
    return cut.rstrip(",;:") + "..."
