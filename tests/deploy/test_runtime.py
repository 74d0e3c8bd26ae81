"""deploy's ONNX Runtime wrapper, metadata and files, on real exported models."""

import numpy as np
import onnx
import pytest

import resnet
from deploy import ArtifactError, MissingDependencyError, ModelInfo, OrtRuntime, available_ort_providers, read_onnx_info
from deploy.runtimes import default_provider, provider_problem, usable_ort_providers
from export import export_onnx, resnet_to_onnx


@pytest.fixture(scope="module")
def cifar_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "resnet20.onnx"
    export_onnx(resnet.create(20, "cifar10"), path, validate=False)
    return path


def test_ort_runtime_describes_the_model(cifar_onnx):
    with OrtRuntime(cifar_onnx, provider="cpu", threads=1) as runtime:
        assert (runtime.input_name, runtime.output_name) == ("input", "logits")
        assert runtime.input_shape == (None, 3, 32, 32) and runtime.input_dtype == np.float32
        assert runtime.batch_range == (1, None) and runtime.device == "cpu"
        assert runtime.info.name == "resnet20_cifar10" and runtime.info.num_classes == 10
        out = runtime.run(runtime.random_input(3))
        assert out.shape == (3, 10) and out.dtype == np.float32
        # float64 input is converted, not refused.
        assert np.allclose(
            runtime.run(runtime.random_input(2).astype(np.float64)), runtime.run(runtime.random_input(2))
        )
        assert "onnxruntime on cpu, input input [N, 3, 32, 32] float32 (CPUExecutionProvider)" == runtime.describe()


def test_random_input_is_reproducible_and_not_zeros(cifar_onnx):
    with OrtRuntime(cifar_onnx) as runtime:
        a, b, c = runtime.random_input(2, seed=1), runtime.random_input(2, seed=1), runtime.random_input(2, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c) and np.count_nonzero(a) == a.size


def test_providers_and_bad_arguments(cifar_onnx):
    assert "cpu" in usable_ort_providers() and set(usable_ort_providers()) <= set(available_ort_providers())
    with pytest.raises(resnet.ToolkitError, match="provider must be one of cpu, cuda, tensorrt"):
        OrtRuntime(cifar_onnx, provider="rocm")
    for provider in ("cuda", "tensorrt"):
        problem = provider_problem(provider)
        if problem is not None:  # a forced provider that can't run is one sentence, not a fallback
            with pytest.raises(MissingDependencyError, match=f"^ONNX Runtime's {provider} provider can't run here: "):
                OrtRuntime(cifar_onnx, provider=provider)
    with pytest.raises(ArtifactError, match="does not exist"):
        OrtRuntime(cifar_onnx.parent / "missing.onnx")


def test_the_automatic_provider_is_what_the_session_runs_on(cifar_onnx, capfd):
    with OrtRuntime(cifar_onnx) as runtime:
        running = runtime.session.get_providers()[0]
        assert runtime.provider == {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "cuda"}[running]
        assert runtime.provider == default_provider() and running in runtime.describe()
        assert runtime.run(runtime.random_input(2)).shape == (2, 10)
    captured = capfd.readouterr()
    assert "EP Error" not in captured.out + captured.err and "Failed to load library" not in captured.out + captured.err


@pytest.mark.skipif(
    "TensorrtExecutionProvider" not in __import__("onnxruntime").get_available_providers()
    or provider_problem("tensorrt") is None,
    reason="checks onnxruntime-gpu on a machine where its TensorRT provider can't load (onnxruntime-gpu, no TensorRT)",
)
def test_onnxruntime_gpu_without_its_libraries_is_honest(cifar_onnx, capfd):
    # onnxruntime-gpu lists the TensorRT provider although TensorRT's libraries are missing.
    with pytest.raises(
        MissingDependencyError, match=r"tensorrt provider can't run here: lib\S+\.so[.\d]* can't be loaded"
    ):
        OrtRuntime(cifar_onnx, provider="tensorrt")
    with OrtRuntime(cifar_onnx) as runtime:
        assert runtime.provider == default_provider() != "tensorrt"
    captured = capfd.readouterr()
    assert "EP Error" not in captured.out + captured.err and "Failed to load library" not in captured.out + captured.err


def test_corrupt_file_is_an_artifact_error(tmp_path, cifar_onnx):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(cifar_onnx.read_bytes()[:5000])
    with pytest.raises(ArtifactError, match="ONNX Runtime cannot load"):
        OrtRuntime(broken)
    with pytest.raises(ArtifactError, match="not a readable ONNX file"):
        read_onnx_info(broken)


def test_foreign_onnx_has_no_info(tmp_path):
    proto = resnet_to_onnx(resnet.create(20, "cifar10"))
    del proto.metadata_props[:]
    path = tmp_path / "foreign.onnx"
    onnx.save(proto, str(path))
    assert read_onnx_info(path) is None
    with OrtRuntime(path) as runtime:
        assert runtime.info is None


def test_model_info_round_trips(cifar_onnx):
    info = read_onnx_info(cifar_onnx)
    assert ModelInfo.from_metadata(info.to_metadata()) == info
    assert ModelInfo.from_dict(info.to_dict()) == info
    with pytest.raises(ArtifactError, match="missing depth"):
        ModelInfo.from_metadata({k: v for k, v in info.to_metadata().items() if k != "depth"})
    with pytest.raises(ArtifactError, match="malformed"):
        ModelInfo.from_metadata({**info.to_metadata(), "depth": "twenty"})
