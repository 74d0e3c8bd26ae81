"""Folders of images: torchvision's ImageFolder layout (`DIR/<class>/<file>`) for evaluation, or a
flat folder of images (for INT8 calibration).

Class folders are sorted by name, as torchvision's `ImageFolder` sorts them, and files within a
class are found the same way (recursively, sorted, by image suffix). A model's labels, when it
has them and they name every class folder, decide the class indices instead.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import ToolkitError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ImageSet:
    """The images of a folder; `classes` is None for a flat folder (no labels)."""

    root: Path
    files: list[Path]
    targets: list[int] | None  # each file's class index, from its folder
    classes: list[str] | None  # class folder names, in index order

    def __len__(self) -> int:
        return len(self.files)

    def fingerprint(self) -> str:
        """SHA-256 of the sorted relative file names and sizes: which images these are."""
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(f"{path.relative_to(self.root)}\t{path.stat().st_size}\n".encode())
        return digest.hexdigest()

    def subset(self, count: int) -> ImageSet:
        """At most `count` files, evenly spread over the sorted list (deterministic)."""
        if count >= len(self.files):
            return self
        picks = [round(i * (len(self.files) - 1) / max(count - 1, 1)) for i in range(count)]
        picks = sorted(set(picks))
        targets = [self.targets[i] for i in picks] if self.targets is not None else None
        return ImageSet(self.root, [self.files[i] for i in picks], targets, self.classes)


def _images_below(folder: Path) -> list[Path]:
    found = []
    for directory, _, names in sorted(os.walk(folder, followlinks=True)):
        found += [Path(directory) / name for name in sorted(names) if name.lower().endswith(IMAGE_SUFFIXES)]
    return found


def read_image_folder(
    root: str | Path,
    *,
    labels: Sequence[str] | None = None,
    num_classes: int | None = None,
    labeled: bool | None = None,
) -> ImageSet:
    """The images of `root`: an ImageFolder tree (class folders) or a flat folder.

    `labeled` True demands class folders, False reads the images of a flat folder (and of any
    subfolders) without classes; None takes whichever layout `root` has. With `labels` that name
    every class folder, a folder's index is its label's; otherwise folders are numbered in sorted
    order, which `num_classes` must accommodate.
    """
    root = Path(root)
    if not root.is_dir():
        raise ToolkitError(f"image folder {root} {'is a file' if root.exists() else 'does not exist'}")
    class_folders = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if labeled is None:
        labeled = bool(class_folders) and not any(
            p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir()
        )
    if not labeled:
        files = _images_below(root)
        if not files:
            raise ToolkitError(f"image folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return ImageSet(root, files, None, None)
    if not class_folders:
        raise ToolkitError(
            f"{root} has no class folders; evaluation reads the ImageFolder layout {root}/<class>/<image>"
        )
    if labels is not None and set(class_folders) <= set(labels):
        indices = {name: list(labels).index(name) for name in class_folders}
    else:
        if num_classes is not None and len(class_folders) > num_classes:
            raise ToolkitError(
                f"{root} has {len(class_folders)} class folders and the model {num_classes} classes; "
                "name the folders after the model's labels (--labels) or remove the extra ones"
            )
        indices = {name: index for index, name in enumerate(class_folders)}
    files, targets = [], []
    for name in class_folders:
        found = _images_below(root / name)
        files += found
        targets += [indices[name]] * len(found)
    if not files:
        raise ToolkitError(f"the class folders of {root} hold no images ({', '.join(IMAGE_SUFFIXES)})")
    classes = sorted(indices, key=indices.get)
    return ImageSet(root, files, targets, classes)
