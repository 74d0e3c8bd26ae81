"""This machine's GPU, through the CUDA driver (or PyTorch, where it is already imported) and
nvidia-smi: one description for every stage, with or without PyTorch installed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import asdict, dataclass

from toolkit.errors import MissingDependencyError


def cuda_available() -> bool:
    """Whether a CUDA GPU is visible here: the one answer to "is there a GPU for this?" that every
    default (ONNX Runtime's provider, PyTorch's device, the INT8 target) follows. PyTorch is asked
    where it is already imported; otherwise the CUDA driver itself (`cuda.device_count`), so that
    asking imports no PyTorch (a board runs without it)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.cuda.is_available()
    from .cuda import device_count

    return device_count() > 0


def torch_installed() -> bool:
    """Whether PyTorch can be imported here (a board may not have it)."""
    if "torch" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a finder that refuses it, or a half-removed module
        return False


def require_cuda(what: str = "TensorRT engines"):
    """torch, after checking that a CUDA GPU is visible: for the device runtimes whose buffers and
    CUDA events are PyTorch's (`open_runtime` takes them only where PyTorch is installed)."""
    if not torch_installed():
        raise MissingDependencyError(f"{what} keep their device buffers in PyTorch, which is not installed here")
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
    """The GPU `device` (an index or "cuda:i"); needs a CUDA GPU. From PyTorch where it is imported
    (its CUDA and cuDNN), else from the CUDA driver and runtime libraries (cuDNN then unknown: "")."""
    index = int(str(device).split(":")[-1]) if str(device) not in ("cuda", "") else 0
    torch = sys.modules.get("torch")
    if torch is not None:
        torch = require_cuda("describing the GPU")
        major, minor = torch.cuda.get_device_capability(device)
        return GpuInfo(
            name=torch.cuda.get_device_name(device),
            compute_capability=f"{major}.{minor}",
            driver=driver_version(),
            cuda=torch.version.cuda or "",
            cudnn=str(torch.backends.cudnn.version() or ""),
        )
    from .cuda import describe_device, runtime_version

    name, capability, _ = describe_device(index)
    return GpuInfo(name, capability, driver_version(), runtime_version(), "")
