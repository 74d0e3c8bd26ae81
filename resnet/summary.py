"""Size and cost of a model: parameters, multiply-accumulates, output shape."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelSummary:
    name: str
    depth: int
    dataset: str
    shortcut: str
    parameters: int
    macs: int  # multiply-accumulates of one image at the model's input size
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]


def count_parameters(model: nn.Module) -> int:
    """Number of learnable parameters (buffers such as BN running statistics not included)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """Multiply-accumulates of Conv2d and Linear layers for one forward pass, and the output shape.

    Counted the way torchvision's weight tables count "GFLOPS": convolutions and the classifier
    only (BatchNorm, ReLU, pooling and additions are ignored). Runs one real forward pass on
    zeros, in eval mode, and leaves the model's mode as it was.
    """
    total = 0

    def conv_hook(module: nn.Conv2d, inputs, output) -> None:
        nonlocal total
        kernel = module.weight.shape[1] * module.weight.shape[2] * module.weight.shape[3]
        total += output.numel() * kernel

    def linear_hook(module: nn.Linear, inputs, output) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            output = model.eval()(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total, tuple(output.shape)


def summarize(model: nn.Module) -> ModelSummary:
    """Parameters, MACs per image and output shape of a `ResNet` at its input size."""
    spec = model.input_spec
    input_shape = (1, spec.channels, spec.height, spec.width)
    macs, output_shape = count_macs(model, input_shape)
    return ModelSummary(
        name=model.name,
        depth=model.depth,
        dataset=model.dataset,
        shortcut=model.architecture.shortcut,
        parameters=count_parameters(model),
        macs=macs,
        input_shape=input_shape,
        output_shape=output_shape,
    )


def largest_activation(architecture, height: int, width: int) -> int:
    """`Architecture.largest_activation` (kept here, where the tests check it against a forward pass)."""
    return architecture.largest_activation(height, width)


def estimated_memory(model: nn.Module, batch: int) -> int:
    """A rough upper estimate of the bytes one forward pass of `batch` images needs at the
    model's input size: the input and a few of the largest activations alive at once (FP32),
    plus the weights."""
    spec = model.input_spec
    per_image = spec.channels * spec.height * spec.width + 4 * largest_activation(
        model.architecture, spec.height, spec.width
    )
    return 4 * (batch * per_image + count_parameters(model))
