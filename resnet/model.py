"""The `ResNet` network: stem, stages of residual blocks, classifier head (steps 7-9 of docs/cookbook.md)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from toolkit.numbers import check_number

from .architecture import Architecture, model_name
from .blocks import BLOCKS, BasicBlock, Bottleneck
from .errors import ToolkitError
from .spec import DATASET_INPUTS, InputSpec

__all__ = ["Architecture", "ResNet", "model_name"]  # Architecture and model_name live in resnet.architecture


def _architecture(block, layers, widths, stem, shortcut, num_classes) -> Architecture:
    """The `Architecture` of `ResNet`'s arguments, after checking them."""
    if block not in BLOCKS.values():
        raise ToolkitError(f"block must be BasicBlock or Bottleneck, got {block!r}")
    if len(layers) != len(widths) or not layers or min(layers) < 1:
        raise ToolkitError(
            f"layers {tuple(layers)} and widths {tuple(widths)} must be equally long, with at least one block per stage"
        )
    if not isinstance(num_classes, int) or isinstance(num_classes, bool):
        raise ToolkitError(f"num_classes must be a positive integer, got {num_classes!r}")
    check_number(num_classes, "num_classes", integer=True, limit="classes")
    block_name = next(name for name, cls in BLOCKS.items() if cls is block)
    return Architecture(block_name, tuple(layers), tuple(widths), stem, shortcut, num_classes)


class ResNet(nn.Module):
    """A ResNet for ImageNet-sized or CIFAR-sized images.

    `block` is `BasicBlock` or `Bottleneck`; `layers[i]` blocks in stage i with `widths[i]`
    channels (times the block's expansion). Stage 1 keeps the resolution, every later stage
    halves it in its first block. Module names are torchvision's (`conv1`, `bn1`, `layer1`...,
    `fc`), so its checkpoints load unchanged. `dataset` names what it is for ("imagenet",
    "cifar10", "cifar100", "digits"; default: the stem's), `input_spec` what it expects (image size,
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
        self.architecture = _architecture(block, layers, widths, stem, shortcut, num_classes)
        dataset = dataset or ("imagenet" if stem == "imagenet" else "cifar10")
        if dataset not in DATASET_INPUTS:
            raise ToolkitError(f"dataset must be one of {', '.join(DATASET_INPUTS)}, got {dataset!r}")
        self.dataset = dataset
        self.name = model_name(self.architecture.depth, dataset)
        self.input_spec = (input_spec or DATASET_INPUTS[dataset]).with_classes(num_classes)
        self.make_stem(stem, widths[0])
        # Step 8, the stages: layer1, layer2, ...
        self.in_channels = widths[0]
        for index, (width, count) in enumerate(zip(widths, layers, strict=True)):
            stride = 1 if index == 0 else 2
            self.add_module(f"layer{index + 1}", self.make_stage(block, width, count, stride, shortcut))
        # Step 9, the head.
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.in_channels, num_classes)
        self.initialize(zero_init_residual)

    def make_stem(self, stem: str, width: int) -> None:
        """Step 7. ImageNet: 7x7/2 conv and 3x3/2 max-pool, 224 -> 56. CIFAR: one 3x3/1 conv and
        no pooling, 32 stays 32."""
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()

    def initialize(self, zero_init_residual: bool = False) -> None:
        """torchvision's initialisation: Kaiming-normal convolutions, BatchNorm scale 1 and shift 0;
        with `zero_init_residual`, each block's last BatchNorm scale 0, so that every block starts
        as the identity (helps training; Goyal et al. 2017)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
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
