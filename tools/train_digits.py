#!/usr/bin/env python3
"""Train the test suite's real model: a CIFAR ResNet-20 (Option A) on scikit-learn's handwritten
digits, and write it with its held-out images.

    pip install scikit-learn            # the data set ships inside its wheel; nothing is downloaded
    PYTHONPATH=. python tools/train_digits.py                      # writes tests/data/digits/

scikit-learn's `load_digits` holds 1,797 real 8x8 grayscale scans of handwritten digits (values
0-16, 10 classes). A fixed permutation (seed 2026) holds out 500 of them; the other 1,297 train
the model. Every image goes through the toolkit's own preprocessing for the "digits" input spec
(`resnet.DIGITS`: resize 8x8 -> 32x32 bilinear, grayscale -> RGB, scale to [0, 1], mean/std 0.5),
the same code the Predictor and `resnet-eval` run, so training and every later stage see the same
tensors. Training: SGD (momentum 0.9, Nesterov, weight decay 5e-4), one-cycle schedule to a
learning rate of 0.1, batches of 64, random shifts of up to 2 pixels, 15 epochs, 2 threads.

Written (OUT = tests/data/digits):
- OUT/resnet20_digits.pth: {"state_dict": ..., "dataset": "digits"} (the dataset entry tells
  `resnet.load_model` which input spec the model expects);
- OUT/heldout/<class>/<index>.png: the 500 held-out scans as 8x8 PNGs (0-16 scaled to 0-255),
  in the ImageFolder layout torchvision uses; <index> is the scan's index in `load_digits`;
- OUT/calibration/<index>.png: 200 scans from the training split, a flat folder, for INT8
  calibration (so that calibration never sees a held-out image);
- OUT/digits.json: the seed, the split sizes, the settings, the held-out accuracy reached and the
  time it took.

Deterministic for a given machine and library versions (seeded, fixed thread count); another CPU
or PyTorch release may round differently and land on a slightly different model.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

SEED = 2026
HELDOUT, CALIBRATION = 500, 200
ROOT = Path(__file__).resolve().parents[1]


def to_uint8(scan: np.ndarray) -> np.ndarray:
    """A 0-16 scan as 0-255 pixels."""
    return np.round(scan * (255.0 / 16.0)).astype(np.uint8)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=ROOT / "tests" / "data" / "digits")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    return parser.parse_args(argv)


def train(model: nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, args: argparse.Namespace) -> float:
    """SGD with a one-cycle schedule and random shifts of up to 2 pixels; returns the seconds it took."""
    spec = model.input_spec
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = (len(x_train) + args.batch - 1) // args.batch
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps)
    loss_fn = nn.CrossEntropyLoss()
    background = (0.0 - spec.mean[0]) / spec.std[0]  # a 0 pixel after normalisation
    generator = torch.Generator().manual_seed(SEED)
    started = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        permutation = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for start in range(0, len(x_train), args.batch):
            index = permutation[start : start + args.batch]
            x = nn.functional.pad(x_train[index], (2, 2, 2, 2), value=background)
            dy, dx = (int(v) for v in torch.randint(0, 5, (2,), generator=generator))
            x = x[:, :, dy : dy + 32, dx : dx + 32]  # a random shift of up to 2 pixels
            loss = loss_fn(model(x), y_train[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss) * len(index)
        print(f"epoch {epoch + 1:2d}/{args.epochs}: loss {total / len(x_train):.4f}", flush=True)
    return time.perf_counter() - started


def write_images(digits, heldout: np.ndarray, train_split: np.ndarray, output: Path) -> None:
    """The held-out scans as OUTPUT/heldout/<class>/<index>.png, the calibration scans (the
    first of the training split) as OUTPUT/calibration/<index>.png."""
    from PIL import Image

    for folder in (output / "heldout", output / "calibration"):
        shutil.rmtree(folder, ignore_errors=True)
    for i in heldout:
        path = output / "heldout" / str(digits.target[i]) / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(to_uint8(digits.images[i]), mode="L").save(path, optimize=True)
    (output / "calibration").mkdir(parents=True, exist_ok=True)
    for i in train_split[:CALIBRATION]:
        Image.fromarray(to_uint8(digits.images[i]), mode="L").save(
            output / "calibration" / f"{i:04d}.png", optimize=True
        )


def heldout_accuracy(model: nn.Module, output: Path) -> tuple[float, int]:
    """Top-1 on the held-out PNGs, read back as every later stage reads them; (accuracy, images)."""
    from deploy.preprocess import preprocess

    model.eval()
    files = sorted((output / "heldout").glob("*/*.png"))
    x = torch.from_numpy(np.stack([preprocess(path, model.input_spec) for path in files]))
    labels = torch.tensor([int(path.parent.name) for path in files])
    with torch.no_grad():
        return float((model(x).argmax(1) == labels).float().mean()), len(files)


def training_record(args, sizes: dict, spec, seconds: float, accuracy: float, argv) -> dict:
    """What digits.json says: the data, the seed, the split sizes, the settings, the accuracy, the versions."""
    return {
        "data": "sklearn.datasets.load_digits (1,797 8x8 scans, 10 classes)",
        "seed": SEED,
        **sizes,
        "calibration": CALIBRATION,
        "model": "resnet20_digits (CIFAR ResNet-20, shortcut A)",
        "input_spec": spec.to_dict(),
        "training": {
            "epochs": args.epochs,
            "batch": args.batch,
            "optimizer": "SGD momentum 0.9 nesterov, weight decay 5e-4",
            "schedule": f"one-cycle to lr {args.lr}",
            "augmentation": "random shifts of up to 2 pixels",
            "threads": 2,
            "seconds": round(seconds, 1),
        },
        "heldout_top1": round(accuracy, 4),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "scikit-learn": __import__("sklearn").__version__,
            "numpy": np.__version__,
        },
        "command": "PYTHONPATH=. python tools/train_digits.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    from sklearn.datasets import load_digits

    import resnet
    from deploy.preprocess import preprocess

    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    digits = load_digits()
    order = np.random.default_rng(SEED).permutation(len(digits.images))
    heldout, train_split = order[:HELDOUT], order[HELDOUT:]
    spec = resnet.DIGITS
    x_train = torch.from_numpy(np.stack([preprocess(to_uint8(digits.images[i]), spec) for i in train_split]))
    y_train = torch.from_numpy(digits.target[train_split].astype(np.int64))
    model = resnet.create(20, "digits")
    seconds = train(model, x_train, y_train, args)
    write_images(digits, heldout, train_split, args.output)
    accuracy, count = heldout_accuracy(model, args.output)
    torch.save({"state_dict": model.state_dict(), "dataset": "digits"}, args.output / "resnet20_digits.pth")
    sizes = {"train": len(train_split), "heldout": len(heldout)}
    record = training_record(args, sizes, spec, seconds, accuracy, argv)
    (args.output / "digits.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"held-out top-1 {accuracy:.2%} ({count} images); {seconds:.0f} s of training; wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
