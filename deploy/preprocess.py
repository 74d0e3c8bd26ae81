"""Images to model inputs, following the model's input spec (read from the file, not from flags).

ImageNet-style specs (`resize` set) use torchvision's evaluation recipe: RGB; resize so the
shorter side is `resize` (256 for a 224 crop), bilinear with antialiasing; centre-crop to
`height` x `width`; scale to [0, 1]; normalise with the spec's mean and std. CIFAR-style specs
(`resize` None) resize the whole image to `height` x `width` (bilinear, antialiased) and
normalise. Grayscale, RGBA (alpha dropped, as torchvision's loaders do) and palette images are
converted to RGB. Pillow is the only image dependency (`pip install '.[images]'`).

Accepted images: a file path (str, Path, or bytes as `os` functions take them) of a JPEG, PNG,
BMP, PPM/PGM, TIFF or WebP image, an image file's bytes (`EncodedImage`, what a serving client
sends: JPEG or PNG only), a PIL image, or
a NumPy array laid out H x W (grayscale) or H x W x C (C = 1, 3 or 4), uint8 (0-255), uint16
(0-65535) or float in [0, 1]. Every problem with an image is an `ImageError` naming it: a
missing file or a folder, an unreadable or empty one, a decompression bomb (more than
`MAX_PIXELS`, or more than `MAX_DECODED_BYTES` once decoded, known from its header before it is),
NaN pixels, or one so elongated that the recipe's resize would blow up.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resnet.spec import InputSpec
from toolkit.errors import ToolkitError, clip
from toolkit.files import input_file
from toolkit.optional import require


class ImageError(ToolkitError):
    """An image that can't be read or understood; the message names it."""


def _pil():
    return require("PIL", "reading images")


MAX_PIXELS = 100_000_000  # decoded image size read at most (100 megapixels, about 300 MB as RGB)
MAX_DECODED_BYTES = 300_000_000  # what decoding may allocate (mode x pixels), checked before it
# bytes per pixel of Pillow's modes, as decoded (an unknown mode counts as 4)
MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "La": 2, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "RGB": 3,
              "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "I": 4, "F": 4}  # fmt: skip
MAX_RESIZED_PIXELS = 16_777_216  # pixels after the resize of an ImageNet-style recipe (4096 x 4096)
# The decoders that may run: on bytes a client sent (a server's images route), JPEG and PNG only;
# on files, the raster formats whose suffixes image folders are read by (deploy.datasets). Never
# a format whose decoder runs a program (Pillow reads EPS through Ghostscript, where installed).
ENCODED_FORMATS = ("JPEG", "PNG")
FILE_FORMATS = ("JPEG", "PNG", "BMP", "PPM", "TIFF", "WEBP")
# Pillow's module for each format: imported before opening, else Pillow imports all ~50 of its
# plugins to find the formats asked for (50 ms of a board's 0.4 s cold start, measured).
PLUGINS = {"JPEG": "Jpeg", "PNG": "Png", "BMP": "Bmp", "PPM": "Ppm", "TIFF": "Tiff", "WEBP": "WebP"}
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def describe_image(image: Any) -> str:
    """How to name an image in messages: its path, or its kind."""
    if isinstance(image, (bytes, bytearray)):
        return os.fsdecode(bytes(image))
    if isinstance(image, (str, Path)):
        return str(image)
    if isinstance(image, np.ndarray):
        return f"array {image.shape}"
    if isinstance(image, EncodedImage):
        return image.name
    return type(image).__name__


def _check_size(width: int, height: int, name: str, mode: str | None = None) -> None:
    """Pixels, and with the mode the bytes decoding will take, within bounds (before decoding)."""
    if width < 1 or height < 1:
        raise ImageError(f"{name} is empty ({width}x{height} pixels)")
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{name} is {width}x{height} ({width * height / 1e6:.0f} megapixels); images up to "
            f"{MAX_PIXELS / 1e6:.0f} megapixels are read: scale it down first"
        )
    decoded = width * height * MODE_BYTES.get(mode, 4) if mode is not None else 0
    if decoded > MAX_DECODED_BYTES:
        raise ImageError(
            f"{name} is {width}x{height} in mode {mode}: {decoded / 1e6:.0f} MB decoded, above the "
            f"{MAX_DECODED_BYTES / 1e6:.0f} MB read: scale it down first"
        )


@dataclass(frozen=True)
class EncodedImage:
    """An image file's bytes (a JPEG or PNG a client sent), read as a file would be, bounded alike;
    `name` names it in messages."""

    data: bytes
    name: str = "the image"


def _open_file(path: Path):
    """A decoded PIL image from a file, refusing decompression bombs before decoding."""
    input_file(path, "image", "an image file", ImageError)
    return _decode(path, f"image {path}", str(path), FILE_FORMATS)


def _decode(source, what: str, name: str, formats: tuple[str, ...]):
    """A decoded PIL image from a path or a binary stream, in one of `formats`; the size is
    checked from the header first, and Pillow's own bomb check is set to our bound while it
    decodes."""
    import importlib
    import warnings

    import PIL
    from PIL import Image

    for kind in formats:
        importlib.import_module(f"PIL.{PLUGINS[kind]}ImagePlugin")
    pillows = Image.MAX_IMAGE_PIXELS
    try:
        # Our bound decides (Pillow's own default, 89.5 megapixels, would refuse images we promise
        # to read); Pillow's check then guards what our header check can't see.
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=formats) as opened:
                _check_size(opened.width, opened.height, what, opened.mode)
                opened.load()
                return opened.copy()  # the copy doubles the bytes for a moment: bounded above
    except ImageError:  # our own bound, said whole (it is a ValueError too)
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(
            f"{what} is too large to decode safely (more than {MAX_PIXELS / 1e6:.0f} megapixels)"
        ) from None
    except PIL.UnidentifiedImageError:
        kinds = " or ".join((", ".join(formats[:-1]), formats[-1])) if len(formats) > 1 else formats[0]
        raise ImageError(f"{name} is not a readable image (not {kinds})") from None
    except (OSError, ValueError, SyntaxError) as error:
        reason = clip(error, 100) if str(error) else type(error).__name__
        raise ImageError(f"{name} is not a readable image ({reason})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillows


def load_image(image: Any):
    """An RGB PIL image from a path (str, Path or bytes), a PIL image or an array (see the
    module docstring). Bounded: at most `MAX_PIXELS` decoded; 16-bit images are scaled to
    8 bits, not clipped."""
    _pil()
    from PIL import Image

    if isinstance(image, (bytes, bytearray)):
        image = os.fsdecode(bytes(image))  # a file name in bytes, as os functions accept
    if isinstance(image, (str, Path)):
        picture = _open_file(Path(image))
    elif isinstance(image, EncodedImage):
        if not image.data:
            raise ImageError(f"{image.name} is empty (no bytes)")
        picture = _decode(io.BytesIO(image.data), image.name, image.name, ENCODED_FORMATS)
    elif isinstance(image, Image.Image):
        _check_size(image.width, image.height, "the image")
        picture = image
    elif isinstance(image, np.ndarray):
        picture = _from_array(image)
    else:
        raise ImageError(
            f"cannot read an image from a {type(image).__name__}; give a path, a PIL image or a NumPy array"
        )
    if picture.mode in _SIXTEEN_BIT:  # 16-bit grayscale: scale 0-65535 to 0-255 (convert() would clip)
        wide = np.asarray(picture)  # uint16 (or int32 for mode I)
        scaled = np.empty(wide.shape, dtype=np.uint8)
        rows = max(1, 4_000_000 // max(1, wide.shape[1]))  # in blocks: no full-size wider copy
        for top in range(0, wide.shape[0], rows):
            block = np.clip(wide[top : top + rows], 0, 65535).astype(np.uint32)
            scaled[top : top + rows] = (block * 2 + 257) // 514  # round(v / 257), in integers
        picture = Image.fromarray(scaled)
    elif picture.mode == "F":  # floating point: [0, 1], as arrays are
        values = np.asarray(picture)
        _check_unit_range(values, describe_image(image))
        picture = Image.fromarray(np.round(values * 255).astype(np.uint8))
    if picture.mode in ("P", "PA"):  # palette: through RGBA, so transparency info isn't misread
        picture = picture.convert("RGBA")
    return picture.convert("RGB") if picture.mode != "RGB" else picture


def _from_array(array: np.ndarray):
    from PIL import Image

    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"an image array is H x W or H x W x C with C 1, 3 or 4; got shape {array.shape}")
    _check_size(array.shape[1], array.shape[0], f"image array {array.shape}")
    if array.dtype == np.uint16:
        array = np.round(array / 257.0).astype(np.uint8)
    elif array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise ImageError(f"an image array is uint8, uint16 or float in [0, 1]; got {array.dtype}")
        if not np.isfinite(array).all():
            raise ImageError(f"image array {array.shape} holds NaN or infinite values")
        _check_unit_range(array, f"image array {array.shape}")
        array = np.round(array * 255.0).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array))  # mode from the shape: L, RGB or RGBA


def _check_unit_range(values: np.ndarray, name: str) -> None:
    """Float pixels are in [0, 1]; anything else (0-255 floats, say) is refused, never clipped to white."""
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if low < 0.0 or high > 1.0:
        raise ImageError(
            f"{name} holds values from {low:g} to {high:g}; float images are in [0, 1] (divide 0-255 values by 255)"
        )


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
        # Up to 4096x4096 pixels, or an image 4 times as long as wide at a large crop's resize.
        if size[0] * size[1] > max(MAX_RESIZED_PIXELS, 4 * spec.resize**2):
            raise ImageError(
                f"{describe_image(image)} is {picture.width}x{picture.height}: too elongated for this model's recipe "
                f"(its shorter side resized to {spec.resize} would make it {size[0]}x{size[1]})"
            )
        picture = picture.resize(size, Image.BILINEAR) if size != picture.size else picture
        picture = picture.crop(center_crop_box(picture.width, picture.height, spec.width, spec.height))
    elif picture.size != (spec.width, spec.height):
        picture = picture.resize((spec.width, spec.height), Image.BILINEAR)
    array = np.asarray(picture, dtype=np.float32) / 255.0
    array = (array - np.asarray(spec.mean, dtype=np.float32)) / np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))
