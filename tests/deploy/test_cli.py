"""`resnet-deploy` through click's runner."""

import json
import re

import pytest
from click.testing import CliRunner

from deploy.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_predict_prints_each_image(models, images):
    from deploy import Predictor

    result = run("predict", models["files"]["cifar"], images["red"], images["gray"], "--top-k", 2)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    with Predictor(models["files"]["cifar"]) as predictor:  # the backend line is the runtime's own
        assert lines[0] == f"# {predictor.backend}" and len(lines) == 3
    assert lines[1].startswith(f"{images['red']}: [")


def test_predict_verbose_says_what_the_first_prediction_cost(models, images):
    result = run("predict", models["files"]["cifar"], images["red"], "--verbose")
    assert result.exit_code == 0, result.output
    (cold,) = [line for line in result.output.splitlines() if line.startswith("# cold start: ")]
    figures = dict(re.findall(r"(import|open|first run) (\d+\.\d) ms", cold))
    # the import is known only through the installed command (tests/deploy/test_board.py), not click's runner
    assert {"open", "first run"} <= set(figures) and float(figures["first run"]) > 0


def test_predict_carries_on_past_a_bad_image(models, images):
    result = run(
        "predict", models["files"]["cifar"], images["red"], images["not_an_image_jpg"], images["rgba"], "--json"
    )
    assert result.exit_code == 1
    data = json.loads(result.output[: result.output.rindex("}") + 1])
    sources = [p["source"] for p in data["predictions"]]
    assert sources == [str(images["red"]), str(images["not_an_image_jpg"]), str(images["rgba"])]
    assert "error" in data["predictions"][1] and "not a readable image" in data["predictions"][1]["error"]
    assert (
        len(data["predictions"][0]["indices"]) == 5
        and "resnet-deploy: 1 of 3 images could not be read" in result.output
    )


def test_export_to_predict_and_triton_in_three_commands(tmp_path, images, monkeypatch):
    from export.cli import main as export_main

    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(export_main, ["--depth", "20", "--dataset", "cifar10"]).exit_code == 0
    result = run("predict", "resnet20_cifar10.onnx", images["red"])
    assert result.exit_code == 0 and str(images["red"]) in result.output
    result = run("triton", "resnet20_cifar10.onnx", "--repository", "models", "--max-batch", 16)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "models" / "resnet20_cifar10" / "config.pbtxt").is_file()
    assert (tmp_path / "models" / "resnet20_cifar10" / "1" / "model.onnx").is_file()


def test_bundle_then_predict_with_labels(models, images, tmp_path):
    (tmp_path / "labels.txt").write_text("\n".join(f"thing{i}" for i in range(10)))
    result = run("bundle", models["files"]["cifar"], "-o", tmp_path / "b", "--labels", tmp_path / "labels.txt")
    assert result.exit_code == 0, result.output
    result = run("predict", tmp_path / "b", images["red"], "--top-k", 1)
    assert result.exit_code == 0 and "thing" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["predict", "{tmp}/missing.onnx", "x.png"], "does not exist"),
        (["predict", "{cifar}"], "Missing argument 'IMAGES...'"),
        (["bundle", "{cifar}", "-o", "{tmp}/no/such/parent/b"], "does not exist"),
        (["triton", "{cifar}", "--repository", "{tmp}/repo", "--name", "a/b"], "must be letters, digits"),
        (
            ["triton", "{cifar}", "--repository", "{tmp}/repo", "--preferred-batch", "x"],
            "--preferred-batch takes comma-separated integers",
        ),
        (["predict", "{cifar}", "x.png", "--backend", "tensorrt"], "is not an engine"),
        (["nonsense"], "No such command 'nonsense'"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(args, message, models, tmp_path):
    args = [a.format(tmp=tmp_path, cifar=models["files"]["cifar"]) for a in args]
    result = run(*args)
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("resnet-deploy: ") and message in line


def test_tampered_bundle_exit_2(models, images, tmp_path):
    assert run("bundle", models["files"]["cifar"], "-o", tmp_path / "b").exit_code == 0
    model = tmp_path / "b" / "model.onnx"
    model.write_bytes(model.read_bytes()[:-10] + b"0123456789")
    result = run("predict", tmp_path / "b", images["red"])
    assert result.exit_code == 2 and "does not match its checksum" in result.output


def test_max_batch_above_the_engines_largest_batch_exit_2(engine_manifest, tmp_path, models):
    import hashlib

    from deploy.artifacts.manifest import BatchRange, write_manifest

    engine = tmp_path / "e.plan"
    engine.write_bytes(b"x")
    write_manifest(
        engine_manifest(engine_sha256=hashlib.sha256(b"x").hexdigest(), batches=BatchRange(1, 8, 16)), engine
    )
    result = run("triton", engine, "--repository", tmp_path / "repo", "--max-batch", 64)
    assert result.exit_code == 2 and "above engine e.plan's largest batch 16" in result.output


def test_a_bundle_runs_in_every_backend_offered_for_it(models, images, tmp_path):
    """`--backend auto` was offered for a bundle and then refused; a bundle holds no checkpoint, so
    `pytorch` is refused with the choices that do apply."""
    from deploy import Predictor

    assert run("bundle", models["files"]["cifar"], "-o", tmp_path / "b").exit_code == 0
    auto = run("predict", tmp_path / "b", images["red"], "--backend", "auto", "--top-k", 1)
    assert auto.exit_code == 0, auto.output
    with Predictor(models["files"]["cifar"], backend="auto") as predictor:  # the rule for its ONNX file
        assert auto.output.splitlines()[0] == f"# {predictor.backend}"
    refused = run("predict", tmp_path / "b", images["red"], "--backend", "pytorch")
    assert refused.exit_code == 2
    (line,) = refused.output.strip().splitlines()
    assert "a bundle holds an ONNX file (and an engine where one was built), no PyTorch checkpoint" in line
    assert "onnxruntime, openvino, tensorrt, auto, not pytorch" in line


def test_an_option_the_backend_ignores_is_one_sentence_and_exit_2(models, images):
    result = run("predict", models["files"]["cifar"], images["red"], "--precision", "bf16")
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert "ONNX Runtime computes a file in the precision it was exported or built in" in line
    assert "--backend openvino" in line


def test_the_spellings_before_triton_backend_still_work_and_say_the_new_one(models, tmp_path):
    """`--backend` now names what runs a model everywhere; Triton's own backend is `--triton-backend`.
    For one release `triton --backend python` and `--runtime X` (bundle, triton) still work."""
    old = run("triton", models["files"]["cifar"], "--repository", tmp_path / "r", "--backend", "python", "--cpu")
    assert old.exit_code == 0, old.output
    assert "--backend python is now --triton-backend python" in old.output
    assert 'backend: "python"' in (tmp_path / "r" / "resnet20_cifar10" / "config.pbtxt").read_text()
    new = run("triton", models["files"]["cifar"], "--repository", tmp_path / "n", "--triton-backend", "python", "--cpu")
    assert new.exit_code == 0 and "is now" not in new.output
    bundled = run("bundle", models["files"]["cifar"], "-o", tmp_path / "b", "--runtime", "openvino")
    assert bundled.exit_code == 0, bundled.output
    assert (
        "resnet-deploy: --runtime is now --backend" in bundled.output or "--runtime is now --backend" in bundled.output
    )
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["runtime"]["backend"] == "openvino"
    assert f"on the board: resnet-deploy predict {tmp_path / 'b'} IMAGE" in bundled.output  # no engine to build
    assert "resnet-build" not in bundled.output


def test_ray_stays_out_of_every_other_path():
    """Ray is imported only inside a Ray Serve replica (deploy.ray_serve.replica) and by the local
    cluster helper: the commands, the Triton model, the old paths of both and the benchmark load
    none of it."""
    import subprocess
    import sys

    probe = (
        "import sys, deploy.cli, benchmark.cli, deploy.ray_serve, deploy.triton.kubernetes, deploy.serving.backend, "
        "deploy.triton.python_model, deploy.ray_serve.dev_cluster; "
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
