"""What a ResNet is built from, as plain data: `Architecture`, its name, the blocks' expansions, and
the names of its parts (blocks, module outputs, stages) that every later stage uses to talk about
a layer: the ONNX writer names nodes and tensors after them, and the comparison, the profiles and
the INT8 sensitivity read them back.

Torch-free on purpose: every artifact records its architecture (ONNX metadata, engine and bundle
manifests), and reading one back (`deploy.artifacts`, a Triton client, a board without PyTorch)
must not need PyTorch. `resnet.model.ResNet` builds the network from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import ToolkitError

# Output channels of a block = its width x the expansion (cookbook step 8): BasicBlock 1, Bottleneck 4.
BLOCK_EXPANSION = {"basic": 1, "bottleneck": 4}
STEMS = ("imagenet", "cifar")
SHORTCUT_KINDS = ("A", "B")


def model_name(depth: int, dataset: str = "imagenet") -> str:
    """`resnet50` for ImageNet models, `resnet20_cifar10` for CIFAR ones."""
    return f"resnet{depth}" if dataset == "imagenet" else f"resnet{depth}_{dataset}"


@dataclass(frozen=True)
class Architecture:
    """What a `ResNet` is built from; enough to build it again."""

    block: str  # "basic" or "bottleneck"
    layers: tuple[int, ...]  # blocks per stage
    widths: tuple[int, ...]  # channels per stage (before the block's expansion)
    stem: str  # "imagenet" or "cifar"
    shortcut: str  # "A" or "B"
    num_classes: int

    def __post_init__(self) -> None:
        if self.block not in BLOCK_EXPANSION:
            raise ToolkitError(f"block must be one of {', '.join(BLOCK_EXPANSION)}, got {self.block!r}")
        if self.stem not in STEMS:
            raise ToolkitError(f"stem must be one of {', '.join(STEMS)}, got {self.stem!r}")
        if self.shortcut not in SHORTCUT_KINDS:
            raise ToolkitError(f"shortcut must be one of {', '.join(SHORTCUT_KINDS)}, got {self.shortcut!r}")
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "widths", tuple(self.widths))

    @property
    def depth(self) -> int:
        """Weighted layers: the stem convolution, every main-path convolution, and fc."""
        return self.convs_per_block * sum(self.layers) + 2

    @property
    def convs_per_block(self) -> int:
        """Main-path convolutions of a block: 2 in a BasicBlock, 3 in a Bottleneck."""
        return 2 if self.block == "basic" else 3

    def blocks(self) -> list[str]:
        """Every residual block's module name, in network order: `layer1.0`, `layer1.1`, ..."""
        return [f"layer{stage + 1}.{index}" for stage, count in enumerate(self.layers) for index in range(count)]

    def module_points(self) -> list[str]:
        """The module outputs, in network order: the stem (`conv1`, `relu`, `maxpool` for ImageNet),
        each block's convolutions (`layer1.0.conv1`: with its BatchNorm, which export folds into it)
        and the ReLUs between them, its shortcut where it is not the identity (`downsample`), its
        residual sum (`add`) and last ReLU (`relu`), then `avgpool` and `fc` (the logits)."""
        names = ["conv1", "relu"] + (["maxpool"] if self.stem == "imagenet" else [])
        shortcuts = {name for name, *_ in self.shortcut_blocks()}
        convs = self.convs_per_block
        for block in self.blocks():
            for index in range(1, convs + 1):
                names.append(f"{block}.conv{index}")
                if index < convs:
                    names.append(f"{block}.relu{index}")
            names += [f"{block}.downsample"] if block in shortcuts else []
            names += [f"{block}.add", f"{block}.relu"]
        return names + ["avgpool", "fc"]

    @property
    def expansion(self) -> int:
        return BLOCK_EXPANSION[self.block]

    def shortcut_blocks(self) -> list[tuple[str, int, int, int]]:
        """(block name, stride, in_channels, out_channels) of each block whose shortcut is not
        the identity: the first block of a stage that changes resolution or width."""
        result = []
        in_channels = self.widths[0]
        for index, width in enumerate(self.widths):
            stride = 1 if index == 0 else 2
            out_channels = width * self.expansion
            if stride != 1 or in_channels != out_channels:
                result.append((f"layer{index + 1}.0", stride, in_channels, out_channels))
            in_channels = out_channels
        return result

    def macs(self, height: int, width: int, channels: int = 3) -> int:
        """Multiply-accumulates of one image through the convolutions and the classifier (what
        torchvision's tables count and `resnet.summary.count_macs` measures), worked out from the
        architecture alone: no PyTorch, no model."""
        side = _Side(height, width)
        total = 0
        if self.stem == "imagenet":
            side = side.conv(7, 2, 3)
            total += side.area * channels * self.widths[0] * 49
            side = side.conv(3, 2, 1)  # the max-pool
        else:
            total += side.area * channels * self.widths[0] * 9
        in_channels = self.widths[0]
        for stage, (count, width) in enumerate(zip(self.layers, self.widths, strict=True)):
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                macs, side = _block_macs(self.block, side, in_channels, width, stride)
                out_channels = width * self.expansion
                if self.shortcut == "B" and (stride != 1 or in_channels != out_channels):
                    macs += side.area * in_channels * out_channels  # the 1x1 projection, at the output's size
                total += macs
                in_channels = out_channels
        return total + in_channels * self.num_classes

    def largest_activation(self, height: int, width: int) -> int:
        """Elements of the largest tensor one image produces on its way through the network at
        `height` x `width`: the stem's convolution or a stage's output. From the architecture alone
        (no memory, no arithmetic), to estimate a run's memory before allocating."""
        half = lambda n: (n + 1) // 2  # noqa: E731 - a 3x3 or 7x7 convolution (or pool) with stride 2, "same" padding
        h, w = (half(height), half(width)) if self.stem == "imagenet" else (height, width)
        largest = self.widths[0] * h * w
        if self.stem == "imagenet":
            h, w = half(h), half(w)  # the max-pool
        for index, channels in enumerate(self.widths):
            if index:
                h, w = half(h), half(w)
            largest = max(largest, channels * self.expansion * h * w)
        return largest

    def tapped_elements(self, height: int, width: int) -> int:
        """Elements one image leaves behind at every module point (`module_points`) at once, as a
        layer-by-layer comparison holds them: an estimate from the architecture alone (a
        Bottleneck's inner convolutions counted at their narrower width)."""
        half = lambda n: (n + 1) // 2  # noqa: E731
        h, w = (half(height), half(width)) if self.stem == "imagenet" else (height, width)
        total = 2 * self.widths[0] * h * w  # conv1, relu
        if self.stem == "imagenet":
            h, w = half(h), half(w)
            total += self.widths[0] * h * w  # maxpool
        inner = 2 * (self.convs_per_block - 1)  # the convolutions and ReLUs before the last one
        for stage, (channels, blocks) in enumerate(zip(self.widths, self.layers, strict=True)):
            if stage:
                h, w = half(h), half(w)
            outer = channels * self.expansion * h * w
            total += blocks * (inner * channels * h * w + 3 * outer) + outer  # + conv3/add/relu; a downsample
        return total

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Side:
    """Height and width of a feature map, and what a convolution (or pooling) makes of them."""

    height: int
    width: int

    @property
    def area(self) -> int:
        return self.height * self.width

    def conv(self, kernel: int, stride: int, padding: int) -> _Side:
        return _Side(
            (self.height + 2 * padding - kernel) // stride + 1, (self.width + 2 * padding - kernel) // stride + 1
        )


def _block_macs(block: str, side: _Side, in_channels: int, width: int, stride: int) -> tuple[int, _Side]:
    """The main path's multiply-accumulates of one block, and its output's size (the stride on the
    first 3x3 convolution of a BasicBlock, on the 3x3 of a Bottleneck: "ResNet v1.5")."""
    if block == "basic":
        out = side.conv(3, stride, 1)
        return out.area * (in_channels * width * 9 + width * width * 9), out
    out = side.conv(3, stride, 1)
    return side.area * in_channels * width + out.area * (width * width * 9 + width * width * 4), out


def stage_of(name: str) -> str:
    """The stage a module (or a name inside one) belongs to: "stem", "layer1" ... "layer4", "head"."""
    if name.startswith("layer"):
        return name.split(".")[0]
    return "head" if name.split(".")[0] in ("avgpool", "flatten", "fc") else "stem"
