"""This machine's GPU, through PyTorch and nvidia-smi: one description for every stage."""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass

from toolkit.errors import MissingDependencyError


def cuda_available() -> bool:
    """Whether a CUDA GPU is visible here, to PyTorch (whose CUDA tensors every GPU runtime of the
    toolkit uses for its buffers): the one answer to "is there a GPU for this?" that every default
    (ONNX Runtime's provider, PyTorch's device, the INT8 target) follows."""
    import torch

    return torch.cuda.is_available()


def require_cuda(what: str = "TensorRT engines"):
    """torch, after checking that a CUDA GPU is visible."""
    import torch

    if not cuda_available():
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


@dataclass(frozen=True)
class GpuInfo:
    """A CUDA GPU and the CUDA stack PyTorch uses on it."""

    name: str
    compute_capability: str  # "9.0"
    driver: str  # "" when nvidia-smi can't be asked
    cuda: str  # the CUDA runtime torch was built with
    cudnn: str

    def to_dict(self) -> dict:
        return asdict(self)


def describe_gpu(device: int | str = 0) -> GpuInfo:
    """The GPU `device` (an index or "cuda:i"); needs a CUDA GPU."""
    torch = require_cuda("describing the GPU")
    major, minor = torch.cuda.get_device_capability(device)
    return GpuInfo(
        name=torch.cuda.get_device_name(device),
        compute_capability=f"{major}.{minor}",
        driver=driver_version(),
        cuda=torch.version.cuda or "",
        cudnn=str(torch.backends.cudnn.version() or ""),
    )
