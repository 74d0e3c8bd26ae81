"""The engine manifest and the decisions made from it (plain code: no TensorRT needed)."""

import json

import pytest

from deploy import ArtifactError
from deploy.artifacts.manifest import (
    BatchRange,
    EngineEnvironment,
    check_compatible,
    manifest_path,
    read_manifest,
    write_manifest,
)

H100 = EngineEnvironment("11.4.0.106", "NVIDIA H100 80GB HBM3", "9.0", "13.0", "580.65")


@pytest.fixture
def manifest(engine_manifest):
    return engine_manifest


def test_manifest_round_trips_through_json(tmp_path, manifest):
    original = manifest()
    path = write_manifest(original, tmp_path / "m.plan")
    assert path == tmp_path / "m.plan.json" == manifest_path(tmp_path / "m.plan")
    assert read_manifest(tmp_path / "m.plan") == original
    data = json.loads(path.read_text())
    assert data["format"] == "resnet-engine-manifest/1"
    assert data["model"]["input_spec"]["mean"] == [0.4914, 0.4822, 0.4465]
    assert data["environment"]["compute_capability"] == "9.0"


def test_missing_and_broken_manifests(tmp_path):
    assert read_manifest(tmp_path / "trtexec.plan") is None
    (tmp_path / "m.plan.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not readable"):
        read_manifest(tmp_path / "m.plan")
    (tmp_path / "m.plan.json").write_text(json.dumps({"format": "something-else/9"}))
    with pytest.raises(ArtifactError, match="format 'something-else/9'"):
        read_manifest(tmp_path / "m.plan")


def test_same_machine_is_compatible(manifest):
    assert check_compatible(manifest(), H100, "m.plan") == []


def test_another_tensorrt_release_is_refused_with_the_rebuild_command(manifest):
    here = EngineEnvironment("10.13.0.35", H100.gpu_name, "9.0")
    with pytest.raises(ArtifactError) as caught:
        check_compatible(manifest(), here, "m.plan")
    message = str(caught.value)
    assert "built for TensorRT 11.4.0.106, this machine has 10.13.0.35" in message
    assert message.endswith("rebuild it on this machine: resnet-build resnet20_cifar10_fp16.onnx")


def test_another_architecture_is_refused(manifest):
    orin = EngineEnvironment("11.4.0.106", "Orin", "8.7")
    with pytest.raises(
        ArtifactError, match=r"compute capability 9.0 \(NVIDIA H100 80GB HBM3\), this GPU is 8.7 \(Orin\)"
    ):
        check_compatible(manifest(), orin, "m.plan")


def test_another_gpu_of_the_same_architecture_is_a_warning(manifest):
    h100_pcie = EngineEnvironment("11.4.0.106", "NVIDIA H100 PCIe", "9.0")
    (warning,) = check_compatible(manifest(), h100_pcie, "m.plan")
    assert "built on NVIDIA H100 80GB HBM3 and runs on NVIDIA H100 PCIe" in warning


def test_a_version_compatible_engine_runs_on_later_releases_only(manifest):
    """`resnet-build --version-compatible`: TensorRT loads it on its own release and later ones
    (with a warning: such engines can be slower); an earlier release is still refused."""
    flags = {"flags": ["STRONGLY_TYPED", "VERSION_COMPATIBLE"]}
    compatible = manifest(build=flags)
    assert compatible.version_compatible and compatible.carries_lean_runtime
    later = EngineEnvironment("11.5.1.2", H100.gpu_name, "9.0")
    (warning,) = check_compatible(compatible, later, "m.plan")
    assert "built --version-compatible with TensorRT 11.4.0.106 and runs on 11.5.1.2" in warning
    earlier = EngineEnvironment("10.13.0.35", H100.gpu_name, "9.0")
    with pytest.raises(ArtifactError, match=r"version-compatible: it runs on that release and later ones"):
        check_compatible(compatible, earlier, "m.plan")
    orin = EngineEnvironment("11.5.1.2", "Orin", "8.7")
    with pytest.raises(ArtifactError, match="compute capability 9.0"):  # versions, not GPUs
        check_compatible(compatible, orin, "m.plan")
    lean = manifest(build={"flags": ["VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"]})
    assert lean.version_compatible and not lean.carries_lean_runtime
    assert not manifest().version_compatible and not manifest().carries_lean_runtime


@pytest.mark.parametrize("low,opt,high", [(0, 1, 1), (4, 2, 8), (1, 9, 8)])
def test_batch_range_order_is_checked(low, opt, high):
    with pytest.raises(ArtifactError, match="1 <= min <= opt <= max"):
        BatchRange(low, opt, high)


def test_a_manifest_of_the_previous_release_still_reads(engine_manifest):
    """Its batch range was stored as "profile" (the word now means per-layer times only)."""
    from deploy.artifacts import EngineManifest

    data = engine_manifest().to_dict()
    assert data["batches"] == {"min": 1, "opt": 32, "max": 64} and "profile" not in data
    data["profile"] = data.pop("batches")
    assert EngineManifest.from_dict(data).batches == BatchRange(1, 32, 64)
