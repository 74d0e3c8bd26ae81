"""Shortcut (skip) connections of a residual block: steps 1, 2, 3 and 5 of
docs/cookbook.md.

A block adds its input `x` to its main path `F(x)`. When the main path keeps the size of `x`,
the shortcut is `nn.Identity()`. When the main path halves height and width (stride 2) or
changes the channel count, the shortcut must produce the same shape, in one of two ways:

- Option A (`ShortcutA`, He et al. 2015, used for CIFAR): sample every `stride`-th pixel and
  append zero channels. No parameters.
- Option B (`ShortcutB`, torchvision's choice for ImageNet): a 1x1 convolution with the
  block's stride, then BatchNorm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .architecture import SHORTCUT_KINDS
from .errors import ToolkitError


class ShortcutA(nn.Module):
    """Option A: `x[:, :, ::stride, ::stride]`, then `extra` zero channels after x's channels.

    Written as one strided slice and one constant `F.pad` on the channel axis, never as
    `torch.cat([x, torch.zeros(x.size(0), ...)])`: the pad amounts are Python integers fixed at
    construction, so an exported graph holds one Slice and one Pad with constant pads, and any
    batch size works (cookbook steps 1-2). The zeros get x's device and dtype automatically.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ToolkitError(
                f"ShortcutA can only add channels: in_channels={in_channels} > out_channels={out_channels}"
            )
        if stride < 1:
            raise ToolkitError(f"stride must be at least 1, got {stride}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    @property
    def extra_channels(self) -> int:
        return self.out_channels - self.in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]  # step 1: height and width only
        # step 2: F.pad lists pads from the last axis backwards: (W left, W right, H top,
        # H bottom, C front, C back). Zeros go after the existing channels.
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


class ShortcutB(nn.Sequential):
    """Option B: 1x1 convolution (stride of the block, no bias) followed by BatchNorm.

    A `Sequential` so that its parameters are named `0.weight` and `1.*`, exactly like
    torchvision's `downsample` and its checkpoints (cookbook step 3).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )


def make_shortcut(kind: str, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """The shortcut a block needs: `nn.Identity()` when shapes match, else Option A or B (step 5).

    `kind` is "A" or "B"; it matters only when `stride != 1` or the channel count changes.
    """
    if kind not in SHORTCUT_KINDS:
        raise ToolkitError(f"shortcut must be one of {', '.join(SHORTCUT_KINDS)}, got {kind!r}")
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    if kind == "A":
        return ShortcutA(in_channels, out_channels, stride)
    return ShortcutB(in_channels, out_channels, stride)
