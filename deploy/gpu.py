"""What this machine's GPU is, through PyTorch and nvidia-smi."""

from __future__ import annotations

import subprocess

from .errors import MissingDependencyError


def require_cuda(what: str = "TensorRT engines"):
    """torch, after checking that a CUDA GPU is visible."""
    import torch

    if not torch.cuda.is_available():
        raise MissingDependencyError(f"{what} need an NVIDIA GPU, and torch sees none on this machine")
    return torch


def driver_version() -> str:
    """The NVIDIA driver version from nvidia-smi, or "" when it can't be read."""
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else ""
