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

    def to_dict(self) -> dict:
        return asdict(self)


def stage_of(name: str) -> str:
    """The stage a module (or a name inside one) belongs to: "stem", "layer1" ... "layer4", "head"."""
    if name.startswith("layer"):
        return name.split(".")[0]
    return "head" if name.split(".")[0] in ("avgpool", "flatten", "fc") else "stem"
