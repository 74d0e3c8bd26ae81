"""Triton repositories: config.pbtxt parsed back with Triton's own schema and checked against the model."""

import hashlib

import onnx
import pytest

from deploy import ArtifactError
from deploy.artifacts.manifest import BatchRange, write_manifest
from deploy.shipping.model import read_shipped_model
from deploy.triton.repository import TritonOptions, write_triton_model
from resnet import ToolkitError
from toolkit.files import sha256_file

model_config_pb2 = pytest.importorskip(
    "tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] parses Triton configs: pip install '.[dev]'"
)
from google.protobuf import text_format  # noqa: E402


def parse(folder):
    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def onnx_io(path):
    proto = onnx.load(str(path))
    (inp,), (out,) = proto.graph.input, proto.graph.output
    dims = lambda v: [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]  # noqa: E731
    types = {onnx.TensorProto.FLOAT: model_config_pb2.TYPE_FP32, onnx.TensorProto.FLOAT16: model_config_pb2.TYPE_FP16}
    return (inp.name, types[inp.type.tensor_type.elem_type], dims(inp)), (
        out.name,
        types[out.type.tensor_type.elem_type],
        dims(out),
    )


@pytest.mark.parametrize("kind", ["cifar", "cifar_fp16", "cifar_fp16_io", "imagenet"])
def test_onnx_config_matches_the_file(kind, models, tmp_path):
    path = models["files"][kind]
    options = TritonOptions(max_batch_size=32, instances=2, preferred_batch=[8, 16], max_queue_delay_us=250)
    folder = write_triton_model(path, tmp_path / "repo", "m", options)
    config = parse(folder)
    (in_name, in_type, in_dims), (out_name, out_type, out_dims) = onnx_io(path)
    assert config.name == "m" and config.platform == "onnxruntime_onnx" and config.max_batch_size == 32
    (inp,), (out,) = config.input, config.output
    assert (inp.name, inp.data_type, list(inp.dims)) == (in_name, in_type, in_dims[1:])
    assert (out.name, out.data_type, list(out.dims)) == (out_name, out_type, out_dims[1:])
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    (group,) = config.instance_group
    assert group.count == 2 and group.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert (folder / "1" / "model.onnx").read_bytes() == path.read_bytes()
    if kind == "cifar_fp16_io":
        assert inp.data_type == model_config_pb2.TYPE_FP16


def test_defaults_labels_and_cpu_instances(models, tmp_path):
    labels = [f"c{i}" for i in range(10)]
    folder = write_triton_model(
        models["files"]["cifar"], tmp_path / "repo", "m", TritonOptions(instance_kind="KIND_CPU"), labels=labels
    )
    config = parse(folder)
    assert config.max_batch_size == 64 and config.output[0].label_filename == "labels.txt"
    assert (folder / "labels.txt").read_text().splitlines() == labels
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert read_shipped_model(models["files"]["cifar"]).default_name == "resnet20_cifar10"


def test_fixed_batch_onnx_has_no_batching(models, tmp_path):
    config = parse(write_triton_model(models["files"]["cifar_b4"], tmp_path / "repo", "fixed"))
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [4, 3, 32, 32]
    assert not config.HasField("dynamic_batching")
    with pytest.raises(ToolkitError, match="fixed batch of 4, so Triton can't batch it"):
        write_triton_model(models["files"]["cifar_b4"], tmp_path / "repo2", "fixed", TritonOptions(max_batch_size=8))


@pytest.fixture
def engine(models, tmp_path, engine_manifest):
    path = tmp_path / "r20.plan"
    path.write_bytes(b"engine bytes")
    write_manifest(
        engine_manifest(
            engine_sha256=hashlib.sha256(b"engine bytes").hexdigest(),
            batches=BatchRange(1, 16, 48),
            source_onnx={"file": "r20_fp16.onnx", "sha256": sha256_file(models["files"]["cifar_fp16"])},
        ),
        path,
    )
    return path


def test_engine_config_matches_the_manifest(engine, tmp_path):
    folder = write_triton_model(engine, tmp_path / "repo", "trt", TritonOptions(preferred_batch=[16]))
    config = parse(folder)
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 48  # the engine's largest batch
    assert list(config.input[0].dims) == [3, 32, 32] and config.input[0].data_type == model_config_pb2.TYPE_FP32
    assert list(config.output[0].dims) == [10]
    assert (folder / "1" / "model.plan").read_bytes() == b"engine bytes"
    assert read_shipped_model(engine).default_name == "resnet20_cifar10"


def test_engine_limits(engine, tmp_path, engine_manifest):
    with pytest.raises(ToolkitError, match="--max-batch 64 is above engine r20.plan's largest batch 48"):
        write_triton_model(engine, tmp_path / "repo", "trt", TritonOptions(max_batch_size=64))
    with pytest.raises(ToolkitError, match="runs on the GPU"):
        write_triton_model(engine, tmp_path / "repo", "trt", TritonOptions(instance_kind="KIND_CPU"))
    write_manifest(
        engine_manifest(engine_sha256=hashlib.sha256(b"engine bytes").hexdigest(), batches=BatchRange(4, 16, 48)),
        engine,
    )
    with pytest.raises(ToolkitError, match="batch range starts at batch 4"):
        write_triton_model(engine, tmp_path / "repo", "trt")
    assert not (tmp_path / "repo" / "trt").exists()


@pytest.mark.parametrize(
    "name,options,message",
    [
        ("a/b", {}, "must be letters, digits"),
        ("m", dict(preferred_batch=[128]), "between 1 and max batch 64"),
        ("m", dict(instances=0), "--instances must be at least 1"),
        ("m", dict(max_batch_size=0), "--max-batch must be at least 1"),
        ("m", dict(max_batch_size=-3), "--max-batch must be at least 1"),
    ],
)
def test_bad_options(name, options, message, models, tmp_path):
    with pytest.raises(ToolkitError, match=message):
        write_triton_model(models["files"]["cifar"], tmp_path / "repo", name, TritonOptions(**options))
    assert not (tmp_path / "repo").exists() or list((tmp_path / "repo").iterdir()) == []


def test_existing_model_folder_is_kept_unless_forced(models, tmp_path):
    write_triton_model(models["files"]["cifar"], tmp_path / "repo", "m")
    with pytest.raises(ToolkitError, match="already exists"):
        write_triton_model(models["files"]["cifar_fp16"], tmp_path / "repo", "m")
    folder = write_triton_model(models["files"]["cifar_fp16"], tmp_path / "repo", "m", force=True)
    assert (folder / "1" / "model.onnx").read_bytes() == models["files"]["cifar_fp16"].read_bytes()
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["m"]
    with pytest.raises(ArtifactError, match="does not exist"):
        write_triton_model(tmp_path / "nothing.onnx", tmp_path / "repo", "x")


def test_a_python_backend_folder_written_before_the_move_is_still_replaced(models, tmp_path):
    """Issue 36: Python-backend models written before each target got a folder import
    `deploy.serving.backend`; that path still gives the same models (tests/deploy/test_serving.py
    serves one so), and `--force` still takes such a folder, as its marker records it, for the
    toolkit's."""
    from click.testing import CliRunner

    import deploy.serving.backend as old
    import deploy.triton.python_model as new
    from deploy.cli import main as deploy_main
    from deploy.triton.records import MARKER, write_marker

    assert (old.LogitsModel, old.ImagesModel) == (new.LogitsModel, new.ImagesModel)
    repository = tmp_path / "repo"
    args = ["triton", str(models["files"]["cifar"]), "--repository", str(repository), "--triton-backend", "python"]
    assert CliRunner().invoke(deploy_main, args + ["--name", "m"]).exit_code == 0
    for name in ("m", "m_images"):
        script = repository / name / "1" / "model.py"
        script.write_text(script.read_text().replace("deploy.triton.python_model", "deploy.serving.backend"))
        (repository / name / MARKER).unlink()
        write_marker(repository / name, name)  # as the release that wrote it recorded it
    assert "from deploy.serving.backend import" in (repository / "m" / "1" / "model.py").read_text()
    result = CliRunner().invoke(deploy_main, args + ["--name", "m", "--force"])
    assert result.exit_code == 0, result.output
    assert "from deploy.triton.python_model import" in (repository / "m" / "1" / "model.py").read_text()
