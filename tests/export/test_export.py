"""Exports of real models, checked with onnx and run in ONNX Runtime."""

import re

import numpy as np
import onnx
import pytest
import torch

import resnet
from deploy import OrtRuntime, read_onnx_info
from export import SUPPORTED_OPSETS, ExportError, Thresholds, ValidationFailed, export_onnx, lint_onnx

ALL_MODELS = resnet.registered_models()


def _model(depth, dataset="imagenet", randomizer=None, small=None, **kwargs):
    """A registered model; an ImageNet one at 64x64 when `small` (the `small_imagenet` fixture) is given."""
    model = (
        small(depth, **kwargs)
        if small is not None and dataset == "imagenet"
        else resnet.create(depth, dataset, **kwargs)
    )
    return randomizer(model) if randomizer else model


@pytest.mark.parametrize("depth,dataset", ALL_MODELS, ids=[f"{d}-{s}" for d, s in ALL_MODELS])
def test_every_registered_model_exports_and_validates_at_the_default_opset(
    depth, dataset, tmp_path, bn_randomizer, small_imagenet
):
    model = _model(depth, dataset, bn_randomizer, small_imagenet)
    report = export_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 17)]
    assert report.lint.passed and report.validation.passed
    assert report.validation.scaled_error <= 1e-4
    assert report.validation.top1_agreement == 1.0
    assert "BatchNormalization" not in report.op_counts
    expected_convs = (
        depth - 1 + (len(model.architecture.shortcut_blocks()) if model.architecture.shortcut == "B" else 0)
    )
    assert report.op_counts["Conv"] == expected_convs


@pytest.mark.parametrize("opset", [13, 17, 18, 21])
@pytest.mark.parametrize("depth,dataset,shortcut", [(18, "imagenet", "B"), (50, "imagenet", "B"), (20, "cifar10", "A")])
def test_exact_opset_and_contract(depth, dataset, shortcut, opset, tmp_path, bn_randomizer, small_imagenet):
    model = _model(depth, dataset, bn_randomizer, small_imagenet, shortcut=shortcut)
    report = export_onnx(model, tmp_path / "m.onnx", opset=opset)
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert {o.domain: o.version for o in proto.opset_import} == {"": opset}
    assert proto.ir_version == onnx.helper.find_min_ir_version_for(list(proto.opset_import))
    again = lint_onnx(proto, opset=opset)
    assert again.passed, again.violations
    assert report.validation.passed
    if shortcut == "A":
        assert again.op_counts["Slice"] == 2 and again.op_counts["Pad"] == 2


@pytest.mark.parametrize("opset", [SUPPORTED_OPSETS.start, SUPPORTED_OPSETS.stop - 1])
def test_the_ends_of_the_supported_range(opset, tmp_path):
    report = export_onnx(resnet.create(20, "cifar10"), tmp_path / "m.onnx", opset=opset)
    assert report.opset == opset and report.validation.passed


@pytest.mark.parametrize("opset", [9, 10, SUPPORTED_OPSETS.stop])
def test_opsets_outside_the_range_are_refused(opset, tmp_path):
    with pytest.raises(ExportError, match=f"opset {opset} is not supported; choose 11 to 25"):
        export_onnx(resnet.create(20, "cifar10"), tmp_path / "m.onnx", opset=opset)
    assert list(tmp_path.iterdir()) == []


def test_option_a_is_one_slice_and_one_pad_with_constant_inputs(tmp_path):
    export_onnx(resnet.create(20, "cifar10"), tmp_path / "m.onnx", validate=False)
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    initializers = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
    slices = [n for n in graph.node if n.op_type == "Slice"]
    pads = [n for n in graph.node if n.op_type == "Pad"]
    assert [n.name for n in slices] == ["layer2.0.downsample.slice", "layer3.0.downsample.slice"]
    for node in slices:
        assert all(name in initializers for name in node.input[1:])
        assert list(initializers[node.input[3]]) == [2, 3] and list(initializers[node.input[4]]) == [2, 2]
    for node, extra in zip(pads, (16, 32), strict=True):
        assert list(initializers[node.input[1]]) == [0, 0, 0, 0, 0, extra, 0, 0]
        assert node.input[0].endswith(".slice")


def test_the_file_is_self_contained_with_named_io_and_symbolic_batch(tmp_path):
    report = export_onnx(resnet.create(18), tmp_path / "m.onnx", validate=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    assert report.external_data is None
    proto = onnx.load(str(tmp_path / "m.onnx"), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == "input" and out.name == "logits"
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 3, 224, 224]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 1000]


def test_static_batch_fixes_the_batch_axis(tmp_path):
    report = export_onnx(resnet.create(20, "cifar10"), tmp_path / "m.onnx", batch=8, dynamic_batch=False)
    assert report.inputs[0].shape == (8, 3, 32, 32) and report.outputs[0].shape == (8, 10)
    assert report.validation.batch_sizes == [8, 8, 8]
    with OrtRuntime(tmp_path / "m.onnx") as runtime:
        assert runtime.batch_range == (8, 8)
        with pytest.raises(resnet.ToolkitError, match="exactly 8"):
            runtime.check_batch(4)


def test_validation_exercises_the_dynamic_axis_with_other_batches(tmp_path):
    report = export_onnx(resnet.create(20, "cifar10"), tmp_path / "m.onnx", batch=4)
    assert report.validation.batch_sizes == [1, 4, 7] and report.validation.samples == 12


def test_metadata_carries_what_later_stages_need(tmp_path):
    spec = resnet.CIFAR10.with_size(40, 48)
    model = resnet.create(32, "cifar10", shortcut="B", num_classes=7, input_spec=spec)
    export_onnx(model, tmp_path / "m.onnx", precision="fp16")
    info = read_onnx_info(tmp_path / "m.onnx")
    assert (info.name, info.depth, info.dataset, info.shortcut, info.num_classes) == (
        "resnet32_cifar10",
        32,
        "cifar10",
        "B",
        7,
    )
    assert info.input_spec == model.input_spec
    assert (info.precision, info.io_dtype) == ("fp16", "fp32")
    assert set(info.producer) >= {"resnet-deploy-toolkit", "torch", "onnx"}
    assert info.architecture == model.architecture
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert props["mean"] == "[0.4914, 0.4822, 0.4465]" and props["input_height"] == "40"


@pytest.mark.parametrize("depth,dataset", [(18, "imagenet"), (20, "cifar10")])
def test_fp16_is_a_strongly_typed_fp16_graph_with_fp32_edges(depth, dataset, tmp_path, bn_randomizer):
    report = export_onnx(_model(depth, dataset, bn_randomizer), tmp_path / "m.onnx", precision="fp16")
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    float_types = {t.data_type for t in graph.initializer if t.data_type != onnx.TensorProto.INT64}
    assert float_types == {onnx.TensorProto.FLOAT16}
    casts = [n for n in graph.node if n.op_type == "Cast"]
    assert [(n.input[0], n.output[0]) for n in (casts[0], casts[-1])] == [("input", "input.cast"), ("fc", "logits")]
    assert len(casts) == 2
    assert report.inputs[0].dtype == "float32" and report.outputs[0].dtype == "float32"
    v = report.validation
    assert v.passed and v.cosine >= 0.999 and v.top1_agreement >= 0.99
    assert [c.name for c in v.checks] == ["cosine", "top-1 agreement", "activation-peak"]
    assert 0 < v.activation_peak < 65504
    assert 0 < v.scaled_error < 0.05  # FP16 really rounds: not an FP32 graph in disguise


def test_fp16_io_has_no_casts_and_runs_on_fp16_input(tmp_path):
    report = export_onnx(resnet.create(20, "cifar10"), tmp_path / "m.onnx", precision="fp16", io_dtype="fp16")
    assert "Cast" not in report.op_counts
    assert report.inputs[0].dtype == "float16" and report.validation.passed
    with OrtRuntime(tmp_path / "m.onnx") as runtime:
        assert runtime.input_dtype == np.float16
        assert runtime.run(runtime.random_input(2)).dtype == np.float16
    with pytest.raises(ExportError, match="need an FP16 graph"):
        export_onnx(resnet.create(20, "cifar10"), tmp_path / "x.onnx", io_dtype="fp16")


def test_weights_beyond_fp16_range_are_refused(tmp_path):
    model = resnet.create(20, "cifar10")
    model.fc.weight.data[0, 0] = 1e6
    with pytest.raises(ExportError, match="beyond FP16's range"):
        export_onnx(model, tmp_path / "m.onnx", precision="fp16")


def test_failed_validation_writes_nothing_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "m.onnx"
    target.write_bytes(b"the user's previous file")
    # atol 0: the last-bit differences between ONNX Runtime and PyTorch must fail it.
    with pytest.raises(ValidationFailed, match=r"max-error/scale [0-9.e-]+ \(must be <= 0\)") as caught:
        export_onnx(resnet.create(20, "cifar10"), target, thresholds=Thresholds(atol=0.0))
    assert caught.value.report.scaled_error > 0 and not caught.value.report.passed
    assert target.read_bytes() == b"the user's previous file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_fp16_validation_catches_activations_beyond_fp16_range(tmp_path):
    model = resnet.create(20, "cifar10")
    with torch.no_grad():
        model.bn1.weight.mul_(1e5)  # the stem's activations reach ~1e5: fine in FP32, inf in FP16
    with pytest.raises(ValidationFailed, match="activation-peak"):
        export_onnx(model, tmp_path / "m.onnx", precision="fp16")
    assert export_onnx(model, tmp_path / "m.onnx").validation.passed  # FP32 is fine


def test_fp16_validation_fails_on_its_own_thresholds(tmp_path):
    with pytest.raises(ValidationFailed, match="cosine"):
        export_onnx(
            resnet.create(20, "cifar10"), tmp_path / "m.onnx", precision="fp16", thresholds=Thresholds(min_cosine=1.0)
        )
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_export_leaves_no_partial_file(tmp_path):
    target = tmp_path / "m.onnx"

    def interrupt(message):
        if message.startswith("validating"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export_onnx(resnet.create(20, "cifar10"), target, progress=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_large_models_go_to_external_data(tmp_path, monkeypatch):
    import export.onnx_export as onnx_export

    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_BYTES", 100_000)  # our own size limit, lowered
    report = export_onnx(resnet.create(20, "cifar10"), tmp_path / "m.onnx")
    assert report.external_data == "m.onnx.data" and report.validation.passed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]
    assert (tmp_path / "m.onnx").stat().st_size < 100_000


def test_export_does_not_change_the_model(tmp_path):
    model = resnet.create(20, "cifar10").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model, tmp_path / "m.onnx")
    assert model.training
    assert all((before[k] == v).all() for k, v in model.state_dict().items())


def test_report_serializes_to_json(tmp_path):
    import json

    data = json.loads(json.dumps(export_onnx(resnet.create(20, "cifar10"), tmp_path / "m.onnx").to_dict()))
    assert data["opset"] == 17 and data["lint"]["passed"] and data["validation"]["passed"]
    assert data["inputs"] == [{"name": "input", "dtype": "float32", "shape": [-1, 3, 32, 32]}]
    assert set(data["timings"]) == {"build_s", "lint_s", "write_s", "validate_s", "total_s"}
    assert data["model"]["input_spec"]["num_classes"] == 10


def test_the_report_says_where_fp16_was_validated_and_what_a_cpu_could_not_check(tmp_path):
    from export.validate import FP16_ON_CPU_NOTE

    report = export_onnx(resnet.create(20, "cifar10"), tmp_path / "m.onnx", precision="fp16", validate_on="cpu")
    assert report.validation.device == "cpu" and report.validation.notes == [FP16_ON_CPU_NOTE]
    assert report.to_dict()["validation"]["notes"] == [FP16_ON_CPU_NOTE]
    report = export_onnx(resnet.create(20, "cifar10"), tmp_path / "m32.onnx", validate_on="cpu")
    assert report.validation.device == "cpu" and report.validation.notes == []


def test_validating_on_a_gpu_that_cannot_run_is_one_sentence_before_any_work(tmp_path):
    from deploy.runtimes import provider_problem

    problem = provider_problem("cuda")
    if problem is None:
        pytest.skip("ONNX Runtime's CUDA provider can run here")
    with pytest.raises(
        resnet.ToolkitError, match=f"^ONNX Runtime's cuda provider can't run here: {re.escape(problem)}$"
    ):
        export_onnx(resnet.create(20, "cifar10"), tmp_path / "m.onnx", precision="fp16", validate_on="cuda")
    assert list(tmp_path.iterdir()) == []
