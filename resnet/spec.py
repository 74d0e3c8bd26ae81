"""What a model expects at its input: image size, normalisation, class count.

The input spec travels with every artifact (ONNX metadata, engine manifest, bundle manifest)
so that later stages never ask the user again how the model was made.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from toolkit.numbers import LIMITS, check_number

from .errors import ToolkitError


@dataclass(frozen=True)
class InputSpec:
    """Input layout and preprocessing of a model: NCHW, RGB, values scaled to [0, 1] then normalised.

    `resize` is the shorter-side size an image is resized to before the centre crop to
    `height` x `width` (256 for ImageNet's 224 crop); None means resize straight to
    `height` x `width` (CIFAR).
    """

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_classes: int
    resize: int | None = None
    channels: int = 3

    def __post_init__(self) -> None:
        for side in (self.height, self.width):
            check_number(side, "input size (pixels per side)", integer=True, limit="input size")
        if self.resize is not None:
            check_number(self.resize, "resize (shorter side)", integer=True, low=1, high=4 * LIMITS["input size"][1])
            if self.resize < max(self.height, self.width):  # else the crop doesn't fit in some images
                raise ToolkitError(
                    f"resize (shorter side) {self.resize} must be at least the crop's longer side, "
                    f"{max(self.height, self.width)}, so that a {self.height}x{self.width} crop fits every image"
                )
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ToolkitError(f"mean and std need three values (R, G, B), got {self.mean} and {self.std}")
        for value in self.mean:
            check_number(value, "mean values", low=-1e6, high=1e6)
        for value in self.std:
            check_number(value, "std values", low=0, low_open=True, high=1e6)
        check_number(self.num_classes, "num_classes", integer=True, limit="classes")
        check_number(self.channels, "input channels", integer=True, low=1, high=4)
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def with_classes(self, num_classes: int) -> InputSpec:
        return replace(self, num_classes=num_classes)

    def with_size(self, height: int, width: int) -> InputSpec:
        """The same spec at another resolution. An ImageNet-style resize keeps its 256/224 ratio to
        the crop's longer side: the shorter side of every image, square or not, then covers the
        crop (224x224 -> 256; 64x96 -> 110)."""
        longest = max(self.height, self.width)
        resize = None if self.resize is None else round(max(height, width) * self.resize / longest)
        return replace(self, height=height, width=width, resize=resize)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> InputSpec:
        fields = ("height", "width", "mean", "std", "num_classes", "resize", "channels")
        return cls(**{k: (tuple(data[k]) if k in ("mean", "std") else data[k]) for k in fields if k in data})


IMAGENET = InputSpec(224, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1000, resize=256)
# Per-channel statistics of the CIFAR training sets.
CIFAR10 = InputSpec(32, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 10)
CIFAR100 = InputSpec(32, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 100)
# scikit-learn's handwritten digits (8x8 grayscale scans, 10 classes), upsampled to 32x32 and
# scaled to [-1, 1]: the data of the trained test model (tools/train_digits.py).
DIGITS = InputSpec(32, 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 10)

DATASET_INPUTS = {"imagenet": IMAGENET, "cifar10": CIFAR10, "cifar100": CIFAR100, "digits": DIGITS}
