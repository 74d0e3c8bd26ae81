"""Images written by the tests themselves (Pillow), and small exported models."""

import numpy as np
import pytest
import torch

import resnet
from export import export_onnx

PIL = pytest.importorskip("PIL", reason="Pillow is needed for the image tests: pip install '.[images]'")
from PIL import Image  # noqa: E402


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    paths = {}
    Image.new("RGB", (500, 375), (200, 30, 40)).save(folder / "red.png")
    Image.new("RGB", (500, 375), (200, 30, 40)).save(folder / "red.jpg", quality=95)
    Image.new("RGB", (40, 60), (12, 34, 56)).save(folder / "small.png")
    gradient = np.tile(np.arange(256, dtype=np.uint8), (200, 1))  # value = x, 256 wide, 200 high
    Image.fromarray(np.stack([gradient, gradient[:, ::-1], np.full_like(gradient, 77)], axis=2)).save(
        folder / "gradient.png"
    )
    Image.fromarray(gradient).save(folder / "gray.png")
    Image.new("RGBA", (64, 48), (10, 200, 30, 90)).save(folder / "rgba.png")
    palette = Image.new("P", (48, 64))
    palette.putpalette([10, 200, 30] + [0, 0, 0] * 255)
    palette.save(folder / "palette.png")
    (folder / "not_an_image.jpg").write_text("plain text, not pixels")
    for path in folder.iterdir():
        paths[path.stem if path.suffix != ".jpg" else path.stem + "_jpg"] = path
    return paths


@pytest.fixture(scope="session")
def models(tmp_path_factory, bn_randomizer):
    folder = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    cifar = bn_randomizer(resnet.create(20, "cifar10")).eval()
    imagenet = bn_randomizer(resnet.create(18, num_classes=10)).eval()
    files = {
        "cifar": folder / "r20.onnx",
        "cifar_b4": folder / "r20_b4.onnx",
        "cifar_fp16": folder / "r20_fp16.onnx",
        "cifar_fp16_io": folder / "r20_fp16_io.onnx",
        "imagenet": folder / "r18.onnx",
    }
    export_onnx(cifar, files["cifar"], validate=False)
    export_onnx(cifar, files["cifar_b4"], batch=4, dynamic_batch=False, validate=False)
    export_onnx(cifar, files["cifar_fp16"], precision="fp16", validate=False)
    export_onnx(cifar, files["cifar_fp16_io"], precision="fp16", io_dtype="fp16", validate=False)
    export_onnx(imagenet, files["imagenet"], validate=False)
    return {"files": files, "cifar": cifar, "imagenet": imagenet}
