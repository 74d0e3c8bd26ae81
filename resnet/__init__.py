"""The ResNet model zoo: shortcuts, blocks, stems, `ResNet`, the registry and checkpoints.

    import resnet
    model = resnet.create(50)                      # torchvision's ResNet-50 layout, random weights
    model = resnet.create(50, weights="rn50.pth")  # a checkpoint file (torchvision's loads as is)
    model = resnet.create(20, "cifar10")           # the paper's CIFAR ResNet-20, Option A

Depends on torch and the toolkit's plumbing (`toolkit`) only.
"""

from toolkit import __version__

from .blocks import BasicBlock, Bottleneck, conv1x1, conv3x3
from .checkpoint import (
    check_state_dict,
    infer_architecture,
    load_checkpoint,
    load_model,
    read_checkpoint,
    read_state_dict,
)
from .errors import CheckpointError, ToolkitError
from .model import Architecture, ResNet, model_name
from .registry import (
    CIFAR_MODELS,
    DATASETS,
    IMAGENET_MODELS,
    ModelEntry,
    create,
    model_entry,
    registered_models,
)
from .shortcuts import SHORTCUT_KINDS, ShortcutA, ShortcutB, make_shortcut
from .spec import CIFAR10, CIFAR100, DATASET_INPUTS, DIGITS, IMAGENET, InputSpec
from .summary import ModelSummary, count_macs, count_parameters, summarize

__all__ = [
    "__version__",
    "Architecture",
    "BasicBlock",
    "Bottleneck",
    "CIFAR10",
    "CIFAR100",
    "CIFAR_MODELS",
    "CheckpointError",
    "DATASETS",
    "DATASET_INPUTS",
    "DIGITS",
    "IMAGENET",
    "IMAGENET_MODELS",
    "InputSpec",
    "ModelEntry",
    "ModelSummary",
    "ResNet",
    "SHORTCUT_KINDS",
    "ShortcutA",
    "ShortcutB",
    "ToolkitError",
    "check_state_dict",
    "conv1x1",
    "conv3x3",
    "count_macs",
    "count_parameters",
    "create",
    "infer_architecture",
    "load_checkpoint",
    "load_model",
    "make_shortcut",
    "model_entry",
    "model_name",
    "read_checkpoint",
    "read_state_dict",
    "registered_models",
    "summarize",
]
