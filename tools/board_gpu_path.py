"""The board's GPU path, for `tools/gpu-check`: what a board runs with no PyTorch installed, run in a
process where PyTorch can't be imported (a `sitecustomize` that refuses it, as a board's missing
package would), so that the day a GPU machine is lent the torch-free path is proven with the rest.

In that process: the GPU found by the CUDA driver itself (`deploy.runtimes.cuda`, ctypes), device
memory and a stream of the CUDA runtime (a round trip of an array, compared), the ONNX file run by
ONNX Runtime's CUDA provider on host arrays (the board's ONNX path) against ONNX Runtime on the CPU,
and, where TensorRT is importable, an engine run by `TensorRTHostRuntime` (the board's engine
path) against the same. Whatever can't run there says why. Where there is no GPU (`--smoke` on a
CPU), the same process runs the CPU half, which still shows that nothing on the path imports torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A board without PyTorch: importing it fails as a missing package does (find_spec included).
SITECUSTOMIZE = """
import importlib.abc, sys

class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (this process stands for a board)", name=name)
        return None

sys.meta_path.insert(0, _NoTorch())
"""

PROBE = r"""
import json, sys
import numpy as np
from deploy.runtimes.gpu import cuda_available
from deploy.runtimes import RuntimeOptions, open_runtime

onnx_path, engine_path = sys.argv[1], sys.argv[2] or None
found = {"cuda_available": cuda_available()}
with open_runtime(onnx_path, RuntimeOptions(provider="cpu")) as cpu:
    batch = cpu.random_input(4, seed=7)
    expected = cpu.run(batch).astype(np.float64)
scale = float(np.abs(expected).max())

def error(logits):
    return float(np.abs(logits.astype(np.float64) - expected).max() / scale)

if found["cuda_available"]:
    from deploy.runtimes import cuda
    found["gpu"] = list(cuda.describe_device(0))
    stream, array = cuda.Stream(), cuda.DeviceArray(batch.shape, batch.dtype)
    back = np.empty_like(batch)
    array.copy_from(batch, stream)
    array.copy_to(back, stream)
    stream.synchronize()
    found["device_array_round_trip"] = bool(np.array_equal(back, batch))
    array.close()
    stream.close()
    with open_runtime(onnx_path, RuntimeOptions(provider="cuda")) as gpu:
        found["onnxruntime_cuda"] = {"describe": gpu.describe(), "error_of_scale": error(gpu.run(batch))}
    if engine_path:
        with open_runtime(engine_path) as engine:
            found["tensorrt_host"] = {"class": type(engine).__name__, "error_of_scale": error(engine.run(batch))}
    else:
        found["tensorrt_host"] = "not run: no TensorRT here to build an engine"
else:
    found["onnxruntime_cpu"] = {"error_of_scale": 0.0}
found["torch_imported"] = "torch" in sys.modules
print(json.dumps(found))
"""


def check_board_gpu_path(onnx_path: Path, engine_path: Path | None = None) -> dict:
    """The probe's findings (see the module docstring), with how it ended."""
    with tempfile.TemporaryDirectory(prefix="board-") as folder:
        (Path(folder) / "sitecustomize.py").write_text(SITECUSTOMIZE)
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join([folder, str(ROOT)]))
        done = subprocess.run(
            [sys.executable, "-c", PROBE, str(onnx_path), str(engine_path or "")],
            capture_output=True, text=True, env=environment, timeout=600,
        )  # fmt: skip
    if done.returncode != 0:
        return {"failed": (done.stderr.strip().splitlines() or ["it said nothing"])[-1][:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def engine_for(onnx_path: Path, folder: Path) -> tuple[Path | None, str | None]:
    """An engine of the FP16 file, built here where TensorRT is (with PyTorch: the workshop), or why not."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return None, "no TensorRT here"
    from export import build_engine

    engine = folder / f"{onnx_path.stem}.plan"
    build_engine(onnx_path, engine, validate=False)
    return engine, None


def run_board_path(paths: dict[str, Path], on_gpu: bool) -> dict:
    """The board's GPU path (`board_gpu_path`): the FP16 file (FP32 without a GPU), its engine where
    TensorRT is here."""
    onnx = paths["fp16"] if on_gpu else paths["fp32"]
    engine, why = engine_for(onnx, onnx.parent) if on_gpu else (None, "no GPU")
    found = check_board_gpu_path(onnx, engine)
    print(f"   {json.dumps(found)}", flush=True)
    return found | ({"engine": why} if why else {})


def board_targets(board: dict, on_gpu: bool) -> list[dict]:
    """The board's path ran without PyTorch and, on a GPU, its CUDA answers are the CPU's (FP16
    arithmetic: within 5e-3 of the logit scale)."""
    found = [{"what": "board path: PyTorch never imported", "value": float(board.get("torch_imported", True)),
              "limit": "== 0", "met": board.get("torch_imported") is False}]  # fmt: skip
    if on_gpu:
        for key in ("onnxruntime_cuda", "tensorrt_host"):
            if isinstance(board.get(key), dict):
                value = board[key]["error_of_scale"]
                found.append({"what": f"board path: {key} against the CPU, error / logit scale", "value": value,
                              "limit": "<= 0.005", "met": value <= 5e-3})  # fmt: skip
    return found
