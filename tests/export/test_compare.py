"""resnet-compare: two forms of one model layer by layer, INT8 sensitivity and --keep-float, and
FP16 overflow named by module. Real models, real files, real ONNX Runtime."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import numpy_helper

import resnet
from export import ValidationFailed, export_onnx, lint_onnx
from export.cli import compare_main
from export.compare import LayerInputs, compare_models, plot_layers
from export.quantize import Int8Options
from export.sensitivity import int8_sensitivity
from toolkit.errors import ToolkitError

pytest.importorskip("onnxruntime", reason="the comparison runs ONNX files in ONNX Runtime: pip install '.[cpu]'")


def run(*args):
    return CliRunner().invoke(compare_main, [str(a) for a in args])


def module_outputs(path):
    """The graph's nodes whose output is a module's: all but Flatten, the edge Casts and Option A's Slice."""
    nodes = onnx.load(str(path), load_external_data=False).graph.node
    return [n.name for n in nodes if n.op_type not in ("Flatten", "Cast") and not n.name.endswith(".slice")]


@pytest.fixture(scope="module")
def digits_model(digits):
    return resnet.load_model(digits["checkpoint"])


@pytest.mark.parametrize("depth,shortcut", [(20, "A"), (20, "B"), (50, "A"), (50, "B")])
def test_an_export_matches_its_pytorch_model_at_every_layer(depth, shortcut, tmp_path, small_imagenet):
    torch.manual_seed(depth)
    model = (
        resnet.create(depth, "cifar10", shortcut=shortcut) if depth == 20 else small_imagenet(depth, shortcut=shortcut)
    )
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so folding is exercised
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "m.onnx"
    export_onnx(model, path, validate=False)
    report = compare_models(model, path, LayerInputs(random=2), batch=2)
    assert report.criterion == "fp32" and report.passed
    assert all(layer.error_of_scale <= 1e-5 for layer in report.layers), max(
        layer.error_of_scale for layer in report.layers
    )
    assert [layer.name for layer in report.layers] == model.architecture.module_points()
    assert len(report.layers) == len(module_outputs(path)), "every module output of the graph is matched"
    assert report.unmatched == {"reference": [], "candidate": []}


def _perturbed(source, target, change):
    proto = onnx.load(str(source))
    change(proto)
    onnx.save(proto, str(target))
    return target


def _scale(proto, name, factor):
    tensor = next(t for t in proto.graph.initializer if t.name == name)
    tensor.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(tensor) * factor).astype(np.float32), name))


def _weight_scale_of(proto, conv):
    node = next(
        n
        for n in proto.graph.node
        if n.op_type == "DequantizeLinear" and n.output[0] == f"{conv}.weight_DequantizeLinear_Output"
    )
    return node.input[1]


def _names_first(report, name):
    assert report.first_divergent == name, report.sentence()
    index = [layer.name for layer in report.layers].index(name)
    assert index > 0 and all(layer.passed for layer in report.layers[:index])
    assert name in report.sentence()


def test_a_perturbed_convolution_is_the_first_divergent_layer(digits_files, tmp_path):
    bad = _perturbed(digits_files["fp32"], tmp_path / "bad.onnx", lambda p: _scale(p, "layer2.1.conv2.weight", 1.05))
    _names_first(compare_models(digits_files["fp32"], bad, LayerInputs(random=8)), "layer2.1.conv2")
    result = run("layers", digits_files["fp32"], bad, "--random", 8, "--json", tmp_path / "r.json")
    assert result.exit_code == 1, result.output
    assert "the first divergent layer is layer2.1.conv2" in result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["first_divergent"] == "layer2.1.conv2" and data["passed"] is False
    layer = next(layer for layer in data["layers"] if layer["name"] == "layer2.1.conv2")
    assert {"max_abs", "scale", "error_of_scale", "cosine", "range"} <= set(layer)
    assert layer["error_of_scale"] > 1e-4


@pytest.mark.parametrize("target", ["cpu", "tensorrt"])
def test_a_perturbed_int8_scale_is_the_first_divergent_layer(target, digits_files, tmp_path):
    source = digits_files[target]

    def change(proto):
        _scale(proto, _weight_scale_of(proto, "layer2.1.conv2"), 1.05)

    bad = _perturbed(source, tmp_path / "bad.onnx", change)
    report = compare_models(source, bad, LayerInputs(random=8))
    assert report.criterion == "int8 same arithmetic"
    _names_first(report, "layer2.1.conv2")


def test_int8_against_fp32_on_real_images_is_judged_by_cosine(digits_files, digits, tmp_path):
    report = compare_models(
        digits_files["fp32"], digits_files["cpu"], LayerInputs(images=digits["heldout"], max_images=40)
    )
    assert report.criterion == "int8 on images" and report.samples == 40
    assert all(c.name == "cosine" for layer in report.layers for c in layer.checks)
    # The "cpu" form fuses each convolution with its ReLU: the convolution's own tensor is gone.
    assert "layer1.0.conv1" in report.unmatched["reference"] and "layer1.0.relu1" in [
        layer.name for layer in report.layers
    ]
    assert all(0.99 < layer.cosine <= 1.0 + 1e-9 for layer in report.layers)
    plot_layers(report, tmp_path / "layers.png")
    assert (tmp_path / "layers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_random_inputs_judge_int8_by_finite_values_and_say_so(digits_files):
    report = compare_models(digits_files["fp32"], digits_files["tensorrt"], LayerInputs(random=4))
    assert report.criterion == "int8" and report.passed
    assert any("--images DIR" in note for note in report.notes)


def _overflowing(model, block="layer2.1", factor=3e4):
    """A copy of `model` whose block's last BatchNorm multiplies its output far beyond FP16's range."""
    model = resnet.load_model(model) if not isinstance(model, torch.nn.Module) else model
    import copy

    model = copy.deepcopy(model)
    stage, index = block.split(".")
    with torch.no_grad():
        getattr(model, stage)[int(index)].bn2.weight.mul_(factor)
    return model


def test_fp16_overflow_names_the_block_it_starts_in(digits_model, tmp_path):
    model = _overflowing(digits_model)
    with pytest.raises(ValidationFailed) as caught:
        export_onnx(model, tmp_path / "m16.onnx", precision="fp16")
    message = str(caught.value)
    assert "activation-peak" in message and "first in layer2.1.bn2 (block layer2.1)" in message, message
    assert caught.value.report.beyond_fp16[0] == "layer2.1.bn2"
    assert list(tmp_path.iterdir()) == []


def test_the_comparison_flags_the_layer_beyond_fp16(digits_model, tmp_path):
    model = _overflowing(digits_model)
    path = tmp_path / "m16.onnx"
    export_onnx(model, path, precision="fp16", validate=False)
    report = compare_models(model, path, LayerInputs(random=4))
    assert report.criterion == "fp16"
    _names_first(report, "layer2.1.conv2")
    assert next(layer for layer in report.layers if layer.name == "layer2.1.conv2").fp16_overflow


def test_sensitivity_proposes_a_keep_float_set_that_meets_the_target(digits, digits_files, tmp_path):
    # Target 0: the full INT8 file loses a point or two on 200 images, so a set must be searched for.
    report = int8_sensitivity(
        digits_files["fp32"],
        Int8Options(digits["calibration"], target="cpu", size=64),
        digits["heldout"],
        max_top1_drop=0.0,
        max_images=200,
    )
    data = report.to_dict()
    assert len(data["blocks"]) == 11  # conv1, 9 blocks, fc
    assert {"name", "top1", "cosine", "cost"} <= set(data["blocks"][0])
    costs = [b["cost"] for b in data["blocks"]]
    assert costs == sorted(costs, reverse=True)
    assert data["keep_float"] == report.proposal.keep_float and report.met  # target 0 is reachable here
    # Applied, the set gives what the analysis measured, measured again on the same 200 images.
    (tmp_path / "keep.json").write_text(json.dumps(data))
    out = tmp_path / "kept.onnx"
    from export.quantize import read_keep_float

    int8 = Int8Options(digits["calibration"], target="cpu", size=64, **read_keep_float(str(tmp_path / "keep.json")))
    exported = export_onnx(
        resnet.load_model(digits["checkpoint"]), out, precision="int8", int8=int8, eval_data=digits["heldout"]
    )
    assert exported.model.quantization.get("keep_float", []) == report.keep_float
    assert lint_onnx(onnx.load(str(out))).passed
    with pytest.raises(ToolkitError, match="chose its layers for --int8-target cpu, not tensorrt"):
        read_keep_float(str(tmp_path / "keep.json"), "tensorrt")  # measured for another target
    other = resnet.load_model(digits["checkpoint"])  # the same network, one weight changed
    with torch.no_grad():
        other.fc.bias[0] += 1e-3
    with pytest.raises(ToolkitError, match="keep.json chose its layers on other weights than this model's"):
        export_onnx(other, tmp_path / "other.onnx", precision="int8", int8=int8, validate=False)
    assert not (tmp_path / "other.onnx").exists()
    from deploy import Predictor
    from deploy.datasets import read_image_folder
    from deploy.evaluate import evaluate

    with Predictor(out, device="cpu") as kept, Predictor(digits_files["fp32"], device="cpu") as fp32:
        again = evaluate(kept, read_image_folder(digits["heldout"]).subset(200), reference=fp32)
    assert 100 * (again.reference_top1 - again.top1) == pytest.approx(report.proposal.top1_drop, abs=1e-9)


def test_keep_float_leaves_those_layers_float_and_the_lint_knows(digits, tmp_path):
    model = resnet.load_model(digits["checkpoint"])
    for target in ("cpu", "tensorrt"):
        out = tmp_path / f"k_{target}.onnx"
        int8 = Int8Options(digits["calibration"], target=target, size=32, keep_float=("layer1.0.conv1", "layer3", "fc"))
        report = export_onnx(model, out, precision="int8", int8=int8, validate=False)
        record = report.model.quantization
        assert record["keep_float"] == ["layer1.0.conv1", "layer3", "fc"]
        assert "layer3.2.conv2" in record["float_nodes"] and "layer2.0.conv1" not in record["float_nodes"]
        proto = onnx.load(str(out))
        weights = {n.name: n.input[1] for n in proto.graph.node if n.op_type in ("Conv", "Gemm")}
        assert weights["layer1.0.conv1"] == "layer1.0.conv1.weight" and weights["fc"] == "fc.weight"  # float weights
        assert weights["layer1.0.conv2"].endswith("_DequantizeLinear_Output")
        assert lint_onnx(proto).passed
        # Without the record, the same graph breaks the contract: the lint reads the kept layers from it.
        del proto.metadata_props[:]
        assert not lint_onnx(proto).passed


@pytest.mark.parametrize(
    "args,message",
    [
        (["layers", "{a}"], "Missing argument 'MODEL_B'"),
        (["layers", "{a}", "{a}", "--random", 2, "--images", "{cal}"], "give --images DIR or --random N, not both"),
        (["layers", "{a}", "{tmp}/none.onnx"], "does not exist"),
        (
            ["layers", "{a}", "{other}"],
            "are different networks (resnet20_digits and resnet20_cifar10: shortcut A against B)",
        ),
        (["layers", "{a}", "{other100}"], "num_classes 10 against 100); compare two forms of one model"),
        (["layers", "{a}", "{a}", "--plot", "-"], "--plot writes a figure file; give it a file name, not '-'"),
        (["layers", "{a}", "{a}", "--plot", "{tmp}/out.txt"], "the figure is drawn as .png, .svg, .pdf"),
        (["sensitivity", "{a}", "--eval", "{cal}"], "Missing option '--calibration'"),
        (["layers", "{a}", "{a}", "--eval", "{cal}"], "No such option '--eval'"),
        (
            ["sensitivity", "{a}", "--calibration", "{cal}", "--eval", "{cal}", "--random", 2],
            "No such option '--random'",
        ),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(args, message, digits, digits_files, tmp_path):
    r20, r20_100 = tmp_path / "r20.pth", tmp_path / "r20_100.pth"
    torch.save(resnet.create(20, dataset="cifar10", shortcut="B").state_dict(), r20)
    torch.save(resnet.create(20, dataset="cifar100").state_dict(), r20_100)
    given = {
        "a": digits_files["fp32"],
        "cal": digits["calibration"],
        "tmp": tmp_path,
        "other": r20,
        "other100": r20_100,
    }
    fill = lambda a: str(a).format(**given)  # noqa: E731
    result = run(*map(fill, args))
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert fill(message) in line


def test_a_batch_beyond_the_memory_is_refused_before_it_runs(digits_files):
    from export.compare import compare_memory
    from toolkit.numbers import available_memory

    model = resnet.create(20, "cifar10")
    if compare_memory(model.architecture, model.input_spec, 4096) <= (available_memory() or 0) / 2:
        pytest.skip("this machine has the memory for ResNet-20 at batch 4096")
    result = run("layers", digits_files["fp32"], digits_files["fp32"], "--random", 8, "--batch", 4096)
    assert result.exit_code == 2 and "comparing every layer at --batch 4096 needs about" in result.output


def test_unreadable_images_are_named_not_dropped_silently(digits_files, digits, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted((digits["heldout"] / "4").iterdir())[:3]:
        (images / path.name).write_bytes(path.read_bytes())
    (images / "broken.png").write_bytes(b"not a png")
    result = run("layers", digits_files["fp32"], digits_files["fp32"], "--images", images)
    assert result.exit_code == 0, result.output
    assert "skipped 1 of 4 images" in result.output and "broken.png is not a readable image" in result.output


def test_the_spellings_before_the_subcommands_still_work_and_say_the_new_one(digits, digits_files, tmp_path):
    """`resnet-compare A B` and `resnet-compare --sensitivity FP32` (one more release)."""
    layers = CliRunner().invoke(compare_main, [str(digits_files["fp32"]), str(digits_files["fp32"]), "--random", "2"])
    assert layers.exit_code == 0 and "no layer diverges" in layers.output
    assert "resnet-compare: resnet-compare A B is now resnet-compare layers A B" in layers.output
    old = ["--sensitivity", digits_files["fp32"], "--calibration", digits["calibration"], "--eval", tmp_path / "x"]
    sensitivity = CliRunner().invoke(compare_main, [str(a) for a in old])
    assert sensitivity.exit_code == 2 and "image folder" in sensitivity.output  # parsed as the new command
    assert "resnet-compare --sensitivity FP32 is now resnet-compare sensitivity FP32" in sensitivity.output


@pytest.mark.parametrize("target", ["cpu", "tensorrt"])
def test_keeping_every_layer_float_is_refused_not_labelled_int8(target, digits, tmp_path):
    int8 = Int8Options(
        digits["calibration"], target=target, size=8, keep_float=("conv1", "layer1", "layer2", "layer3", "fc")
    )
    with pytest.raises(ToolkitError, match="keeps every convolution and the fc layer in float"):
        export_onnx(resnet.load_model(digits["checkpoint"]), tmp_path / "all.onnx", precision="int8", int8=int8)
    assert not (tmp_path / "all.onnx").exists()


def test_keep_float_names_that_match_nothing_are_refused(digits, tmp_path):
    int8 = Int8Options(digits["calibration"], size=8, keep_float=("layer9",))
    with pytest.raises(Exception, match="--keep-float 'layer9' names no layer of the graph"):
        export_onnx(resnet.load_model(digits["checkpoint"]), tmp_path / "x.onnx", precision="int8", int8=int8)
    assert not (tmp_path / "x.onnx").exists()


def test_the_docs_block_runs_as_shown(tour, readme):
    """docs/export.md's resnet-compare block, in the tour's folder after the README's tour (it starts
    from the tour's two exports): each command prints the lines shown (numbers aside);
    resnet-compare exits 1 when it names a layer."""
    # Which layer first leaves the threshold, and which blocks the search keeps, depend on the
    # calibration and the quantizer's rounding: those two lines are checked for what they are, the
    # rest as shown. (The "cpu" form's logits are the same with and without VNNI: test_int8.py.)
    outcome = ("  finding     ", "  keep float  ")
    assert all(done.returncode == 0 for _, _, done in tour.steps)
    page = type(readme)((Path(__file__).resolve().parents[2] / "docs" / "export.md").read_text())
    for command, shown in page.console(0):
        done = tour.run(command)
        compare = command.startswith("resnet-compare layers tour/digits.onnx")
        assert done.returncode in ((0, 1) if compare else (0,)), f"{command}\n{done.stderr}"
        printed = {readme.shape(line) for line in done.stdout.splitlines()}
        missing = [line for line in shown if not line.startswith(outcome) and readme.shape(line) not in printed]
        assert not missing, f"{command} no longer prints: {missing}"
        for prefix in outcome:
            if any(line.startswith(prefix) for line in shown):
                assert any(line.startswith(prefix) for line in done.stdout.splitlines()), f"{command}: no {prefix!r}"
        if compare:
            assert ("the first divergent layer is" in done.stdout) == (done.returncode == 1)
    assert (tour.folder / "tour" / "layers.png").is_file()
    proposal = json.loads((tour.folder / "tour" / "keep.json").read_text())
    assert proposal["met"] and proposal["proposal"]["top1_drop"] <= 0
    assert bool(proposal["keep_float"]) == (proposal["int8"]["top1_drop"] > 0)
