"""Images to model inputs, following the model's input spec (read from the file, not from flags).

ImageNet-style specs (`resize` set) use torchvision's evaluation recipe: RGB; resize so the
shorter side is `resize` (256 for a 224 crop), bilinear with antialiasing; centre-crop to
`height` x `width`; scale to [0, 1]; normalise with the spec's mean and std. CIFAR-style specs
(`resize` None) resize the whole image to `height` x `width` (bilinear, antialiased) and
normalise. Grayscale, RGBA (alpha dropped, as torchvision's loaders do) and palette images are
converted to RGB. Pillow is the only image dependency (`pip install '.[images]'`).

Accepted images: a file path, a PIL image, or a NumPy array laid out H x W (grayscale) or
H x W x C (C = 1, 3 or 4), either uint8 (0-255) or float in [0, 1].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from resnet.spec import InputSpec
from toolkit.errors import ToolkitError
from toolkit.optional import require


class ImageError(ToolkitError):
    """An image that can't be read or understood; the message names it."""


def _pil():
    return require("PIL", "reading images")


def describe_image(image: Any) -> str:
    """How to name an image in messages: its path, or its kind."""
    if isinstance(image, (str, Path)):
        return str(image)
    if isinstance(image, np.ndarray):
        return f"array {image.shape}"
    return type(image).__name__


def load_image(image: Any):
    """An RGB PIL image from a path, a PIL image or an array (see the module docstring)."""
    PIL = _pil()
    from PIL import Image

    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise ImageError(f"image {path} does not exist")
        try:
            with Image.open(path) as opened:
                opened.load()
                picture = opened.copy()
        except (PIL.UnidentifiedImageError, OSError, ValueError) as error:
            raise ImageError(
                f"{path} is not a readable image ({str(error).splitlines()[0][:100] if str(error) else type(error).__name__})"
            ) from None
    elif isinstance(image, Image.Image):
        picture = image
    elif isinstance(image, np.ndarray):
        picture = _from_array(image)
    else:
        raise ImageError(
            f"cannot read an image from a {type(image).__name__}; give a path, a PIL image or a NumPy array"
        )
    if picture.mode in ("P", "PA"):  # palette: through RGBA, so transparency info isn't misread
        picture = picture.convert("RGBA")
    return picture.convert("RGB") if picture.mode != "RGB" else picture


def _from_array(array: np.ndarray):
    from PIL import Image

    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"an image array is H x W or H x W x C with C 1, 3 or 4; got shape {array.shape}")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise ImageError(f"an image array is uint8 or float in [0, 1]; got {array.dtype}")
        array = np.clip(np.round(array * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array))  # mode from the shape: L, RGB or RGBA


def resized_size(width: int, height: int, shorter: int) -> tuple[int, int]:
    """(width, height) after resizing the shorter side to `shorter`, as torchvision computes it
    (the longer side is truncated, not rounded)."""
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter


def center_crop_box(width: int, height: int, crop_width: int, crop_height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the centre crop, with torchvision's rounding."""
    if crop_width > width or crop_height > height:
        raise ImageError(f"cannot crop {crop_width}x{crop_height} from a {width}x{height} image")
    left = int(round((width - crop_width) / 2.0))
    top = int(round((height - crop_height) / 2.0))
    return left, top, left + crop_width, top + crop_height


def preprocess(image: Any, spec: InputSpec) -> np.ndarray:
    """One image as a normalised float32 array (C, H, W) for a model with `spec`."""
    from PIL import Image

    picture = load_image(image)
    if spec.resize is not None:
        size = resized_size(picture.width, picture.height, spec.resize)
        picture = picture.resize(size, Image.BILINEAR) if size != picture.size else picture
        picture = picture.crop(center_crop_box(picture.width, picture.height, spec.width, spec.height))
    elif picture.size != (spec.width, spec.height):
        picture = picture.resize((spec.width, spec.height), Image.BILINEAR)
    array = np.asarray(picture, dtype=np.float32) / 255.0
    array = (array - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))
