"""The `ResNet` network: stem, stages of residual blocks, classifier head (steps 7-9 of docs/cookbook.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from toolkit.numbers import check_number

from .blocks import BLOCKS, BasicBlock, Bottleneck
from .errors import ToolkitError
from .shortcuts import SHORTCUT_KINDS
from .spec import DATASET_INPUTS, InputSpec

STEMS = ("imagenet", "cifar")


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

    @property
    def depth(self) -> int:
        """Weighted layers: the stem convolution, every main-path convolution, and fc."""
        convs_per_block = 2 if self.block == "basic" else 3
        return convs_per_block * sum(self.layers) + 2

    @property
    def expansion(self) -> int:
        return BLOCKS[self.block].expansion

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

    def to_dict(self) -> dict:
        return asdict(self)


class ResNet(nn.Module):
    """A ResNet for ImageNet-sized or CIFAR-sized images.

    `block` is `BasicBlock` or `Bottleneck`; `layers[i]` blocks in stage i with `widths[i]`
    channels (times the block's expansion). Stage 1 keeps the resolution, every later stage
    halves it in its first block. Module names are torchvision's (`conv1`, `bn1`, `layer1`...,
    `fc`), so its checkpoints load unchanged. `dataset` names what it is for ("imagenet",
    "cifar10", "cifar100"; default: the stem's), `input_spec` what it expects (image size,
    normalisation; default: the dataset's). Both travel into exported artifacts.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        *,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem: str = "imagenet",
        shortcut: str = "B",
        num_classes: int = 1000,
        zero_init_residual: bool = False,
        dataset: str | None = None,
        input_spec: InputSpec | None = None,
    ) -> None:
        super().__init__()
        if block not in BLOCKS.values():
            raise ToolkitError(f"block must be BasicBlock or Bottleneck, got {block!r}")
        if stem not in STEMS:
            raise ToolkitError(f"stem must be one of {', '.join(STEMS)}, got {stem!r}")
        if shortcut not in SHORTCUT_KINDS:
            raise ToolkitError(f"shortcut must be one of {', '.join(SHORTCUT_KINDS)}, got {shortcut!r}")
        if len(layers) != len(widths) or not layers or min(layers) < 1:
            raise ToolkitError(
                f"layers {tuple(layers)} and widths {tuple(widths)} must be equally long, with at least one block per stage"
            )
        if not isinstance(num_classes, int) or isinstance(num_classes, bool):
            raise ToolkitError(f"num_classes must be a positive integer, got {num_classes!r}")
        check_number(num_classes, "num_classes", integer=True, limit="classes")
        dataset = dataset or ("imagenet" if stem == "imagenet" else "cifar10")
        if dataset not in DATASET_INPUTS:
            raise ToolkitError(f"dataset must be one of {', '.join(DATASET_INPUTS)}, got {dataset!r}")
        block_name = next(name for name, cls in BLOCKS.items() if cls is block)
        self.architecture = Architecture(block_name, tuple(layers), tuple(widths), stem, shortcut, num_classes)
        self.dataset = dataset
        self.name = model_name(self.architecture.depth, dataset)
        self.input_spec = (input_spec or DATASET_INPUTS[dataset]).with_classes(num_classes)

        # Step 7, the stem. ImageNet: 7x7/2 conv and 3x3/2 max-pool, 224 -> 56.
        # CIFAR: one 3x3/1 conv and no pooling, 32 stays 32.
        stem_width = widths[0]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, stem_width, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, stem_width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()

        # Step 8, the stages: layer1, layer2, ...
        self.in_channels = stem_width
        for index, (width, count) in enumerate(zip(widths, layers, strict=True)):
            stride = 1 if index == 0 else 2
            self.add_module(f"layer{index + 1}", self.make_stage(block, width, count, stride, shortcut))

        # Step 9, the head.
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.in_channels, num_classes)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            # Each block then starts as the identity; helps training (Goyal et al. 2017).
            for module in self.modules():
                if isinstance(module, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(module.last_bn.weight)

    @classmethod
    def from_architecture(
        cls, architecture: Architecture, *, dataset: str | None = None, input_spec: InputSpec | None = None
    ) -> ResNet:
        """A freshly initialised network of the given architecture."""
        a = architecture
        return cls(
            BLOCKS[a.block],
            a.layers,
            widths=a.widths,
            stem=a.stem,
            shortcut=a.shortcut,
            num_classes=a.num_classes,
            dataset=dataset,
            input_spec=input_spec,
        )

    def make_stage(
        self, block: type[BasicBlock] | type[Bottleneck], channels: int, count: int, stride: int, shortcut: str
    ) -> nn.Sequential:
        """`count` blocks; only the first takes the stride and the channel change (step 8)."""
        blocks = [block(self.in_channels, channels, stride, shortcut)]
        # The trap of step 8: later blocks see the first block's output channels.
        self.in_channels = channels * block.expansion
        for _ in range(1, count):
            blocks.append(block(self.in_channels, channels, 1, shortcut))
        return nn.Sequential(*blocks)

    @property
    def stages(self) -> list[nn.Sequential]:
        """The stages in order (`layer1`, `layer2`, ...)."""
        return [getattr(self, f"layer{i + 1}") for i in range(len(self.architecture.layers))]

    @property
    def depth(self) -> int:
        return self.architecture.depth

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and stages: [N, 3, H, W] -> [N, C, H/s, W/s] (s = 32 for ImageNet, 4 for CIFAR)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)
