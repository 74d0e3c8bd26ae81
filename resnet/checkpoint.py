"""Loading weights from a checkpoint file, in the layouts training code commonly saves.

Accepted: a plain state_dict; a dict holding it under "state_dict" or "model" (Lightning,
timm and torchvision's reference scripts); keys prefixed "module." (DataParallel /
DistributedDataParallel) or "_orig_mod." (torch.compile), in any combination. Files are read
with `torch.load(weights_only=True)`, which never runs code from the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from toolkit.files import input_file

from .architecture import Architecture
from .errors import CheckpointError
from .model import ResNet
from .spec import DATASET_INPUTS

WRAPPER_KEYS = ("state_dict", "model")
KEY_PREFIXES = ("module.", "_orig_mod.")
LISTED = 5  # keys shown per kind of mismatch


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped and with wrapper prefixes removed."""
    return read_checkpoint(path)[0]


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict, metadata) of a checkpoint file. Metadata are the plain values saved beside a
    wrapped state_dict, e.g. `{"state_dict": ..., "dataset": "digits"}` (empty for a bare one)."""
    path = input_file(path, "checkpoint", "a checkpoint file", CheckpointError)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch.load raises almost anything on a foreign file
        raise CheckpointError(_unreadable(path, error)) from None
    metadata = (
        {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, (str, int, float, bool))}
        if isinstance(data, Mapping) and not _is_state_dict(data)
        else {}
    )
    return unwrap_state_dict(data, source=str(path)), metadata


def _unreadable(path: Path, error: Exception) -> str:
    """Why a checkpoint can't be read, in one sentence. Only tensors (and plain containers) are
    ever loaded: a file holding other Python objects could run code when unpickled, so that is
    said plainly, and never worked around."""
    foreign = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
    if foreign:
        return (
            f"checkpoint {path} holds Python objects besides tensors ({foreign.group(1)}), which this toolkit never "
            "loads (unpickling them can run code from the file); save the weights alone: "
            "torch.save(model.state_dict(), path)"
        )
    return (
        f"checkpoint {path} is not a PyTorch checkpoint of tensors (torch.load could not read it as one); "
        "save one with torch.save(model.state_dict(), path)"
    )


def unwrap_state_dict(data: object, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Find the state_dict inside a loaded checkpoint and strip `module.`/`_orig_mod.` prefixes."""
    while isinstance(data, Mapping) and not _is_state_dict(data):
        inner = next((data[k] for k in WRAPPER_KEYS if k in data and isinstance(data[k], Mapping)), None)
        if inner is None:
            keys = ", ".join(sorted(map(str, data))[:8])
            raise CheckpointError(
                f"{source} holds neither a state_dict nor one under {' or '.join(map(repr, WRAPPER_KEYS))} (top-level keys: {keys})"
            )
        data = inner
    if not isinstance(data, Mapping) or not data:
        raise CheckpointError(f"{source} does not hold a state_dict (found {type(data).__name__})")
    return {_strip_prefixes(key): value for key, value in data.items()}


def _is_state_dict(data: Mapping) -> bool:
    return bool(data) and all(isinstance(v, torch.Tensor) for v in data.values())


def _strip_prefixes(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in KEY_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise `CheckpointError` listing missing, unexpected and wrongly shaped keys, if any."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state_dict[k].shape)} (model: {tuple(expected[k].shape)})"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or wrong_shape):
        return
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if keys:
            more = f", ... ({len(keys) - LISTED} more)" if len(keys) > LISTED else ""
            parts.append(f"{len(keys)} {label}: {', '.join(keys[:LISTED])}{more}")
    hint = _hint(model, state_dict, missing, unexpected, wrong_shape)
    raise CheckpointError(f"{source} does not fit {getattr(model, 'name', 'the model')}: {'; '.join(parts)}{hint}")


def _hint(model, state_dict, missing, unexpected, wrong_shape) -> str:
    """A likely cause, when the mismatch has a recognisable pattern."""
    if not missing and not unexpected and wrong_shape and all(k.startswith("fc.") for k in wrong_shape):
        return f". The checkpoint has {state_dict['fc.weight'].shape[0]} classes: pass num_classes={state_dict['fc.weight'].shape[0]}"
    if any(".downsample." in k for k in missing) and not any(".downsample." in k for k in unexpected):
        return ". The checkpoint has no projection shortcuts: it may be an Option A model (shortcut='A')"
    if any(".downsample." in k for k in unexpected) and not missing:
        return ". The checkpoint has projection shortcuts: it may be an Option B model (shortcut='B')"
    return ""


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a checkpoint file into `model` with strict key and shape checking; returns `model`."""
    state_dict = read_state_dict(path)
    check_state_dict(model, state_dict, source=f"checkpoint {path}")
    model.load_state_dict(state_dict, strict=True)
    return model


def infer_architecture(state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> Architecture:
    """The ResNet architecture a torchvision-layout state_dict was saved from.

    Read from the keys and shapes: the stem kernel (7x7: ImageNet, 3x3: CIFAR), blocks per
    stage, Bottleneck when `conv3` exists, stage widths, shortcut B when any `downsample` exists,
    classes from `fc.weight`.
    """
    try:
        stem_kernel = state_dict["conv1.weight"].shape[-1]
        num_classes = state_dict["fc.weight"].shape[0]
        layers, widths = [], []
        index = 1
        while f"layer{index}.0.conv1.weight" in state_dict:
            blocks = 0
            while f"layer{index}.{blocks}.conv1.weight" in state_dict:
                blocks += 1
            layers.append(blocks)
            widths.append(state_dict[f"layer{index}.0.conv1.weight"].shape[0])
            index += 1
    except (KeyError, AttributeError, IndexError):
        raise CheckpointError(f"{source} does not have the torchvision ResNet layout (conv1, layer1..., fc)") from None
    if not layers:
        raise CheckpointError(f"{source} has no residual stages (layer1.0.conv1.weight is missing)")
    block = "bottleneck" if "layer1.0.conv3.weight" in state_dict else "basic"
    shortcut = "B" if any(".downsample." in key for key in state_dict) else "A"
    stem = "imagenet" if stem_kernel == 7 else "cifar"
    return Architecture(block, tuple(layers), tuple(widths), stem, shortcut, int(num_classes))


def load_model(path: str | Path) -> ResNet:
    """A `ResNet` with the architecture and weights of a checkpoint file (see `infer_architecture`).

    The dataset (and so the input spec) is the one the checkpoint names (a "dataset" entry saved
    beside its state_dict, as tools/train_digits.py writes), else guessed from the stem and class
    count: ImageNet for a 7x7 stem, CIFAR-100 for a 3x3 stem with 100 classes, CIFAR-10 otherwise.
    """
    state_dict, metadata = read_checkpoint(path)
    architecture = infer_architecture(state_dict, source=f"checkpoint {path}")
    named = metadata.get("dataset")
    if named in DATASET_INPUTS and (named == "imagenet") == (architecture.stem == "imagenet"):
        dataset = named
    elif architecture.stem == "imagenet":
        dataset = "imagenet"
    else:
        dataset = "cifar100" if architecture.num_classes == 100 else "cifar10"
    model = ResNet.from_architecture(architecture, dataset=dataset)
    check_state_dict(model, state_dict, source=f"checkpoint {path}")
    model.load_state_dict(state_dict, strict=True)
    return model
