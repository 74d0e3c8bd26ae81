"""Class labels: one name per line, as many as the model has classes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from toolkit.errors import ArtifactError
from toolkit.files import read_small_text


def read_labels(path: str | Path) -> list[str]:
    """One label per line (blank lines at the end ignored)."""
    labels = read_small_text(path, "labels file", "a labels file (one label per line)", ArtifactError).splitlines()
    while labels and not labels[-1].strip():
        labels.pop()
    return labels


def resolve_labels(labels: Sequence[str] | str | Path | None, num_classes: int) -> list[str] | None:
    """`labels` (a list, or a file to read) checked against the model's class count; None stays None."""
    if labels is None:
        return None
    if isinstance(labels, (str, Path)):
        names = read_labels(labels)
    elif isinstance(labels, Sequence) and all(isinstance(label, str) for label in labels):
        names = list(labels)
    else:
        raise ArtifactError(
            f"labels must be a labels file (one name per line) or a list of class names, got {type(labels).__name__}"
        )
    if len(names) != num_classes:
        raise ArtifactError(f"{len(names)} labels for a model with {num_classes} classes")
    return names
