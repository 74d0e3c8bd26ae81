"""resnet-build: the plain parts everywhere; the TensorRT parts where TensorRT and a GPU exist."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

import resnet
from deploy import OrtRuntime
from deploy.artifacts import inspect_onnx
from deploy.artifacts.manifest import read_manifest
from export import export_onnx
from export.cli import build_main
from export.cli import main as export_main
from export.engine import BuildOptions, build_engine, export_command, resolve_batches, upcast_to_fp32

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
HAS_GPU = torch.cuda.is_available()
needs_tensorrt = pytest.mark.skipif(
    not (HAS_TENSORRT and HAS_GPU), reason="needs TensorRT and an NVIDIA GPU (pip install '.[gpu]')"
)
without_tensorrt = pytest.mark.skipif(HAS_TENSORRT, reason="checks the behaviour when TensorRT is not installed")


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    model = resnet.create(20, "cifar10")
    files = {
        "fp32": folder / "r20.onnx",
        "fp16": folder / "r20_fp16.onnx",
        "static": folder / "r20_b8.onnx",
    }
    export_onnx(model, files["fp32"], validate=False)
    export_onnx(model, files["fp16"], precision="fp16", validate=False)
    export_onnx(model, files["static"], batch=8, dynamic_batch=False, validate=False)
    return files


@pytest.mark.parametrize(
    "batch_dim,given,expected",
    [
        (None, (None, None, None), (1, 32, 64)),
        (None, (None, None, 16), (1, 16, 16)),
        (None, (128, None, None), (128, 128, 128)),
        (None, (4, None, 256), (4, 32, 256)),
        (None, (2, 8, 8), (2, 8, 8)),
        (8, (None, None, None), (8, 8, 8)),
        (8, (8, 8, 8), (8, 8, 8)),
    ],
)
def test_batch_range_defaults_and_arithmetic(batch_dim, given, expected):
    batches = resolve_batches(batch_dim, *given)
    assert (batches.min, batches.opt, batches.max) == expected


@pytest.mark.parametrize(
    "batch_dim,given,message",
    [
        (None, (8, None, 4), "--min-batch 8 is larger than --max-batch 4"),
        (None, (1, 100, 64), "--opt-batch 100 is outside the batch range 1 to 64"),
        (None, (0, None, None), "--min-batch must be at least 1"),
        (8, (None, None, 64), "fixed batch of 8, so its engine takes exactly 8 (got --max-batch 64)"),
    ],
)
def test_batch_range_errors(batch_dim, given, message):
    with pytest.raises(resnet.ToolkitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_batches(batch_dim, *given)


def test_inspect_reads_precision_shapes_and_metadata(onnx_files):
    fp32, fp16, static = (inspect_onnx(onnx_files[k]) for k in ("fp32", "fp16", "static"))
    assert (fp32.precision, fp16.precision) == ("fp32", "fp16")
    assert fp32.input.shape == (None, 3, 32, 32) and static.input.shape == (8, 3, 32, 32)
    assert fp16.input.dtype == "float32" and fp16.output.shape == (None, 10)
    assert fp32.info.name == "resnet20_cifar10" and len(fp32.sha256()) == 64


def test_fp16_engine_from_fp32_file_gets_the_export_command(onnx_files, tmp_path):
    with pytest.raises(resnet.ToolkitError) as caught:
        build_engine(onnx_files["fp32"], tmp_path / "e.plan", precision="fp16")
    message = str(caught.value)
    assert "is an FP32 graph" in message
    assert "resnet-export --depth 20 --dataset cifar10 --precision fp16 (with your --weights)" in message
    assert list(tmp_path.iterdir()) == []
    info = inspect_onnx(onnx_files["fp32"])
    assert export_command(info, "fp16").startswith("resnet-export --depth 20 --dataset cifar10 --precision fp16")


def test_fp32_twin_of_an_fp16_graph_computes_the_same_function_in_fp32(onnx_files, tmp_path):
    twin = upcast_to_fp32(onnx.load(str(onnx_files["fp16"])))
    assert {t.data_type for t in twin.graph.initializer} == {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64}
    path = tmp_path / "twin.onnx"
    path.write_bytes(twin.SerializeToString())
    with OrtRuntime(path) as twin_runtime, OrtRuntime(onnx_files["fp16"]) as fp16_runtime:
        x = twin_runtime.random_input(4)
        a, b = twin_runtime.run(x), fp16_runtime.run(x)
    # ONNX Runtime on a CPU computes the FP16 graph in FP32: the logits are equal (see export.validate).
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.9999


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.onnx"], "ONNX file missing.onnx does not exist"),
        (["{fp32}", "--precision", "fp16"], "is an FP32 graph"),
        (["{fp32}", "--min-batch", 8, "--max-batch", 4], "--min-batch 8 is larger than --max-batch 4"),
        (["{static}", "--max-batch", 64], "fixed batch of 8"),
        (["{fp32}", "--opt-level", 7], "--opt-level must be 0 to 5, got 7"),
        (
            ["{fp32}", "--workspace", 0],
            "Invalid value for '--workspace': must be at least 1 and at most 16777216, got 0",
        ),
        (["{fp32}", "-o", "/no/such/folder/e.plan"], "folder /no/such/folder does not exist"),
        (["{fp32}", "--reference", "nothing.onnx"], "reference ONNX file nothing.onnx does not exist"),
        (["{fp32}", "--exclude-lean-runtime"], "--exclude-lean-runtime goes with --version-compatible"),
    ],
)
def test_build_bad_input_is_one_sentence_and_exit_2(args, message, onnx_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [str(a).format(**{k: str(v) for k, v in onnx_files.items()}) for a in args]
    result = CliRunner().invoke(build_main, args)
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("resnet-build: ") and message in line
    assert list(tmp_path.iterdir()) == []


def test_not_an_onnx_file(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"\x00garbage")
    result = CliRunner().invoke(build_main, [str(tmp_path / "x.onnx")])
    assert result.exit_code == 2 and "not a readable ONNX file" in result.output


@without_tensorrt
def test_build_without_tensorrt_names_what_to_install(onnx_files, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(build_main, [str(onnx_files["fp16"])])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "resnet-build: building or running a TensorRT engine needs the tensorrt package, which is not installed: "
        "pip install '.[gpu]' on a machine with an NVIDIA GPU and CUDA"
    )
    assert list(tmp_path.iterdir()) == []


@without_tensorrt
def test_export_with_engine_fails_before_exporting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(export_main, ["--depth", "20", "--dataset", "cifar10", "--engine", "e.plan"])
    assert result.exit_code == 2 and "pip install '.[gpu]'" in result.output
    assert list(tmp_path.iterdir()) == []


@without_tensorrt
def test_engine_runtime_without_tensorrt(tmp_path):
    from deploy import MissingDependencyError
    from deploy.runtimes.tensorrt import TensorRTRuntime

    (tmp_path / "e.plan").write_bytes(b"serialized engine")
    with pytest.raises(MissingDependencyError, match=r"pip install '.\[gpu\]'"):
        TensorRTRuntime(tmp_path / "e.plan")


def test_engine_runtime_refuses_a_manifest_of_another_engine(tmp_path, engine_manifest):
    from deploy import ArtifactError
    from deploy.artifacts.manifest import write_manifest
    from deploy.runtimes.tensorrt import TensorRTRuntime

    (tmp_path / "m.plan").write_bytes(b"a newer engine")
    write_manifest(engine_manifest(), tmp_path / "m.plan")  # names another checksum
    with pytest.raises(ArtifactError, match="m.plan.json describes another engine"):
        TensorRTRuntime(tmp_path / "m.plan")


# ---------------------------------------------------------------- real TensorRT, on a GPU machine


@needs_tensorrt
@pytest.mark.parametrize("kind", ["fp16", "fp32"])
def test_build_run_and_validate_a_real_engine(kind, onnx_files, tmp_path):
    from deploy.runtimes.tensorrt import TensorRTRuntime

    engine = tmp_path / f"{kind}.plan"
    report = build_engine(onnx_files[kind], engine, BuildOptions(max_batch=16, opt_batch=8))
    assert report.validation.passed, report.validation.failures
    manifest = read_manifest(engine)
    assert manifest.precision == kind and (manifest.batches.min, manifest.batches.opt, manifest.batches.max) == (
        1,
        8,
        16,
    )
    assert manifest.model.name == "resnet20_cifar10" and "STRONGLY_TYPED" in manifest.build["flags"]
    with TensorRTRuntime(engine) as runtime, OrtRuntime(onnx_files["fp32"]) as reference:
        x = runtime.random_input(5)
        out, ref = runtime.run(x), reference.run(x)
        assert out.shape == (5, 10)
        assert np.array_equal(out.argmax(1), ref.argmax(1))
        with pytest.raises(resnet.ToolkitError, match=r"outside engine .* batch range \(min 1, opt 8, max 16\)"):
            runtime.check_batch(17)


@needs_tensorrt
def test_cuda_graphs_give_the_same_logits(onnx_files, tmp_path):
    from deploy.runtimes.tensorrt import TensorRTRuntime

    engine = tmp_path / "e.plan"
    build_engine(onnx_files["fp16"], engine, BuildOptions(max_batch=8), validate=False)
    with TensorRTRuntime(engine) as plain, TensorRTRuntime(engine, cuda_graphs=True) as graphed:
        for n in (1, 4, 8, 4):
            x = plain.random_input(n, seed=n)
            assert np.array_equal(plain.run(x), graphed.run(x))


def engine_built_elsewhere(onnx: Path, folder: Path, **environment) -> Path:
    """A small engine whose manifest says it was built in another environment (`environment`'s
    fields replaced)."""
    engine = folder / "e.plan"
    build_engine(onnx, engine, BuildOptions(max_batch=8), validate=False)
    path = engine.with_name("e.plan.json")
    data = json.loads(path.read_text())
    data["environment"].update(environment)
    path.write_text(json.dumps(data))
    return engine


@needs_tensorrt
def test_foreign_engine_is_refused(onnx_files, tmp_path):

    from deploy import ArtifactError
    from deploy.runtimes.tensorrt import TensorRTRuntime

    engine = engine_built_elsewhere(onnx_files["fp16"], tmp_path, tensorrt_version="9.0.0")
    with pytest.raises(ArtifactError, match="rebuild it on this machine"):
        TensorRTRuntime(engine)


@needs_tensorrt
def test_timing_cache_is_saved_and_reused(onnx_files, tmp_path):
    cache = tmp_path / "timing.cache"
    build_engine(onnx_files["fp16"], tmp_path / "a.plan", BuildOptions(max_batch=4, timing_cache=cache), validate=False)
    assert cache.stat().st_size > 0
    report = build_engine(
        onnx_files["fp16"], tmp_path / "b.plan", BuildOptions(max_batch=4, timing_cache=cache), validate=False
    )
    assert report.manifest.build["timing_cache"] == str(cache)


@needs_tensorrt
def test_a_damaged_timing_cache_is_one_sentence_and_nothing_is_written(onnx_files, tmp_path):
    from export import EngineBuildError

    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"not a timing cache")
    with pytest.raises(EngineBuildError, match="timing cache .*timing.cache is not a TensorRT timing cache"):
        build_engine(
            onnx_files["fp16"], tmp_path / "e.plan", BuildOptions(max_batch=4, timing_cache=cache), validate=False
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timing.cache"]


@needs_tensorrt
def test_an_engine_from_another_gpu_model_warns_on_stderr_where_it_runs(onnx_files, tmp_path):
    """The manifest check's softer warning (same architecture, another GPU model) reaches the
    user of the Predictor, not only resnet-build's report."""

    from PIL import Image

    from deploy.cli import main as deploy_main

    engine = engine_built_elsewhere(onnx_files["fp16"], tmp_path, gpu_name="Another GPU of the same architecture")
    Image.new("RGB", (40, 30), (200, 30, 40)).save(tmp_path / "good.png")
    result = CliRunner().invoke(deploy_main, ["predict", str(engine), str(tmp_path / "good.png")])
    assert result.exit_code == 0 and "was built on Another GPU of the same architecture" in result.output
