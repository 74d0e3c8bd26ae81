"""The registered models and `create`, the one entry point to build them.

The tables (`IMAGENET_MODELS`, `CIFAR_MODELS`, `DATASETS`) and `ModelOptions` are plain data:
naming a model, or checking a name, does not import PyTorch; `create` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .architecture import model_name
from .errors import ToolkitError
from .spec import DATASET_INPUTS, InputSpec

if TYPE_CHECKING:
    from .model import ResNet


@dataclass(frozen=True)
class ModelEntry:
    """One registered architecture: its depth, blocks and the dataset family it is shaped for."""

    depth: int
    family: str  # "imagenet" or "cifar"
    block: str
    layers: tuple[int, ...]
    widths: tuple[int, ...]
    default_shortcut: str


IMAGENET_WIDTHS = (64, 128, 256, 512)
CIFAR_WIDTHS = (16, 32, 64)

# ImageNet: He et al. 2015, Table 1 (torchvision's layer counts). Shortcut B, as torchvision.
IMAGENET_MODELS = {
    18: ModelEntry(18, "imagenet", "basic", (2, 2, 2, 2), IMAGENET_WIDTHS, "B"),
    34: ModelEntry(34, "imagenet", "basic", (3, 4, 6, 3), IMAGENET_WIDTHS, "B"),
    50: ModelEntry(50, "imagenet", "bottleneck", (3, 4, 6, 3), IMAGENET_WIDTHS, "B"),
    101: ModelEntry(101, "imagenet", "bottleneck", (3, 4, 23, 3), IMAGENET_WIDTHS, "B"),
    152: ModelEntry(152, "imagenet", "bottleneck", (3, 8, 36, 3), IMAGENET_WIDTHS, "B"),
}
# CIFAR: He et al. 2015, section 4.2: depth 6n+2, n basic blocks per stage, widths 16/32/64,
# shortcut A (the paper's choice for these models).
CIFAR_MODELS = {
    depth: ModelEntry(depth, "cifar", "basic", ((depth - 2) // 6,) * 3, CIFAR_WIDTHS, "A")
    for depth in (20, 32, 44, 56, 110, 1202)
}
DATASETS = {"imagenet": "imagenet", "cifar10": "cifar", "cifar100": "cifar", "digits": "cifar"}  # dataset -> family
FAMILIES = {"imagenet": IMAGENET_MODELS, "cifar": CIFAR_MODELS}


def model_entry(depth: int, dataset: str = "imagenet") -> ModelEntry:
    """The registry entry for a depth and dataset; an error lists the valid choices."""
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise ToolkitError(f"depth must be a whole number (18, 50, 20, ...), got {depth!r}")
    if dataset not in DATASETS:
        raise ToolkitError(f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    models = FAMILIES[DATASETS[dataset]]
    if depth not in models:
        valid = ", ".join(str(d) for d in models)
        raise ToolkitError(f"depth {depth} is not a registered {dataset} ResNet; choose one of {valid}")
    return models[depth]


def registered_models() -> list[tuple[int, str]]:
    """(depth, dataset) for every registered model, ImageNet first."""
    return [(d, "imagenet") for d in IMAGENET_MODELS] + [(d, "cifar10") for d in CIFAR_MODELS]


def create(
    depth: int,
    dataset: str = "imagenet",
    *,
    shortcut: str | None = None,
    num_classes: int | None = None,
    weights: str | Path | None = None,
    zero_init_residual: bool = False,
    input_spec: InputSpec | None = None,
) -> ResNet:
    """Build a registered ResNet, e.g. `create(50)` or `create(20, "cifar10")`.

    `shortcut` defaults to the family's choice (B for ImageNet, A for CIFAR); `num_classes` to the
    dataset's (1000, 10, 100). `weights` is a checkpoint file path (see `load_checkpoint`); it is
    loaded with strict key and shape checking. `input_spec` overrides the dataset's input size,
    mean and std (its class count always follows `num_classes`). The model is returned in
    training mode, as `torch.nn.Module` constructors do; call `.eval()` for inference.
    """
    from .blocks import BLOCKS
    from .model import ResNet

    entry = model_entry(depth, dataset)
    spec = input_spec or DATASET_INPUTS[dataset]
    model = ResNet(
        BLOCKS[entry.block],
        entry.layers,
        widths=entry.widths,
        stem=entry.family,
        shortcut=shortcut or entry.default_shortcut,
        num_classes=spec.num_classes if num_classes is None else num_classes,
        zero_init_residual=zero_init_residual,
        dataset=dataset,
        input_spec=spec,
    )
    if weights is not None:
        from .checkpoint import load_checkpoint

        load_checkpoint(model, weights)
    return model


@dataclass(frozen=True)
class ModelOptions:
    """A registered model and how to build it: what `create` takes, as one value (the command
    lines' `--depth`, `--dataset`, `--shortcut`, `--num-classes`, and resnet-export's `--weights`
    and input options). Checked when made: the depth must be registered for the dataset."""

    depth: int
    dataset: str = "imagenet"
    shortcut: str | None = None  # None: the family's (B for ImageNet, A for CIFAR)
    num_classes: int | None = None  # None: the dataset's
    weights: Path | None = None  # a checkpoint file; None: random initialisation
    input_spec: InputSpec | None = None  # None: the dataset's
    seed: int = 0  # of the random initialisation (without weights): the same network in every process

    def __post_init__(self) -> None:
        model_entry(self.depth, self.dataset)

    @property
    def name(self) -> str:
        """The model's name (`resnet50`, `resnet20_cifar10`), as `create` will name it."""
        return model_name(self.depth, self.dataset)

    def create(self, *, zero_init_residual: bool = False) -> ResNet:
        """`create` with these options; the random initialisation seeded with `seed` (on a random
        generator of its own: the process's is left as it was)."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return create(
                self.depth,
                self.dataset,
                shortcut=self.shortcut,
                num_classes=self.num_classes,
                weights=self.weights,
                zero_init_residual=zero_init_residual,
                input_spec=self.input_spec,
            )
