"""The machine a benchmark ran on, and its peak arithmetic rate."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

from deploy.runtimes.cpu import CpuFeatures, cpu_model
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
    kernels may pass it): a 4096x4096 product on a CPU, 8192x8192 on a GPU. On a CPU in FP32, the
    best of PyTorch's and ONNX Runtime's (MLAS) products, where each is installed, else NumPy's
    (measured: ONNX Runtime's 0.43 against PyTorch's 0.22 TFLOP/s on the 2-core AVX-512 EPYC,
    whose PyTorch product takes a slower path); other precisions and GPUs in PyTorch. `(0.0,
    reason)` where nothing here computes that arithmetic there.
    """
    size = size or (4096 if device == "cpu" else 8192)
    found = [_torch_matmul(device, dtype, size, repeats, threads)] if torch_installed() else []
    if device == "cpu" and dtype == "fp32":
        found += _ort_matmul(size, repeats, threads)
        if not found:
            found.append(_numpy_matmul(size, repeats))
    if not found:
        return 0.0, f"no {dtype} matrix product on {device} without PyTorch"
    best = max(found)
    others = "".join(f"; {how.rsplit(', ', 1)[-1]}: {rate:.3g} TFLOP/s" for rate, how in found if (rate, how) != best)
    return best[0], best[1] + others


def _numpy_matmul(size: int, repeats: int) -> tuple[float, str]:
    import numpy as np

    return _cpu_rate(size, repeats, np.matmul), f"matmul fp32 {size}x{size} on cpu, NumPy"


def _cpu_rate(size: int, repeats: int, product) -> float:
    """TFLOP/s of the best of `repeats` + 1 runs of `product(a, b)` on two FP32 squares (the first
    run warms up)."""
    import numpy as np

    a, b = (np.random.default_rng(seed).standard_normal((size, size), dtype=np.float32) for seed in (0, 1))
    best = min(_timed(lambda: product(a, b)) for _ in range(repeats + 1))
    return 2 * size**3 / best / 1e12


def _ort_matmul(size: int, repeats: int, threads: int | None) -> list[tuple[float, str]]:
    """ONNX Runtime's FP32 product on the CPU (a one-node graph), or nothing without ONNX Runtime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    from onnx import TensorProto, helper

    square = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [size, size]) for name in "abc"]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul", square[:2], square[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or 0
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rate = _cpu_rate(size, repeats, lambda a, b: session.run(None, {"a": a, "b": b}))
    where = f"{threads} threads" if threads else "default threads"
    return [(rate, f"matmul fp32 {size}x{size} on cpu, {where}, ONNX Runtime")]


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
    return 2 * size**3 / best / 1e12, f"matmul {dtype} {size}x{size} on {where}, PyTorch"
