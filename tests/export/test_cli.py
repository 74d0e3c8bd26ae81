"""`resnet-export` through click's runner: output, files, exit statuses, one-line errors."""

import json

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

import resnet
from export.cli import main


def run(*args, cwd=None):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_export_prints_the_report_and_writes_the_default_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("--depth", 20, "--dataset", "cifar10", "--opset", 13)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "resnet20_cifar10.onnx").is_file()
    out = result.output
    assert "ONNX opset 13" in out and "input float32 [batch, 3, 32, 32]" in out
    assert "Slice 2" in out and "Pad 2" in out and "lint        passed" in out
    assert "validation  passed (max-error/scale" in out and "top-1 100.0%" in out


def test_fp16_default_name_and_io_note(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("--depth", 20, "--dataset", "cifar10", "--precision", "fp16")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "resnet20_cifar10_fp16.onnx").is_file()
    assert "fp16 (FP32 I/O, cast to FP16 at the edges)" in result.output
    assert "cosine" in result.output and "top-1 agreement" in result.output


def test_json_report_to_a_file_and_to_stdout(tmp_path):
    out = tmp_path / "m.onnx"
    result = run(
        "--depth", 20, "--dataset", "cifar10", "-o", out, "--json", tmp_path / "r.json", "--static-batch", "--batch", 2
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["path"] == str(out) and data["inputs"][0]["shape"] == [2, 3, 32, 32]
    result = run("--depth", 20, "--dataset", "cifar10", "-o", out, "--json", "-")
    assert json.loads(result.output)["validation"]["passed"] is True


def test_options_reach_the_file(tmp_path):
    out = tmp_path / "m.onnx"
    result = run(
        "--depth",
        18,
        "--shortcut",
        "A",
        "--num-classes",
        5,
        "--input-size",
        "64x96",
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.25,0.25,0.25",
        "-o",
        out,
        "--no-validate",
    )
    assert result.exit_code == 0, result.output
    assert "validation  skipped" in result.output
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert (props["shortcut"], props["num_classes"], props["input_height"], props["input_width"]) == (
        "A",
        "5",
        "64",
        "96",
    )
    assert props["mean"] == "[0.5, 0.5, 0.5]" and props["std"] == "[0.25, 0.25, 0.25]"


def test_weights_are_loaded(tmp_path, bn_randomizer):
    model = bn_randomizer(resnet.create(20, "cifar10"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "ckpt.pth")
    out = tmp_path / "m.onnx"
    assert run("--depth", 20, "--dataset", "cifar10", "--weights", tmp_path / "ckpt.pth", "-o", out).exit_code == 0
    fc_bias = next(t for t in onnx.load(str(out)).graph.initializer if t.name == "fc.bias")
    assert torch.equal(torch.from_numpy(onnx.numpy_helper.to_array(fc_bias).copy()), model.fc.bias.detach())


def test_validation_failure_exits_1_and_names_the_figure(tmp_path):
    out = tmp_path / "m.onnx"
    result = run("--depth", 20, "--dataset", "cifar10", "-o", out, "--atol", 0)
    assert result.exit_code == 1
    assert "max-error/scale" in result.output and "must be <= 0" in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--depth", 51], "depth 51 is not a registered imagenet ResNet; choose one of 18, 34, 50, 101, 152"),
        (["--depth", 50, "--opset", 9], "opset 9 is not supported; choose 11 to 25"),
        (["--depth", 50, "--batch", 0], "Invalid value for '--batch': must be at least 1 and at most 4096, got 0"),
        (["--depth", 50, "--dataset", "mnist"], "Invalid value for '--dataset'"),
        (
            ["--depth", 20, "--dataset", "cifar10", "--input-size", "big"],
            "input size is one positive number or HEIGHTxWIDTH",
        ),
        (["--depth", 20, "--dataset", "cifar10", "--mean", "1,2"], "--mean takes 3 comma-separated numbers"),
        (
            ["--depth", 20, "--dataset", "cifar10", "--min-cosine", 2],
            "Invalid value for '--min-cosine': must be at least 0 and at most 1, got 2",
        ),
        (
            ["--depth", 20, "--dataset", "cifar10", "--weights", "/no/such/file.pth"],
            "checkpoint /no/such/file.pth does not exist",
        ),
        (
            ["--depth", 20, "--dataset", "cifar10", "-o", "/no/such/folder/m.onnx"],
            "folder /no/such/folder does not exist",
        ),
        ([], "Missing option '--depth'"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(*args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("resnet-export: ")
    assert message in lines[0]
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_output_inside_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    result = run("--depth", 20, "--dataset", "cifar10", "-o", tmp_path / "file" / "m.onnx")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_mismatched_weights_exit_2_with_the_key_listing(tmp_path):
    torch.save(resnet.create(18).state_dict(), tmp_path / "r18.pth")
    result = run("--depth", 34, "--weights", tmp_path / "r18.pth", "-o", tmp_path / "m.onnx")
    assert result.exit_code == 2
    assert "missing" in result.output and "layer1.2.conv1.weight" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_help_names_the_opset_range():
    result = run("--help")
    assert result.exit_code == 0 and "(11-25)" in result.output and "Exit status" in result.output


def test_random_weights_are_the_seeds_in_every_process(tmp_path, monkeypatch):
    """`--seed` (default 0): two runs without --weights write the same network; another seed, another."""
    from onnx import numpy_helper

    monkeypatch.chdir(tmp_path)
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        torch.manual_seed(1000 + ord(name))  # the process's own random state must not matter
        assert (
            run("--depth", 20, "--dataset", "cifar10", "--seed", seed, "--no-validate", "-o", f"{name}.onnx").exit_code
            == 0
        )
    weights = {name: [numpy_helper.to_array(t) for t in onnx.load(f"{name}.onnx").graph.initializer] for name in "abc"}
    assert all(np.array_equal(x, y) for x, y in zip(weights["a"], weights["b"], strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(weights["a"], weights["c"], strict=True))
