"""deploy's ONNX Runtime wrapper, metadata and files, on real exported models."""

import numpy as np
import onnx
import pytest

import resnet
from deploy import ArtifactError, MissingDependencyError, ModelInfo, OrtRuntime, available_ort_providers, read_onnx_info
from deploy.runtimes import RuntimeOptions, default_provider, provider_problem, usable_ort_providers
from export import export_onnx, resnet_to_onnx
from toolkit.errors import ToolkitError


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


# ---- each backend honours its own options; the rest are refused before anything is loaded ----------


@pytest.mark.parametrize(
    "options,message",
    [
        (
            dict(precision="bf16"),
            "resnet20.onnx: ONNX Runtime computes a file in the precision it was exported or built in, so --precision "
            "bf16 would not change what it computes; OpenVINO computes BF16 from an ONNX file on a CPU that has it: "
            "--backend openvino",
        ),
        (dict(compile=True), "resnet20.onnx: ONNX Runtime does not use --compile; it applies to PyTorch"),
        (dict(openvino_hint="throughput"), "does not use --openvino-hint; it applies to OpenVINO"),
        (dict(backend="openvino", provider="cuda"), "OpenVINO does not use --provider; it applies to ONNX Runtime"),
        (dict(backend="openvino", device="cuda"), "OpenVINO runs on the CPU here, not --device cuda"),
    ],
)
def test_an_option_the_backend_would_ignore_is_refused(options, message, cifar_onnx):
    """It used to be dropped: `resnet-bench r20.onnx --precision bf16` measured FP32 under an FP32 label."""
    from deploy.runtimes import RuntimeOptions, open_runtime

    with pytest.raises(resnet.ToolkitError) as caught:
        open_runtime(cifar_onnx, RuntimeOptions(**options))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_an_engine_is_refused_options_before_tensorrt_is_needed(tmp_path):
    """The refusal comes from the table (`choices.HONOURED`), before the backend's module loads: here,
    without TensorRT."""
    from deploy.runtimes import RuntimeOptions, open_runtime

    engine = tmp_path / "m.plan"
    engine.write_bytes(b"not read")
    with pytest.raises(
        resnet.ToolkitError,
        match="m.plan: TensorRT does not use --threads; it applies to ONNX Runtime, OpenVINO, PyTorch",
    ):
        open_runtime(engine, RuntimeOptions(threads=2))
    with pytest.raises(resnet.ToolkitError, match="TensorRT runs on the GPU here, not --device cpu"):
        open_runtime(engine, RuntimeOptions(device="cpu"))


def test_a_second_target_keeps_the_options_its_backend_uses():
    from deploy.runtimes import RuntimeOptions

    options = RuntimeOptions(threads=2, provider="cpu", precision="bf16", channels_last=True)
    assert options.honoured_by("onnxruntime") == RuntimeOptions(threads=2, provider="cpu")
    assert options.honoured_by("pytorch") == RuntimeOptions(threads=2, precision="bf16", channels_last=True)
    assert options.honoured_by("tensorrt") == RuntimeOptions()


def test_named_outputs_are_module_names_in_every_cpu_backend(cifar_onnx):
    """The capability compare uses: the same module points from ONNX Runtime, OpenVINO and PyTorch,
    in the file's tensors' values (ResNet-20, FP32: equal within float rounding)."""
    import importlib.util

    from deploy.runtimes import RuntimeOptions, open_runtime

    model = resnet.create(20, "cifar10").eval()
    path = cifar_onnx.parent / "same.onnx"
    export_onnx(model, path, validate=False)
    points = ["conv1", "layer1.0.relu1", "layer2.0.downsample", "layer2.0.add", "layer3.2.relu", "fc"]
    runtimes = [
        open_runtime(path, RuntimeOptions(outputs=points)),
        open_runtime(model, RuntimeOptions(device="cpu", outputs=points)),
    ]
    if importlib.util.find_spec("openvino") is not None:
        runtimes.append(open_runtime(path, RuntimeOptions(backend="openvino", outputs=points)))
    batch = runtimes[0].random_input(2)
    found = [runtime.run_outputs(batch) for runtime in runtimes]
    for runtime, outputs in zip(runtimes, found, strict=True):
        assert runtime.outputs == tuple(points) and list(outputs) == points, runtime.backend
        for point in points:
            scale = np.abs(found[0][point]).max()
            assert np.abs(outputs[point] - found[0][point]).max() <= 1e-4 * scale, (runtime.backend, point)
    assert np.allclose(found[0]["fc"], runtimes[0].run(batch))
    with pytest.raises(resnet.ToolkitError, match="was opened without named outputs"):
        open_runtime(path).run_outputs(batch)


def _by_onnx(path):
    """What onnx's own parser says of a file: the oracle of the wire-format reader."""
    proto = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in proto.graph.initializer}
    shape = lambda v: tuple(d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim)  # noqa: E731
    dtype = lambda v: onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name  # noqa: E731
    return (
        [(v.name, dtype(v), shape(v)) for v in proto.graph.input if v.name not in initializers],
        [(v.name, dtype(v), shape(v)) for v in proto.graph.output],
        {p.key: p.value for p in proto.metadata_props},
        {
            e.value
            for t in proto.graph.initializer
            if t.data_location == 1
            for e in t.external_data
            if e.key == "location"
        },
        {t.data_type for t in proto.graph.initializer},
    )


def test_the_wire_reader_reads_what_onnx_reads(digits_files, models, tmp_path):
    """`inspect_onnx` reads the protobuf itself (no onnx import: a board's cold start); on every kind
    of file the toolkit writes, and one with external data, it finds what onnx's parser finds."""
    from deploy.artifacts.onnx_wire import read_onnx_facts

    external = tmp_path / "external.onnx"
    onnx.save(
        onnx.load(str(digits_files["fp32"])),
        str(external),
        save_as_external_data=True,
        location="w.data",
        size_threshold=0,
    )
    files = [*digits_files.values(), *models["files"].values(), external]
    for path in files:
        facts = read_onnx_facts(path)
        inputs, outputs, metadata, locations, types = _by_onnx(path)
        assert [(t.name, t.dtype, t.shape) for t in facts.inputs] == inputs, path.name
        assert [(t.name, t.dtype, t.shape) for t in facts.outputs] == outputs, path.name
        assert facts.metadata == metadata and facts.external_data == locations, path.name
        assert facts.initializer_types == types, path.name
    assert read_onnx_facts(external).external_data == {"w.data"}


def test_the_wire_reader_reads_the_qdq_parameters_onnx_reads(digits_files):
    """`read_qdq` (what `check_quantization` judges an INT8 file by) finds the Q/DQ nodes and the
    values of their scales and zero points that onnx's parser finds, in both INT8 forms; a file
    without Q/DQ has none."""
    from onnx import numpy_helper

    from deploy.artifacts.onnx_wire import read_qdq

    for form in ("cpu", "tensorrt"):
        model = onnx.load(str(digits_files[form]))
        initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        expected = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
        nodes, tensors = read_qdq(digits_files[form])
        assert [(n.name, n.op_type, n.inputs) for n in nodes] == [(n.name, n.op_type, tuple(n.input)) for n in expected]
        assert len(nodes) > 20 and tensors.keys() == {name for n in expected for name in n.input[1:3] if name}
        for name, tensor in tensors.items():
            assert np.array_equal(np.asarray(tensor.values).ravel(), initializers[name].ravel()), name
    assert read_qdq(digits_files["fp32"]) == ([], {})


@pytest.mark.parametrize("content", [b"", b"plain text, not a model", b"\x0a\xff\xff\xff\x0f", bytes(range(256))])
def test_what_is_not_onnx_is_one_sentence(content, tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ArtifactError, match="is not a readable ONNX file"):
        read_onnx_info(path)


def test_a_device_names_a_gpu_by_its_index_or_is_refused():
    """`cuda:N` carries N to the runtimes (`device_index`; tests/deploy/test_ort_cuda.py runs it on
    a GPU); anything else in the index's place is refused in one sentence."""
    assert RuntimeOptions(device="cuda:3").device_index == 3 and RuntimeOptions(device="cuda").device_index == 0
    for bad in ("cuda:x", "cpu:1", "cuda:-1", "gpu", "cuda:"):
        with pytest.raises(ToolkitError, match="device must be cpu, cuda or cuda:N"):
            RuntimeOptions(device=bad)
