"""Folders of images: torchvision's ImageFolder layout (`DIR/<class>/<file>`) for evaluation, or a
flat folder of images (for INT8 calibration).

Class folders are sorted by name, as torchvision's `ImageFolder` sorts them, and files within a
class are found the same way (recursively, sorted, by image suffix). A model's labels, when it
has them and they name every class folder, decide the class indices instead. Every real folder
and file is read once, whatever links lead to it (a link loop never hangs a run).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import ToolkitError
from toolkit.files import notice

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


class _Walk:
    """Finds images below folders, following links but reading each real folder and file once:
    a link back into the tree (a loop) or to a folder read already is skipped, and so is a second
    way to the same file (by `(st_dev, st_ino)`), as are hidden entries (`.ipynb_checkpoints`);
    what was skipped is said (`toolkit.files.notice`)."""

    def __init__(self, root: Path, folders: Sequence[Path] = ()) -> None:
        self.folders = {self._key(f) for f in (root, *folders)}  # never entered through a link
        self.files: set[tuple[int, int]] = set()
        self.skipped: dict[str, list[str]] = {}

    @staticmethod
    def _key(path: Path) -> tuple[int, int] | None:
        try:
            info = path.stat()
        except OSError:
            return None
        return info.st_dev, info.st_ino

    def images(self, folder: Path) -> list[Path]:
        """The images below `folder`, in sorted order (as torchvision finds them)."""
        walked = []
        for directory, dirs, names in os.walk(folder, followlinks=True):
            dirs[:] = [d for d in sorted(dirs) if self._enter(Path(directory) / d)]
            walked.append((directory, sorted(names)))
        found = []
        for directory, names in sorted(walked):
            found += [p for p in (Path(directory) / n for n in names) if self._take(p)]
        return found

    def _enter(self, path: Path) -> bool:
        if path.name.startswith("."):
            return self.skip("hidden", path)
        key = self._key(path)
        if key is None or (path.is_symlink() and key in self.folders):
            return self.skip("a link to a folder already read", path)
        self.folders.add(key)
        return True

    def _take(self, path: Path) -> bool:
        if not path.name.lower().endswith(IMAGE_SUFFIXES):
            return False
        if path.name.startswith("."):
            return self.skip("hidden", path)
        key = self._key(path)
        if key is not None and key in self.files:
            return self.skip("a second way to an image already read", path)
        if key is not None:
            self.files.add(key)
        return True

    def skip(self, why: str, path: Path) -> bool:
        self.skipped.setdefault(why, []).append(str(path))
        return False

    def report(self) -> None:
        for why, paths in self.skipped.items():
            more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
            notice(f"skipped {len(paths)} ({why}): {', '.join(paths[:3])}{more}")


def read_image_folder(
    root: str | Path,
    *,
    labels: Sequence[str] | None = None,
    num_classes: int | None = None,
    labeled: bool | None = None,
    labels_required: bool = False,
) -> ImageSet:
    """The images of `root`: an ImageFolder tree (class folders) or a flat folder.

    `labeled` True demands class folders, False reads the images of a flat folder (and of any
    subfolders) without classes; None takes whichever layout `root` has. Class folders are
    numbered by `labels` when they name every one (with `labels_required`, they must); labels
    that name none of them are ignored and the folders numbered in sorted order, which
    `num_classes` must accommodate; labels that name only some are an error. As torchvision's
    `ImageFolder`, a class folder without images is an error. Hidden folders and files, and links
    that lead back into the tree or to a file already found, are skipped, and said so.
    """
    root = Path(root)
    if not root.is_dir():
        raise ToolkitError(f"image folder {root} {'is a file' if root.exists() else 'does not exist'}")
    entries = sorted(os.scandir(root), key=lambda e: e.name)
    hidden = [Path(root, e.name) for e in entries if e.name.startswith(".") and e.is_dir()]
    class_folders = [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
    if labeled is None:
        labeled = bool(class_folders) and not any(
            e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES) for e in entries
        )
    walk = _Walk(root, [root / name for name in class_folders] if labeled else [])
    if not labeled:
        files = walk.images(root)
        walk.report()
        if not files:
            raise ToolkitError(f"image folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return ImageSet(root, files, None, None)
    if not class_folders:
        raise ToolkitError(
            f"{root} has no class folders; evaluation reads the ImageFolder layout {root}/<class>/<image>"
        )
    for folder in hidden:  # (a flat folder's walk finds them itself)
        walk.skip("hidden", folder)
    found = {name: walk.images(root / name) for name in class_folders}
    walk.report()
    empty = [name for name in class_folders if not found[name]]
    if empty:
        raise ToolkitError(
            f"class folder {root / empty[0]} holds no images; as torchvision's ImageFolder, every class folder "
            "needs some: remove it, or add its images"
        )
    indices = _class_indices(root, class_folders, labels, num_classes, labels_required)
    files = [path for name in class_folders for path in found[name]]
    targets = [indices[name] for name in class_folders for _ in found[name]]
    classes = sorted(indices, key=indices.get)
    return ImageSet(root, files, targets, classes)


def _class_indices(root: Path, class_folders: list[str], labels, num_classes, labels_required: bool) -> dict[str, int]:
    """Each class folder's index: its label's, else its place in sorted order (see `read_image_folder`)."""
    if labels is not None:
        unmatched = [name for name in class_folders if name not in labels]
        if not unmatched:
            return {name: list(labels).index(name) for name in class_folders}
        if labels_required or len(unmatched) < len(class_folders):
            raise ToolkitError(
                f"class folder {root / unmatched[0]} is not one of the model's labels ({', '.join(list(labels)[:5])}"
                f"{', ...' if len(labels) > 5 else ''}); name each class folder after its label"
            )
    if num_classes is not None and len(class_folders) > num_classes:
        raise ToolkitError(
            f"{root} has {len(class_folders)} class folders and the model {num_classes} classes; "
            "name the folders after the model's labels (--labels) or remove the extra ones"
        )
    indices = {name: index for index, name in enumerate(class_folders)}
    if any(name != str(index) for name, index in indices.items()):  # folders 0, 1, 2, ... say their own number
        shown = ", ".join(f"{name} = {index}" for name, index in list(indices.items())[:4])
        more = ", ..." if len(indices) > 4 else ""
        notice(
            f"no labels name the class folders of {root}: they are read as the model's classes in sorted order "
            f"({shown}{more}); top-1 means something only if that is the model's order (--labels says otherwise)"
        )
    return indices
