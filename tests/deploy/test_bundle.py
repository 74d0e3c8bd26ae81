"""Bundles: round trip, checksums, tampering, atomic replacement."""

import json

import numpy as np
import pytest

from deploy import ArtifactError
from deploy.artifacts.manifest import write_manifest
from deploy.bundle import Bundle, write_bundle
from deploy.predictor import Predictor
from resnet import ToolkitError
from toolkit.files import sha256_file

LABELS = [f"class-{i}" for i in range(10)]


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def bundle(models, tmp_path):
    return write_bundle(models["files"]["cifar_fp16"], tmp_path / "bundle", labels=LABELS)


def test_round_trip(bundle, models, images):
    folder = bundle.folder
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "labels.txt", "manifest.json", "model.onnx"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == "resnet-bundle/1" and manifest["precision"] == "fp16"
    assert manifest["model"]["input_spec"]["height"] == 32 and manifest["model"]["name"] == "resnet20_cifar10"
    assert manifest["io"] == {
        "input": {"name": "input", "dtype": "float32", "shape": [-1, 3, 32, 32]},
        "output": {"name": "logits", "dtype": "float32", "shape": [-1, 10]},
    }
    assert set(manifest["files"]) == {"README.md", "labels.txt", "model.onnx"}
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_file(folder / name) and entry["bytes"] == (folder / name).stat().st_size
    assert (folder / "model.onnx").read_bytes() == models["files"]["cifar_fp16"].read_bytes()
    readme = (folder / "README.md").read_text()
    assert (
        "resnet-build model.onnx" in readme and "on the Jetson itself" in readme and "resnet-deploy predict" in readme
    )
    reopened = Bundle.open(folder)
    assert reopened.labels == LABELS and reopened.engine is None and reopened.info.precision == "fp16"
    with Predictor(folder) as predictor:
        (p,) = predictor.predict([images["red"]], top_k=3)
    assert p.labels == [LABELS[i] for i in p.indices]


@pytest.mark.parametrize(
    "kind,io",
    [
        (
            "cifar_b4",
            {
                "input": {"name": "input", "dtype": "float32", "shape": [4, 3, 32, 32]},
                "output": {"name": "logits", "dtype": "float32", "shape": [4, 10]},
            },
        ),
        (
            "cifar_fp16_io",
            {
                "input": {"name": "input", "dtype": "float16", "shape": [-1, 3, 32, 32]},
                "output": {"name": "logits", "dtype": "float16", "shape": [-1, 10]},
            },
        ),
    ],
)
def test_manifest_describes_the_file_it_holds(kind, io, models, tmp_path):
    written = write_bundle(models["files"][kind], tmp_path / "b")
    assert written.manifest["io"] == io


@pytest.mark.parametrize("name", ["model.onnx", "labels.txt", "README.md"])
def test_an_altered_file_is_refused_by_name(bundle, name):
    path = bundle.folder / name
    flip_a_byte(path)
    with pytest.raises(ArtifactError, match=f"bundle file .*{name} does not match its checksum"):
        Bundle.open(bundle.folder)


def test_truncated_and_missing_files(bundle):
    model = bundle.folder / "model.onnx"
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(ArtifactError, match="model.onnx has 1000 bytes, the manifest says .*truncated or replaced"):
        Bundle.open(bundle.folder)
    model.unlink()
    with pytest.raises(ArtifactError, match="model.onnx is missing"):
        Predictor(bundle.folder)


def test_not_a_bundle(tmp_path):
    with pytest.raises(ArtifactError, match="is not a bundle"):
        Bundle.open(tmp_path)


def test_existing_folder_is_kept_unless_forced(bundle, models):
    with pytest.raises(ToolkitError, match="already exists; choose another folder or pass --force"):
        write_bundle(models["files"]["cifar"], bundle.folder)
    assert Bundle.open(bundle.folder).info.precision == "fp16"
    replaced = write_bundle(models["files"]["cifar"], bundle.folder, force=True)
    assert replaced.info.precision == "fp32" and not (bundle.folder / "labels.txt").exists()
    assert sorted(p.name for p in bundle.folder.parent.iterdir()) == ["bundle"]  # no staging left behind


def test_bad_sources(models, tmp_path, engine_manifest):
    with pytest.raises(ArtifactError, match="3 labels for a model with 10 classes"):
        write_bundle(models["files"]["cifar"], tmp_path / "b", labels=["a", "b", "c"])
    engine = tmp_path / "m.plan"
    engine.write_bytes(b"engine bytes")
    with pytest.raises(ToolkitError, match="m.plan is an engine; a bundle is made from the ONNX file"):
        write_bundle(engine, tmp_path / "b")
    with pytest.raises(ArtifactError, match="has no manifest"):
        write_bundle(models["files"]["cifar"], tmp_path / "b", engine=engine)
    write_manifest(engine_manifest(), engine)  # built from "another" ONNX (its sha256 is not this file's)
    with pytest.raises(ArtifactError, match="was built from another ONNX file than r20.onnx"):
        write_bundle(models["files"]["cifar"], tmp_path / "b", engine=engine)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.plan", "m.plan.json"]


def test_engine_goes_in_with_its_manifest(models, tmp_path, engine_manifest):
    import hashlib

    engine = tmp_path / "m.plan"
    engine.write_bytes(b"engine bytes")
    write_manifest(
        engine_manifest(
            engine_sha256=hashlib.sha256(b"engine bytes").hexdigest(),
            source_onnx={"file": "r20_fp16.onnx", "sha256": sha256_file(models["files"]["cifar_fp16"])},
        ),
        engine,
    )
    written = write_bundle(models["files"]["cifar_fp16"], tmp_path / "b", engine=engine)
    assert written.engine == tmp_path / "b" / "model.plan"
    assert json.loads((tmp_path / "b" / "model.plan.json").read_text())["engine_file"] == "model.plan"
    assert "NVIDIA H100 80GB HBM3" in (tmp_path / "b" / "README.md").read_text()
    assert set(written.manifest["files"]) == {"README.md", "model.onnx", "model.plan", "model.plan.json"}


def test_a_bundle_engine_that_cannot_run_here_falls_back_to_onnx_runtime(models, tmp_path, engine_manifest, images):
    import hashlib
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("checks the fallback on a machine without TensorRT")
    from deploy import MissingDependencyError

    engine = tmp_path / "m.plan"
    engine.write_bytes(b"engine bytes")
    write_manifest(
        engine_manifest(
            engine_sha256=hashlib.sha256(b"engine bytes").hexdigest(),
            source_onnx={"file": "r20.onnx", "sha256": sha256_file(models["files"]["cifar"])},
        ),
        engine,
    )
    folder = write_bundle(models["files"]["cifar"], tmp_path / "b", engine=engine).folder
    with Predictor(folder) as predictor:  # automatic: the engine can't run here, ONNX Runtime can
        assert predictor.runtime.backend == "onnxruntime"
        assert len(predictor.predict([images["red"]])) == 1
    with pytest.raises(MissingDependencyError, match="tensorrt"):
        Predictor(folder, backend="tensorrt")  # forced: an error, not a fallback


@pytest.fixture
def cpu_bundle(models, tmp_path):
    """A CPU board's bundle (an FP32 graph): it carries model.ort, written for this machine."""
    return write_bundle(models["files"]["cifar"], tmp_path / "cpu-bundle")


def test_a_cpu_bundle_runs_its_ort_format_file_with_the_onnx_files_answers(cpu_bundle, images):
    from deploy.runtimes.cpu import CpuFeatures, architecture
    from deploy.runtimes.onnxruntime import OrtRuntime

    record = cpu_bundle.manifest["ort_format"]
    assert "model.ort" in cpu_bundle.manifest["files"] and record["platform"] == architecture()
    if record["platform"] == "x86_64":  # the NCHWc layout of this CPU
        assert record["target"] == "amd64"
        assert record["nchwc_flags"] == [f for f in ("avx2", "avx512f") if f in CpuFeatures.probe().flags]
    with Predictor(cpu_bundle.folder) as predictor:
        assert predictor.runtime.path.name == "model.ort" and "model.ort" in predictor.backend
        batch = np.stack([predictor.preprocess(image) for image in images.values() if image.suffix == ".png"])
        from_ort = predictor.runtime.run(batch)
    from_onnx = OrtRuntime(cpu_bundle.folder / "model.onnx", provider="cpu").run(batch)
    assert np.array_equal(from_ort, from_onnx)  # the same optimized graph: bit for bit
    readme = (cpu_bundle.folder / "README.md").read_text()
    assert "model.ort" in readme and "TensorRT" not in readme and "resnet-build" not in readme


def test_an_ort_format_file_runs_only_where_it_was_written_for(cpu_bundle):
    from deploy.runtimes.cpu import CpuFeatures
    from deploy.runtimes.ort_format import ort_format_problem

    record = dict(cpu_bundle.manifest["ort_format"], platform="x86_64", nchwc_flags=["avx2"])
    assert ort_format_problem(record, CpuFeatures(("avx2",), "x86_64")) is None
    other = ort_format_problem(record, CpuFeatures(("avx2", "avx512f"), "x86_64"))
    assert "NCHWc layout is for a CPU with avx2" in other and "avx2, avx512f" in other
    assert "written for x86_64, this machine is aarch64" in ort_format_problem(
        record, CpuFeatures(("asimd",), "aarch64")
    )
    older = ort_format_problem(dict(record, onnxruntime="1.0.0"), CpuFeatures(("avx2",), "x86_64"))
    assert "written by ONNX Runtime 1.0.0" in older
    arm = dict(record, platform="aarch64", target="arm", nchwc_flags=None)
    assert ort_format_problem(arm, CpuFeatures(("asimd", "asimddp"), "aarch64")) is None
    manifest = json.loads((cpu_bundle.folder / "manifest.json").read_text())
    manifest["ort_format"]["platform"] = "aarch64"  # a Pi's bundle, opened here: its ONNX file runs
    (cpu_bundle.folder / "manifest.json").write_text(json.dumps(manifest))
    with Predictor(cpu_bundle.folder) as predictor:
        assert predictor.runtime.path.name == "model.onnx"


@pytest.mark.parametrize("altered", ["model.ort", "model.onnx"])
def test_the_model_file_that_runs_is_verified_while_it_loads(cpu_bundle, altered):
    """Predictor checks the checksums of what it runs (model.ort here), while ONNX Runtime loads it;
    the model file it does not run is not read (`Bundle.open` alone verifies every file)."""
    path = cpu_bundle.folder / altered
    flip_a_byte(path)
    with pytest.raises(ArtifactError, match=f"{altered} does not match its checksum"):
        Bundle.open(cpu_bundle.folder)
    if altered == "model.ort":
        with pytest.raises(ArtifactError, match="model.ort does not match its checksum"):
            Predictor(cpu_bundle.folder)
    else:
        with Predictor(cpu_bundle.folder) as predictor:
            assert predictor.runtime.path.name == "model.ort"


def test_gpu_and_openvino_bundles_carry_no_ort_format_file(bundle, models, tmp_path):
    assert "model.ort" not in bundle.manifest["files"] and "ort_format" not in bundle.manifest  # FP16: a Jetson's
    named = write_bundle(models["files"]["cifar"], tmp_path / "ov", backend="openvino")
    assert "model.ort" not in named.manifest["files"]


def test_a_wheelhouse_for_an_unknown_board_is_refused_before_anything_is_written(models, tmp_path):
    with pytest.raises(ToolkitError, match="--wheels takes aarch64 or x86_64"):
        write_bundle(models["files"]["cifar"], tmp_path / "b", wheels="armv7l")
    with pytest.raises(ToolkitError, match=r"--python takes the board's Python as 3\.N"):
        write_bundle(models["files"]["cifar"], tmp_path / "b", wheels="aarch64", python="three")
    assert not (tmp_path / "b").exists()
