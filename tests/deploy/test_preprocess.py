"""Preprocessing against a direct NumPy computation of the recipe, on images the tests write."""

import numpy as np
import pytest

import resnet
from deploy.preprocess import ImageError, center_crop_box, load_image, preprocess, resized_size

MEAN, STD = np.array(resnet.IMAGENET.mean), np.array(resnet.IMAGENET.std)


def normalised(values_0_255, spec):
    return (np.asarray(values_0_255, dtype=np.float64) / 255.0 - np.asarray(spec.mean)) / np.asarray(spec.std)


def test_resize_and_crop_arithmetic_is_torchvisions():
    assert resized_size(500, 375, 256) == (341, 256)  # int(256 * 500 / 375) = 341, truncated
    assert resized_size(375, 500, 256) == (256, 341)
    assert resized_size(256, 200, 256) == (327, 256)
    assert center_crop_box(341, 256, 224, 224) == (58, 16, 282, 240)  # round(58.5) = 58, as torchvision
    with pytest.raises(ImageError, match="cannot crop 224x224 from a 100x256 image"):
        center_crop_box(100, 256, 224, 224)


def test_solid_colour_is_exactly_the_normalised_colour(images):
    for spec in (resnet.IMAGENET, resnet.CIFAR10):
        out = preprocess(images["red"], spec)
        assert out.shape == (3, spec.height, spec.width) and out.dtype == np.float32
        expected = normalised([200, 30, 40], spec)
        assert np.allclose(out, expected[:, None, None], atol=1e-6)


def test_jpeg_solid_colour_within_compression_error(images):
    out = preprocess(images["red_jpg"], resnet.IMAGENET)
    assert np.abs(out - normalised([200, 30, 40], resnet.IMAGENET)[:, None, None]).max() < 4 / 255 / min(STD)


def test_imagenet_recipe_on_a_gradient(images):
    # 256 x 200 image whose red channel is x: shorter side 200 -> 256 gives 327 x 256, crop 224.
    out = preprocess(images["gradient"], resnet.IMAGENET)
    width, height = resized_size(256, 200, 256)
    left, top, _, _ = center_crop_box(width, height, 224, 224)
    columns = np.arange(224) + left
    source_x = (columns + 0.5) * 256 / width - 0.5  # where bilinear resampling reads each output column
    red = (source_x / 255.0 - MEAN[0]) / STD[0]
    green = ((255 - source_x) / 255.0 - MEAN[1]) / STD[1]
    blue = (77 / 255.0 - MEAN[2]) / STD[2]
    tolerance = 0.6 / 255 / STD.min()  # uint8 rounding of the resized image
    assert np.abs(out[0] - red[None, :]).max() < tolerance
    assert np.abs(out[1] - green[None, :]).max() < tolerance
    assert np.abs(out[2] - blue).max() < 1e-6


def test_cifar_recipe_resizes_the_whole_image(images):
    out = preprocess(images["gray"], resnet.CIFAR10)  # 256 x 200 grayscale, value = x
    assert out.shape == (3, 32, 32)
    source_x = (np.arange(32) + 0.5) * 256 / 32 - 0.5
    expected = (source_x[None, :] / 255.0 - np.array(resnet.CIFAR10.mean)[:, None]) / np.array(resnet.CIFAR10.std)[
        :, None
    ]
    # Downscaling 8x averages over an 8-pixel support: interior columns are exact up to rounding.
    assert np.abs(out[:, :, 1:-1] - expected[:, None, 1:-1]).max() < 0.6 / 255 / min(resnet.CIFAR10.std)
    assert np.allclose(
        out[0],
        out[1] * resnet.CIFAR10.std[1] / resnet.CIFAR10.std[0]
        + (resnet.CIFAR10.mean[1] - resnet.CIFAR10.mean[0]) / resnet.CIFAR10.std[0],
        atol=1e-5,
    )


def test_grayscale_rgba_and_palette_become_rgb(images):
    for name in ("gray", "rgba", "palette"):
        assert load_image(images[name]).mode == "RGB"
    rgba = preprocess(images["rgba"], resnet.CIFAR10)  # alpha dropped: the colour itself
    assert np.allclose(rgba, normalised([10, 200, 30], resnet.CIFAR10)[:, None, None], atol=1e-6)
    palette = preprocess(images["palette"], resnet.CIFAR10)
    assert np.allclose(palette, rgba, atol=1e-6)
    gray = preprocess(images["gray"], resnet.CIFAR10)
    raw = gray * np.array(resnet.CIFAR10.std)[:, None, None] + np.array(resnet.CIFAR10.mean)[:, None, None]
    assert np.allclose(raw[0], raw[1], atol=1e-6) and np.allclose(raw[1], raw[2], atol=1e-6)


def test_arrays_and_pil_images_match_files(images):
    from PIL import Image

    from_file = preprocess(images["gradient"], resnet.IMAGENET)
    array = np.asarray(Image.open(images["gradient"]).convert("RGB"))
    assert np.array_equal(preprocess(array, resnet.IMAGENET), from_file)
    assert np.array_equal(preprocess(Image.open(images["gradient"]), resnet.IMAGENET), from_file)
    as_float = preprocess(array.astype(np.float32) / 255.0, resnet.IMAGENET)
    assert np.abs(as_float - from_file).max() < 1e-5
    assert preprocess(array[:, :, :1], resnet.CIFAR10).shape == (3, 32, 32)


def test_small_images_are_upscaled(images):
    assert preprocess(images["small"], resnet.IMAGENET).shape == (3, 224, 224)  # 40 x 60 -> 256 x 384 -> crop


@pytest.mark.parametrize(
    "image,message",
    [
        ("missing.png", "image missing.png does not exist"),
        (np.zeros((4, 4, 2), np.uint8), "H x W x C with C 1, 3 or 4"),
        (np.zeros((4, 4), np.int32), "uint8, uint16 or float"),
        (42, "cannot read an image from a int"),
    ],
)
def test_bad_images(image, message):
    with pytest.raises(ImageError, match=message):
        preprocess(image, resnet.CIFAR10)


def test_text_file_is_not_an_image(images):
    with pytest.raises(ImageError, match="not_an_image.jpg is not a readable image"):
        preprocess(images["not_an_image_jpg"], resnet.CIFAR10)


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n{ } loop\n%%EOF\n"  # PostScript that never ends


def _encoded(kind: str) -> bytes:
    import io

    from PIL import Image

    if kind == "EPS":
        return EPS
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 40)).save(buffer, format=kind)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF", "EPS"])
def test_a_clients_bytes_are_decoded_as_jpeg_or_png_only_and_files_as_raster_formats(kind, tmp_path):
    """Issue 35, item 3: bytes a client sends are JPEG or PNG, no other decoder runs on them;
    files are the raster formats image folders are read by. Never EPS, which Pillow reads through
    Ghostscript where installed (a PostScript loop then spins for ever): refused whatever the file's
    suffix, before any program could run."""
    from deploy.preprocess import EncodedImage

    data = _encoded(kind)
    if kind in ("JPEG", "PNG"):
        assert preprocess(EncodedImage(data), resnet.CIFAR10).shape == (3, 32, 32)
    else:
        with pytest.raises(ImageError, match=r"the image is not a readable image \(not JPEG or PNG\)"):
            preprocess(EncodedImage(data), resnet.CIFAR10)
    path = tmp_path / "picture.jpg"  # a suffix says nothing of the content
    path.write_bytes(data)
    if kind in ("GIF", "EPS"):
        with pytest.raises(ImageError, match=r"picture.jpg is not a readable image \(not JPEG, PNG, BMP"):
            preprocess(path, resnet.CIFAR10)
    else:
        assert preprocess(path, resnet.CIFAR10).shape == (3, 32, 32)


def test_a_bound_on_decoding_is_said_whole_not_cut_mid_word():
    """Issue 35, item 7: the bound's own sentence was wrapped as a decoding error and cut at 100
    characters ("... above the 300 MB read: scale it do)")."""
    from crafted import png_header_only

    from deploy.preprocess import EncodedImage

    png = png_header_only(99_000_000, 1, color_type=6)
    with pytest.raises(ImageError) as refused:
        preprocess(EncodedImage(png), resnet.CIFAR10)
    assert (
        str(refused.value)
        == "the image is 99000000x1 in mode RGBA: 396 MB decoded, above the 300 MB read: scale it down first"
    )
