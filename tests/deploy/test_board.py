"""A board without PyTorch, for real: a virtual environment made the way a bundle's README says
(the project installed from a copy of this checkout with its `cpu` and `images` extras; pip's cache
allowed), in which the board's commands run on the digits model and answer as this environment
does, and the commands that need PyTorch refuse in one sentence. One environment for the test run
(about 10 s with pip's cache; the first install on a machine downloads NumPy and ONNX Runtime)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deploy import Predictor
from deploy.bundle import write_bundle

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "tests" / "data" / "digits"
IMAGES = sorted((DIGITS / "heldout").glob("*/*.png"))[::50]  # ten held-out scans, one of each class


@pytest.fixture(scope="module")
def board(tmp_path_factory, digits_files):
    """The board's environment (its bin folder) and a bundle of the digits INT8 file."""
    root = tmp_path_factory.mktemp("board")
    source = root / "toolkit"  # a copy: pip builds in the source tree, which must stay clean
    ignore = shutil.ignore_patterns(
        ".venv", ".git", "tests", "__pycache__", "*.egg-info", "build", "tour", "demo-output"
    )
    shutil.copytree(ROOT, source, ignore=ignore)
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    bin_folder = root / "venv" / "bin"
    install = [str(bin_folder / "pip"), "install", "--quiet", "--disable-pip-version-check", f"{source}[cpu,images]"]
    done = subprocess.run(install, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    bundle = write_bundle(digits_files["cpu"], root / "bundle").folder
    return {"bin": bin_folder, "bundle": bundle, "folder": root}


def board_run(board, command: str, *args, check: bool = True) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(board["bin"] / command), *map(str, args)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=board["folder"],
    )
    if check:
        assert done.returncode == 0, f"{command} {args}: {done.stderr}"
    return done


def test_the_board_install_has_no_pytorch(board):
    listed = board_run(board, "pip", "list", "--format", "json").stdout
    names = {package["name"].lower() for package in json.loads(listed)}
    assert "torch" not in names and {"onnxruntime", "numpy", "pillow", "resnet-deploy-toolkit"} <= names
    probe = (
        "import sys; from deploy.runtimes.gpu import cuda_available; print(cuda_available(), 'torch' in sys.modules)"
    )
    assert board_run(board, "python", "-c", probe).stdout.split() == ["False", "False"]


def test_predictions_on_the_board_are_the_workshops(board):
    """The bundle, predicted on the board (`--json`, with its cold start) and here: the same classes
    and scores (the same ONNX Runtime on the same file)."""
    done = board_run(board, "resnet-deploy", "predict", board["bundle"], *IMAGES, "--top-k", 3, "--json")
    answered = json.loads(done.stdout)
    with Predictor(board["bundle"]) as here:
        expected = here.predict(IMAGES, top_k=3)
    for got, want in zip(answered["predictions"], expected, strict=True):
        assert got["indices"] == want.indices
        assert np.allclose(got["scores"], want.scores, atol=1e-6)
    cold = answered["cold_start"]
    assert set(cold) == {"import_s", "open_s", "first_run_s"} and all(value > 0 for value in cold.values())


def test_evaluation_benchmark_and_bundles_run_on_the_board(board, digits_files, tmp_path):
    from deploy.evaluate import evaluate_model

    done = board_run(board, "resnet-eval", board["bundle"], DIGITS / "heldout", "--json", "-")
    assert json.loads(done.stdout)["top1"] == evaluate_model(board["bundle"], DIGITS / "heldout").top1
    bench = board_run(board, "resnet-bench", board["bundle"] / "model.onnx", "--iterations", 5, "--warmup", 1,
                      "--no-peak", "--json", "-")  # fmt: skip
    (measured,) = json.loads(bench.stdout)["measurements"]
    assert measured["iterations"] == 5 and measured["images_per_second"] > 0
    board_run(board, "resnet-deploy", "bundle", digits_files["fp32"], "-o", board["folder"] / "b32")
    here = write_bundle(digits_files["fp32"], tmp_path / "b32")
    written = json.loads((board["folder"] / "b32" / "manifest.json").read_text())["files"]
    # The same files, byte for byte, but model.ort: ONNX Runtime's writer is not byte-reproducible
    # (two writes of one model differ in ~500 bytes), so it is compared by size and answers.
    ort_format = written.pop("model.ort"), here.manifest["files"]["model.ort"]
    assert written == {k: v for k, v in here.manifest["files"].items() if k != "model.ort"}
    assert ort_format[0]["bytes"] == ort_format[1]["bytes"]
    with Predictor(board["folder"] / "b32") as there, Predictor(here.folder) as ours:
        batch = np.stack([ours.preprocess(image) for image in IMAGES])
        assert there.runtime.path.name == ours.runtime.path.name == "model.ort"
        assert np.array_equal(there.runtime.run(batch), ours.runtime.run(batch))


@pytest.mark.parametrize(
    "command,args",
    [
        ("resnet-export", ["--depth", "20", "--dataset", "digits"]),
        ("resnet-eval", ["{bundle}", str(DIGITS / "heldout"), "--reference", str(DIGITS / "resnet20_digits.pth")]),
        ("resnet-bench", ["{bundle}/model.onnx", "--vs", "pytorch", "--no-peak"]),
        ("resnet-compare", ["layers", str(DIGITS / "resnet20_digits.pth"), "{bundle}/model.onnx"]),
    ],
)
def test_what_needs_pytorch_says_so_in_one_sentence(board, command, args):
    done = board_run(board, command, *(a.format(bundle=board["bundle"]) for a in args), check=False)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "torch" in line and "pip install '.[export]'" in line and "Traceback" not in done.stderr


def test_serving_commands_on_the_board_write_or_refuse_in_one_sentence(board, digits_files):
    """Issue 35, item 6: on the board install (no tritonclient, no Triton server, no Ray),
    `resnet-deploy kubernetes` reads the repository's config.pbtxt itself and writes its manifests;
    `resnet-deploy serve` and `python -m benchmark.beyond_one_machine` (which ended in
    `ModuleNotFoundError: tritonclient`) refuse in one line naming the extra to install."""
    repository, manifests = board["folder"] / "platform", board["folder"] / "k8s"
    board_run(board, "resnet-deploy", "triton", digits_files["fp32"], "--repository", repository, "--name", "digits")
    board_run(board, "resnet-deploy", "kubernetes", repository, "-o", manifests)
    assert (manifests / "triton.yaml").is_file()
    python = board_run(board, "resnet-deploy", "triton", digits_files["fp32"], "--repository", board["folder"] / "py",
                       "--triton-backend", "python")  # fmt: skip
    assert python.returncode == 0
    for command, args in (
        ("resnet-deploy", ["serve", board["folder"] / "py"]),
        ("python", ["-m", "benchmark.beyond_one_machine", digits_files["fp32"], "--duration", "0.3"]),
    ):
        done = board_run(board, command, *args, check=False)
        assert done.returncode == 2, (args, done.stderr)
        (line,) = done.stderr.strip().splitlines()
        assert "pip install '.[serve]'" in line and "Traceback" not in done.stderr, line


def test_every_command_has_its_help_on_the_board(board):
    """Issue 35, item 7: `resnet-export --help` needed PyTorch; a command's help never does."""
    for command in ("resnet-export", "resnet-build", "resnet-compare", "resnet-bench", "resnet-deploy", "resnet-eval"):
        done = board_run(board, command, "--help")
        assert done.stdout.startswith("Usage:") and "Traceback" not in done.stderr, (command, done.stderr)
