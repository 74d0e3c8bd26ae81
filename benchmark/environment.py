"""The machine a benchmark ran on, and its peak arithmetic rate."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass, field

from deploy.runtimes.cpu import CpuFeatures
from deploy.runtimes.gpu import cuda_available, describe_gpu, torch_installed
from toolkit.provenance import versions


@dataclass
class MachineInfo:
    cpu: str
    logical_cpus: int
    threads: int | None  # threads the CPU backends were given (None: their defaults)
    gpu: str | None
    compute_capability: str | None
    driver: str | None
    versions: dict[str, str] = field(default_factory=dict)
    cpu_flags: list[str] = field(default_factory=list)  # the relevant ones (deploy.runtimes.cpu): VNNI, BF16, AMX
    peak_tflops: float | None = None
    peak_source: str = ""  # "--peak-tflops", "matmul fp32 4096x4096 on cpu, 2 threads", ...
    int8_path: str | None = None  # an INT8 file measured on the CPU: how the CPU sums (VNNI, AMX, int16 pairs)

    def to_dict(self) -> dict:
        return asdict(self)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str]:
    """The versions a measurement depends on (and the CUDA stack, where there is a GPU)."""
    found = versions("torch", "numpy", "onnxruntime", "openvino", "tensorrt", "onnx", python=True)
    if cuda_available():
        gpu = describe_gpu()
        found["cuda (torch)"], found["cudnn"] = gpu.cuda, gpu.cudnn
    return found


def describe_machine(threads: int | None, device: str) -> MachineInfo:
    gpu = None
    if device.startswith("cuda") and cuda_available():
        gpu = describe_gpu(device)
    return MachineInfo(
        cpu_model(),
        os.cpu_count() or 1,
        threads,
        gpu.name if gpu else None,
        gpu.compute_capability if gpu else None,
        (gpu.driver or None) if gpu else None,
        library_versions(),
        cpu_flags=list(CpuFeatures.probe().flags),
    )


def measure_matmul_tflops(
    device: str = "cpu", dtype: str = "fp32", size: int | None = None, repeats: int = 4, threads: int | None = None
) -> tuple[float, str]:
    """The best rate of repeated square matrix products (TFLOP/s), and a description of how.

    What the machine demonstrably reaches, not its theoretical peak (a runtime with better
    kernels may pass it): a 4096x4096 product on a CPU, 8192x8192 on a GPU, in PyTorch where it is
    installed, else (a board) NumPy's FP32 product on the CPU. `(0.0, reason)` where neither can
    compute that arithmetic there.
    """
    size = size or (4096 if device == "cpu" else 8192)
    if torch_installed():
        return _torch_matmul(device, dtype, size, repeats, threads)
    if device != "cpu" or dtype != "fp32":
        return 0.0, f"no {dtype} matrix product on {device} without PyTorch"
    import numpy as np

    a, b = (np.random.default_rng(seed).standard_normal((size, size), dtype=np.float32) for seed in (0, 1))
    best = min(_timed(lambda: a @ b) for _ in range(repeats + 1))
    return 2 * size**3 / best / 1e12, f"matmul {dtype} {size}x{size} on cpu (NumPy)"


def _timed(product) -> float:
    start = time.perf_counter()
    product()
    return time.perf_counter() - start


def _torch_matmul(device: str, dtype: str, size: int, repeats: int, threads: int | None) -> tuple[float, str]:
    import torch

    dtypes = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    previous = torch.get_num_threads()
    previous_tf32 = torch.backends.cuda.matmul.allow_tf32
    if threads is not None and device == "cpu":
        torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
    try:
        a = torch.randn(size, size, device=device).to(dtypes[dtype])
        b = torch.randn(size, size, device=device).to(dtypes[dtype])
        best = float("inf")
        for _ in range(repeats + 1):  # the first product warms up
            if device != "cpu":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            torch.matmul(a, b)
            if device != "cpu":
                torch.cuda.synchronize(device)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
        torch.backends.cuda.matmul.allow_tf32 = previous_tf32
    where = (
        f"{device}, {torch.get_num_threads() if threads is None else threads} threads" if device == "cpu" else device
    )
    return 2 * size**3 / best / 1e12, f"matmul {dtype} {size}x{size} on {where}"
