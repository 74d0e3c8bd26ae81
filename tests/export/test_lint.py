"""The graph contract, on graphs that break it on purpose."""

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

import resnet
from export import GraphContractError, check_onnx, lint_onnx, resnet_to_onnx


def _rules(report):
    return {v.rule for v in report.violations}


class ConcatZerosShortcut(torch.nn.Module):
    """Option A as the cookbook's step 2 literally reads: torch.cat with torch.zeros sized at run time."""

    def __init__(self, extra):
        super().__init__()
        self.extra = extra

    def forward(self, x):
        x = x[:, :, ::2, ::2]
        zeros = torch.zeros(x.size(0), self.extra, x.size(2), x.size(3), dtype=x.dtype, device=x.device)
        return torch.relu(torch.cat([x, zeros], 1) + 1)


def _torch_export(module, tmp_path, example):
    path = tmp_path / "bad.onnx"
    torch.onnx.export(
        module.eval(),
        (example,),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["out"],
        dynamic_axes={"input": {0: "batch"}},
    )
    return onnx.load(str(path))


def test_concat_of_runtime_zeros_breaks_the_contract(tmp_path):
    proto = _torch_export(ConcatZerosShortcut(16), tmp_path, torch.randn(2, 16, 8, 8))
    report = lint_onnx(proto)
    assert not report.passed
    flagged = {v.message.split(" ")[0] for v in report.violations if v.rule == "allowed-ops"}
    assert {"Concat", "ConstantOfShape"} & flagged or {"Concat", "Shape"} & flagged
    assert "Concat" in flagged
    with pytest.raises(GraphContractError, match=r"\[allowed-ops\]"):
        check_onnx(proto)


def test_torchscript_f_pad_computes_pads_at_run_time(tmp_path):
    class PadShortcut(torch.nn.Module):
        def forward(self, x):
            return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, 16)) + 1

    report = lint_onnx(_torch_export(PadShortcut(), tmp_path, torch.randn(2, 16, 8, 8)))
    found = {(v.rule, v.node, v.message.split(" (")[0]) for v in report.violations}
    assert ("constant-pad", "/Pad", "Pad pads") in found
    assert any(rule == "allowed-ops" and message.startswith("ConstantOfShape") for rule, _, message in found)


def _graph(nodes, initializers=(), opset=17, dtype=TensorProto.FLOAT, out_shape=None):
    x = helper.make_tensor_value_info("input", dtype, ["batch", 4, 8, 8])
    y = helper.make_tensor_value_info("y", dtype, out_shape or ["batch", 4, 8, 8])
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _const(name, values, dtype=np.int64):
    return numpy_helper.from_array(np.array(values, dtype), name)


def test_unfolded_batchnorm_is_named():
    stats = [_const(n, np.ones(4), np.float32) for n in ("scale", "bias", "mean", "var")]
    proto = _graph(
        [helper.make_node("BatchNormalization", ["input", "scale", "bias", "mean", "var"], ["y"], name="layer1.0.bn1")],
        stats,
    )
    (violation,) = lint_onnx(proto).violations
    assert (violation.rule, violation.node) == ("batchnorm-folded", "layer1.0.bn1")


def test_identity_is_not_allowed():
    report = lint_onnx(_graph([helper.make_node("Identity", ["input"], ["y"], name="bn.identity")]))
    assert [(v.rule, v.node) for v in report.violations] == [("allowed-ops", "bn.identity")]
    assert "Identity is not allowed" in str(report.violations[0])


def test_computed_slice_inputs_are_named():
    nodes = [
        helper.make_node("Shape", ["input"], ["shape"], name="shape"),
        helper.make_node("Slice", ["input", "starts", "shape", "axes", "steps"], ["sliced"], name="sc.slice"),
        helper.make_node("Pad", ["sliced", "pads"], ["padded"], name="sc.pad"),
        helper.make_node("Add", ["padded", "padded"], ["y"], name="add"),
    ]
    inits = [
        _const("starts", [0, 0, 0, 0]),
        _const("axes", [0, 1, 2, 3]),
        _const("steps", [1, 1, 1, 1]),
        _const("pads", [0] * 8),
    ]
    report = lint_onnx(_graph(nodes, inits))
    assert ("constant-slice", "sc.slice") in {(v.rule, v.node) for v in report.violations}
    assert any("ends (shape) is computed" in v.message for v in report.violations)


def test_cast_inside_or_in_fp32_graph():
    fp32 = _graph([helper.make_node("Cast", ["input"], ["y"], name="c", to=TensorProto.FLOAT)])
    assert [v.rule for v in lint_onnx(fp32).violations] == ["cast-at-edges"]
    model = resnet.create(20, "cifar10")
    fp16 = resnet_to_onnx(model, precision="fp16")
    assert lint_onnx(fp16).passed
    # Move the output cast inside: relu(cast(fc)) -> logits.
    graph = fp16.graph
    cast = next(n for n in graph.node if n.name == "logits.cast")
    cast.output[0] = "inner"
    graph.node.append(helper.make_node("Relu", ["inner"], ["logits"], name="late.relu"))
    assert ("cast-at-edges", "logits.cast") in {(v.rule, v.node) for v in lint_onnx(fp16).violations}


def test_wrong_opset_and_foreign_domains():
    proto = _graph([helper.make_node("Relu", ["input"], ["y"], name="r")], opset=18)
    report = lint_onnx(proto, opset=17)
    assert [v.rule for v in report.violations] == ["opset"]
    assert "declares default-domain opset 18, expected 17" in report.violations[0].message
    proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    assert any("com.microsoft" in v.message for v in lint_onnx(proto).violations)


def test_option_a_counts_follow_the_metadata():
    proto = resnet_to_onnx(resnet.create(20, "cifar10"))
    assert lint_onnx(proto).passed
    # Drop one Pad: rewire its consumer to the Slice.
    graph = proto.graph
    pad = next(n for n in graph.node if n.op_type == "Pad")
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == pad.output[0]:
                node.input[i] = pad.input[0]
    graph.node.remove(pad)
    rules = {(v.rule, v.node) for v in lint_onnx(proto).violations}
    assert ("option-a", "(graph)") in rules
    assert ("option-a", "layer2.0.downsample.slice") in rules  # that Slice now feeds no Pad


def test_checker_failures_are_reported():
    proto = _graph([helper.make_node("Relu", ["missing_input"], ["y"], name="r")])
    assert "onnx-checker" in _rules(lint_onnx(proto))


# test_export covers each model's default shortcut in FP32; here the other shortcut and FP16.
@pytest.mark.parametrize("variant,precision", [("other", "fp32"), ("default", "fp16")])
def test_every_registered_model_satisfies_the_contract(variant, precision):
    for depth, dataset in resnet.registered_models():
        default = resnet.model_entry(depth, dataset).default_shortcut
        shortcut = default if variant == "default" else {"A": "B", "B": "A"}[default]
        model = resnet.create(depth, dataset, shortcut=shortcut)
        report = lint_onnx(resnet_to_onnx(model, precision=precision))
        assert report.passed, (depth, report.violations)
        expected = model.architecture.shortcut_blocks() if shortcut == "A" else []
        assert report.op_counts.get("Pad", 0) == len(expected)
        assert report.op_counts.get("Slice", 0) == sum(1 for block in expected if block[1] == 2)
