"""deploy's ONNX Runtime wrapper, metadata and files, on real exported models."""

import numpy as np
import onnx
import pytest

import resnet
from deploy import ArtifactError, ModelInfo, OrtRuntime, available_ort_providers, read_onnx_info
from export import export_onnx, resnet_to_onnx


@pytest.fixture(scope="module")
def cifar_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "resnet20.onnx"
    export_onnx(resnet.create(20, "cifar10"), path, validate=False)
    return path


def test_ort_runtime_describes_the_model(cifar_onnx):
    with OrtRuntime(cifar_onnx, threads=1) as runtime:
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
    assert "cpu" in available_ort_providers()
    with pytest.raises(resnet.ToolkitError, match="provider must be one of cpu, cuda, tensorrt"):
        OrtRuntime(cifar_onnx, provider="rocm")
    if "cuda" not in available_ort_providers():
        with pytest.raises(resnet.ToolkitError, match="'cuda' is not available here .* pip install '.\\[gpu\\]'"):
            OrtRuntime(cifar_onnx, provider="cuda")
    with pytest.raises(ArtifactError, match="does not exist"):
        OrtRuntime(cifar_onnx.parent / "missing.onnx")


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
