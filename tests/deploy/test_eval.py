"""Accuracy on real images: the trained digits model through every stage, and resnet-eval."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import resnet
from deploy import Predictor
from deploy.cli import eval_main
from deploy.datasets import read_image_folder
from deploy.evaluate import evaluate


@pytest.fixture(scope="module")
def files(tmp_path_factory, digits_files):
    """A folder holding the digits model's fp32.onnx and fp16.onnx (copies of the session's)."""
    folder = tmp_path_factory.mktemp("digits")
    for name in ("fp32", "fp16"):
        (folder / f"{name}.onnx").write_bytes(digits_files[name].read_bytes())
    return folder


def test_the_checkpoint_knows_its_data_and_reaches_its_recorded_accuracy(digits):
    model = resnet.load_model(digits["checkpoint"])
    assert model.dataset == "digits" and model.input_spec == resnet.DIGITS
    data = read_image_folder(digits["heldout"])
    assert len(data) == digits["record"]["heldout"] == 500 and data.classes == [str(i) for i in range(10)]
    with Predictor(digits["checkpoint"]) as predictor:
        report = evaluate(predictor, data)
    assert report.top1 == pytest.approx(digits["record"]["heldout_top1"]) and report.top1 >= 0.99
    assert report.topk >= report.top1 and report.k == 5 and report.unreadable == []


def test_onnx_fp32_predicts_exactly_what_pytorch_does_on_every_image(files, digits):
    data = read_image_folder(digits["heldout"])
    with Predictor(files / "fp32.onnx", device="cpu") as onnx_file, Predictor(digits["checkpoint"]) as pytorch:
        report = evaluate(onnx_file, data, reference=pytorch)
    assert report.top1_agreement == 1.0 and report.top1 == report.reference_top1
    assert report.max_probability_difference < 1e-4


def test_fp16_agrees_with_fp32_on_at_least_99_8_percent(files, digits):
    data = read_image_folder(digits["heldout"])
    with Predictor(files / "fp16.onnx", device="cpu") as fp16, Predictor(files / "fp32.onnx", device="cpu") as fp32:
        report = evaluate(fp16, data, reference=fp32)
    assert report.top1_agreement >= 0.998 and abs(report.top1 - report.reference_top1) <= 0.002


def run(*args):
    return CliRunner().invoke(eval_main, [str(a) for a in args])


def test_resnet_eval_prints_and_writes_the_figures(files, digits, tmp_path):
    result = run(
        files / "fp32.onnx", digits["heldout"], "--reference", digits["checkpoint"], "--json", tmp_path / "e.json"
    )
    assert result.exit_code == 0, result.output
    assert "500 images, 10 classes" in result.output and "top-1       99.60%" in result.output
    assert "agreement 100.00%" in result.output
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["images"] == 500 and data["top1"] == pytest.approx(0.996) and data["top1_agreement"] == 1.0
    # --min-top1 for a CI pipeline: below it, exit 1
    result = run(files / "fp32.onnx", digits["heldout"], "--min-top1", 0.999)
    assert result.exit_code == 1 and "top-1 99.60% is below --min-top1 99.90%" in result.output
    # a checkpoint that doesn't record its model, described with --depth
    result = run(digits["checkpoint"], digits["heldout"], "--depth", 20, "--dataset", "digits", "--json", "-")
    assert result.exit_code == 0 and json.loads(result.output)["top1"] == pytest.approx(0.996)


def test_a_bad_image_is_counted_and_named_never_fatal(files, digits, tmp_path):
    data = tmp_path / "data"
    for digit in ("3", "7"):
        shutil.copytree(digits["heldout"] / digit, data / digit)
    (data / "7" / "broken.png").write_bytes(b"not a png")
    result = run(files / "fp32.onnx", data)
    assert result.exit_code == 0, result.output
    assert "(1 unreadable, skipped)" in result.output and "broken.png is not a readable image" in result.output


def test_class_folders_no_label_names_are_scored_in_sorted_order_and_said_so(files, digits, tmp_path):
    data = tmp_path / "abc"
    for name, digit in (("a", "0"), ("b", "1"), ("c", "2")):
        shutil.copytree(digits["heldout"] / digit, data / name)
    result = run(files / "fp32.onnx", data)
    assert result.exit_code == 0, result.output
    assert "no labels name the class folders" in result.output and "(a = 0, b = 1, c = 2)" in result.output


def test_class_folders_named_after_the_labels_map_to_their_indices(files, digits, tmp_path):
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    (tmp_path / "labels.txt").write_text("\n".join(names) + "\n")
    for index, name in enumerate(names):
        shutil.copytree(digits["heldout"] / str(index), tmp_path / "named" / name)
    # sorted by name, "eight" would be class 0: the labels put each folder at its own index
    result = run(files / "fp32.onnx", tmp_path / "named", "--labels", tmp_path / "labels.txt", "--json", "-")
    assert result.exit_code == 0 and json.loads(result.output)["top1"] == pytest.approx(0.996)


@pytest.mark.parametrize(
    "data,message",
    [
        ("calibration", "has no class folders"),
        ("nowhere", "does not exist"),
    ],
)
def test_folders_it_cannot_score_are_one_sentence(data, message, files, digits):
    folder = digits[data] if data in digits else files / data
    result = run(files / "fp32.onnx", folder)
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1


def test_image_sets_are_sorted_and_subsets_deterministic(digits):
    flat = read_image_folder(digits["calibration"], labeled=False)
    assert flat.targets is None and len(flat) == 200 and flat.files == sorted(flat.files)
    a, b = flat.subset(50), flat.subset(50)
    assert a.files == b.files and len(a) == 50 and a.files[0] == flat.files[0] and a.files[-1] == flat.files[-1]
    assert a.fingerprint() == b.fingerprint() != flat.fingerprint()
    labelled = read_image_folder(digits["heldout"])
    assert np.bincount(labelled.targets).tolist() == [
        len(list((digits["heldout"] / str(i)).glob("*.png"))) for i in range(10)
    ]
