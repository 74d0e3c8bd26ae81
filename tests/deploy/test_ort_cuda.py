"""ONNX Runtime on CUDA with device buffers: real where onnxruntime-gpu can run CUDA and PyTorch
sees the GPU (the accelerator machine), skipped with the reason elsewhere."""

import numpy as np
import pytest
import torch

import resnet
from benchmark import open_target, run_benchmark
from benchmark.harness import LoopSettings
from deploy import OrtRuntime, Predictor
from deploy.runtimes import OrtCudaRuntime, RuntimeOptions, open_runtime, provider_problem
from export import export_onnx

CUDA_PROBLEM = "PyTorch sees no CUDA GPU" if not torch.cuda.is_available() else provider_problem("cuda")
needs_ort_cuda = pytest.mark.skipif(
    CUDA_PROBLEM is not None, reason=f"needs ONNX Runtime's CUDA provider and a CUDA GPU ({CUDA_PROBLEM})"
)


@pytest.fixture(scope="module")
def files(tmp_path_factory, bn_randomizer):
    folder = tmp_path_factory.mktemp("ortcuda")
    torch.manual_seed(0)
    model = bn_randomizer(resnet.create(20, "cifar10")).eval()
    paths = {"fp32": folder / "r20.onnx", "fp16": folder / "r20_fp16.onnx", "fixed": folder / "r20_b4.onnx"}
    export_onnx(model, paths["fp32"], validate=False)
    export_onnx(model, paths["fp16"], precision="fp16", validate=False)
    export_onnx(model, paths["fixed"], batch=4, dynamic_batch=False, validate=False)
    return paths


def cosine(a, b):
    return float(np.min((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))


def test_without_cuda_the_automatic_choice_is_the_cpu(files):
    if CUDA_PROBLEM is None:
        pytest.skip("ONNX Runtime can run CUDA here")
    with open_runtime(files["fp32"]) as runtime:
        assert isinstance(runtime, OrtRuntime) and runtime.provider == "cpu"


@needs_ort_cuda
@pytest.mark.parametrize("kind,min_cosine", [("fp32", 0.99999), ("fp16", 0.999), ("fixed", 0.99999)])
def test_device_buffers_give_the_cpus_logits(kind, min_cosine, files):
    with OrtCudaRuntime(files[kind], buffer_rows=16) as gpu, OrtRuntime(files["fp32"], provider="cpu") as cpu:
        assert gpu.device.startswith("cuda") and "CUDAExecutionProvider" in gpu.describe()
        n = 4 if kind == "fixed" else 7
        x = gpu.random_input(n, seed=3)
        out, ref = gpu.run(x), cpu.run(x.astype(np.float32))
    assert out.shape == (n, 10) and cosine(out, ref) >= min_cosine
    assert np.array_equal(out.argmax(1), ref.argmax(1))


@needs_ort_cuda
def test_the_three_steps_are_the_round_trip(files):
    with OrtCudaRuntime(files["fp16"], buffer_rows=8) as runtime:
        x = runtime.random_input(5)
        n = runtime.copy_in(x)
        runtime.execute(n)
        host = runtime.copy_out(n)
        runtime.synchronize()
        assert np.array_equal(host.numpy(), runtime.run(x))
        with pytest.raises(resnet.ToolkitError, match="batch 9 is outside"):
            runtime.copy_in(runtime.random_input(9))


@needs_ort_cuda
def test_cuda_graphs_give_the_same_logits(files):
    with (
        OrtCudaRuntime(files["fp16"], buffer_rows=8) as plain,
        OrtCudaRuntime(files["fp16"], buffer_rows=8, cuda_graphs=True) as graphed,
    ):
        assert graphed.settings()["cuda_graphs"] and "CUDA graphs" in graphed.describe()
        for n in (1, 4, 8, 4, 1):
            x = plain.random_input(n, seed=n)
            a, b = plain.run(x), graphed.run(x)
            assert cosine(a, b) >= 0.9999 and np.array_equal(a.argmax(1), b.argmax(1))


@needs_ort_cuda
def test_fp16_export_is_validated_in_fp16_arithmetic(tmp_path):
    report = export_onnx(resnet.create(20, "cifar10"), tmp_path / "m.onnx", precision="fp16")
    assert report.validation.device.startswith("cuda") and report.validation.notes == []
    assert report.validation.passed and report.validation.scaled_error > 0


@needs_ort_cuda
def test_the_predictor_and_the_benchmark_use_device_buffers(files, tmp_path):
    with Predictor(files["fp32"]) as predictor:
        assert isinstance(predictor.runtime, OrtCudaRuntime)
        assert len(predictor.predict_arrays(predictor.runtime.random_input(3))) == 3
    target = open_target(str(files["fp16"]), RuntimeOptions(provider="cuda", cuda_graphs=True))
    run = run_benchmark(
        [target], [8], LoopSettings(warmup_iterations=2, warmup_seconds=None, iterations=5), measure_peak=False
    )
    m = run.measurements[0]
    assert m.h2d.median > 0 and m.compute.median > 0 and m.d2h.median > 0
    assert m.extra["settings"]["cuda_graphs"] and m.extra["settings"]["cudnn_conv_algo_search"] == "exhaustive"
    assert target.label == "r20_fp16.onnx (onnxruntime cuda cuda-graphs)"


@needs_ort_cuda
def test_the_gpu_index_of_the_device_is_honoured_not_dropped(files):
    """Issue 35, item 4: `RuntimeOptions(device="cuda:1")` ran on GPU 0 (the index was dropped). The
    index now reaches the runtime: one past the last GPU is refused, the last one runs. Named outputs
    (host arrays) run on the first GPU only, and another index is refused in one sentence."""
    from toolkit.errors import ToolkitError

    count = torch.cuda.device_count()
    with open_runtime(files["fp32"], RuntimeOptions(device=f"cuda:{count - 1}")) as runtime:
        assert runtime.device == f"cuda:{count - 1}" and runtime.run(runtime.random_input(2)).shape == (2, 10)
    with pytest.raises(Exception):  # noqa: B017 - CUDA's own words for an ordinal past the last GPU
        open_runtime(files["fp32"], RuntimeOptions(device=f"cuda:{count}")).run(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(ToolkitError, match="runs on the first GPU only"):
        open_runtime(files["fp32"], RuntimeOptions(device="cuda:1", outputs=("layer1",)))
