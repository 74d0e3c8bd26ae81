"""The ResNet model zoo: shortcuts, blocks, stems, `ResNet`, the registry and checkpoints.

    import resnet
    model = resnet.create(50)                      # torchvision's ResNet-50 layout, random weights
    model = resnet.create(50, weights="rn50.pth")  # a checkpoint file (torchvision's loads as is)
    model = resnet.create(20, "cifar10")           # the paper's CIFAR ResNet-20, Option A

Depends on torch and the toolkit's plumbing (`toolkit`) only. What describes a model without
building it (`Architecture`, `InputSpec`, the registry's tables, `ModelOptions`) is plain data and
imports no torch: `import resnet` is cheap, and the modules that need torch (blocks, shortcuts,
`ResNet`, checkpoints, summaries) are imported on first use of one of their names.
"""

from toolkit import __version__
from toolkit.lazy import lazy_names

from .architecture import BLOCK_EXPANSION, SHORTCUT_KINDS, Architecture, model_name
from .errors import CheckpointError, ToolkitError
from .registry import (
    CIFAR_MODELS,
    DATASETS,
    IMAGENET_MODELS,
    ModelEntry,
    ModelOptions,
    create,
    model_entry,
    registered_models,
)
from .spec import CIFAR10, CIFAR100, DATASET_INPUTS, DIGITS, IMAGENET, InputSpec

# name -> the module (of this package) that defines it and needs torch
_WITH_TORCH = {
    "BasicBlock": "blocks",
    "Bottleneck": "blocks",
    "conv1x1": "blocks",
    "conv3x3": "blocks",
    "ShortcutA": "shortcuts",
    "ShortcutB": "shortcuts",
    "make_shortcut": "shortcuts",
    "ResNet": "model",
    "check_state_dict": "checkpoint",
    "infer_architecture": "checkpoint",
    "load_checkpoint": "checkpoint",
    "load_model": "checkpoint",
    "read_checkpoint": "checkpoint",
    "read_state_dict": "checkpoint",
    "ModelSummary": "summary",
    "count_macs": "summary",
    "count_parameters": "summary",
    "summarize": "summary",
}


__all__ = [
    "__version__",
    "Architecture",
    "BLOCK_EXPANSION",
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
    "ModelOptions",
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

__getattr__, __dir__ = lazy_names(__name__, _WITH_TORCH, __all__)
