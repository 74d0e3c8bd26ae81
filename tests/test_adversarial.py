"""Hostile and careless input through the real commands: every case is one sentence with the
promised exit status, and nothing outside the intended output changes (each test hashes the
folder before and after). Small CIFAR models and crafted files keep it fast."""

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import resnet
from benchmark.cli import main as bench_main
from deploy.cli import main as deploy_main
from export import export_onnx
from export.cli import main as export_main

PIL = pytest.importorskip("PIL", reason="Pillow is needed for the image cases: pip install '.[images]'")
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> dict:
    """Every entry below `folder`: its content hash (or link target, or "folder") and mode."""
    state = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            state[key] = ("link", os.readlink(path))
        elif path.is_dir():
            state[key] = ("folder", path.stat().st_mode)
        else:
            state[key] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mode)
    return state


def run(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


def one_sentence(result, status: int, *fragments: str) -> str:
    """The output is one line (click may print an empty line first) with the status and fragments."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == status, result.output
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares width x height and holds no pixels (PIL reads the size lazily)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adversarial")
    model = resnet.create(20, "cifar10")
    export_onnx(model, folder / "r20.onnx", validate=False)
    export_onnx(resnet.create(18, num_classes=10), folder / "r18.onnx", validate=False)
    Image.new("RGB", (40, 30), (200, 30, 40)).save(folder / "good.png")
    torch.save(model.state_dict(), folder / "r20.pth")
    return folder


@pytest.fixture
def place(tmp_path, work, monkeypatch):
    """A fresh working folder holding copies of the model and a good image; the test runs in it."""
    for name in ("r20.onnx", "r18.onnx", "good.png", "r20.pth"):
        (tmp_path / name).write_bytes((work / name).read_bytes())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_bundle(place: Path, labels=True) -> Path:
    if labels:
        (place / "labels.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n")
    args = ["bundle", "r20.onnx", "-o", "b"] + (["--labels", "labels.txt"] if labels else [])
    assert run(deploy_main, *args).exit_code == 0
    return place / "b"


def rewrite_manifest(bundle: Path, change) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    change(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


# ---------------------------------------------------------------- security: bundles hold their own files


@pytest.mark.parametrize("member", ["labels.txt", "model.onnx"])
def test_a_bundle_member_that_is_a_symlink_is_refused(member, place):
    bundle = make_bundle(place)
    outside = place / f"outside-{member}"
    outside.write_bytes((bundle / member).read_bytes() if member == "model.onnx" else b"root:x:0:0\n" * 10)
    (bundle / member).unlink()
    (bundle / member).symlink_to(outside)
    rewrite_manifest(
        bundle,
        lambda m: m["files"][member].update(
            sha256=hashlib.sha256(outside.read_bytes()).hexdigest(), bytes=outside.stat().st_size
        ),
    )
    before = snapshot(place)
    result = run(deploy_main, "predict", bundle, "good.png")
    one_sentence(result, 2, f"{member} is a symbolic link")
    assert "root:x" not in result.output and snapshot(place) == before


def test_a_symlinked_manifest_is_refused(place):
    bundle = make_bundle(place)
    (place / "elsewhere.json").write_bytes((bundle / "manifest.json").read_bytes())
    (bundle / "manifest.json").unlink()
    (bundle / "manifest.json").symlink_to(place / "elsewhere.json")
    before = snapshot(place)
    one_sentence(run(deploy_main, "predict", bundle, "good.png"), 2, "manifest.json is a symbolic link")
    assert snapshot(place) == before


# ---------------------------------------------------------------- data loss


def test_an_unwritable_second_output_stops_the_export_before_the_first_is_touched(place):
    (place / "keep.onnx").write_bytes(b"the user's model")
    before = snapshot(place)
    result = run(export_main, "--depth", 20, "--dataset", "cifar10", "-o", "keep.onnx", "--json", "nofolder/r.json")
    one_sentence(result, 2, "cannot write nofolder/r.json: folder nofolder does not exist")
    assert snapshot(place) == before


def test_benchmark_outputs_are_checked_before_measuring(place):
    before = snapshot(place)
    result = run(bench_main, "r20.onnx", "--iterations", 1, "--no-peak", "--json", "r.json", "--csv", "no/r.csv")
    one_sentence(result, 2, "cannot write no/r.csv")
    assert snapshot(place) == before
    result = run(bench_main, "r20.onnx", "--iterations", 1, "--no-peak", "--json", "r20.onnx")
    one_sentence(result, 2, "it is an input of this command")
    assert snapshot(place) == before


@pytest.mark.parametrize(
    "target,message",
    [
        ("userdata", "userdata exists and is not a bundle (--force replaces only a bundle this toolkit wrote)"),
        (".", "is the current folder or holds it"),
        ("..", "is the current folder or holds it"),
    ],
)
def test_force_replaces_only_a_bundle(target, message, place):
    (place / "userdata").mkdir()
    (place / "userdata" / "thesis.txt").write_text("four years of work")
    before = snapshot(place)
    one_sentence(run(deploy_main, "bundle", "r20.onnx", "-o", target, "--force"), 2, message)
    assert snapshot(place) == before


def test_force_refuses_a_folder_holding_the_model_and_replaces_a_real_bundle(place):
    (place / "m").mkdir()
    (place / "m" / "r20.onnx").write_bytes((place / "r20.onnx").read_bytes())
    before = snapshot(place)
    one_sentence(run(deploy_main, "bundle", "m/r20.onnx", "-o", "m", "--force"), 2, "holds r20.onnx, an input")
    assert snapshot(place) == before
    make_bundle(place, labels=False)
    assert run(deploy_main, "bundle", "r18.onnx", "-o", "b", "--force").exit_code == 0
    assert json.loads((place / "b" / "manifest.json").read_text())["model"]["name"] == "resnet18"


def test_triton_force_replaces_only_a_triton_model_and_a_failed_run_leaves_no_repository(place):
    (place / "repo" / "r20").mkdir(parents=True)
    (place / "repo" / "r20" / "notes.txt").write_text("not a model")
    before = snapshot(place)
    one_sentence(
        run(deploy_main, "triton", "r20.onnx", "--repository", "repo", "--name", "r20", "--force"),
        2,
        "is not a Triton model",
    )
    assert snapshot(place) == before
    assert run(deploy_main, "triton", "r20.onnx", "--repository", "repo2", "--name", "r20").exit_code == 0
    assert run(deploy_main, "triton", "r18.onnx", "--repository", "repo2", "--name", "r20", "--force").exit_code == 0
    (place / "three.txt").write_text("a\nb\nc\n")
    before = snapshot(place)
    one_sentence(
        run(deploy_main, "triton", "r20.onnx", "--repository", "new/deeper/repo", "--labels", "three.txt"),
        2,
        "3 labels for a model with 10 classes",
    )
    assert snapshot(place) == before  # no new/deeper/repo left behind


def test_a_read_only_output_is_refused_and_keeps_its_mode(place):
    (place / "locked.onnx").write_bytes(b"keep me")
    os.chmod(place / "locked.onnx", 0o444)
    before = snapshot(place)
    one_sentence(run(export_main, "--depth", 20, "--dataset", "cifar10", "-o", "locked.onnx"), 2, "read-only")
    assert snapshot(place) == before
    os.chmod(place / "locked.onnx", 0o640)  # writable, private: replaced, and stays private
    assert run(export_main, "--depth", 20, "--dataset", "cifar10", "-o", "locked.onnx").exit_code == 0
    assert (place / "locked.onnx").stat().st_mode & 0o777 == 0o640


def launch(command: str, *args, cwd: Path) -> subprocess.Popen:
    code = f"import sys; from toolkit.launch import launch; sys.argv[0] = {command!r}; launch({command!r})"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_during_an_export_leaves_no_staging_folder(place):
    before = snapshot(place)
    process = launch("resnet-export", "--depth", 110, "--dataset", "cifar10", "-o", "big.onnx", cwd=place)
    deadline = time.time() + 120
    while not list(place.glob(".staging-*")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, "the export finished before it could be stopped"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    assert snapshot(place) == before


@pytest.mark.parametrize("stop,status,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_a_signal_while_torch_is_importing_is_one_line(stop, status, word, place):
    process = launch("resnet-export", "--depth", 20, "--dataset", "cifar10", cwd=place)
    time.sleep(0.4)  # the launcher is up; torch takes longer than this to import
    process.send_signal(stop)
    out, err = process.communicate(timeout=60)
    assert process.returncode == status, err
    assert "Traceback" not in err and word in err and len(err.strip().splitlines()) == 1
    assert not list(place.glob("*.onnx*")) or {p.name for p in place.glob("*.onnx*")} == {"r20.onnx", "r18.onnx"}


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run_and_others_are_kept(place):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = place / ".staging-killed"
    stale.mkdir()
    (stale / "big.onnx").write_bytes(b"x" * 1000)
    (stale / ".resnet-deploy-toolkit-staging").write_text(
        json.dumps({"pid": dead.pid, "host": __import__("socket").gethostname(), "created": time.time() - 60})
    )
    foreign = place / ".staging-someone-elses"
    foreign.mkdir()
    (foreign / "file").write_text("not ours")
    result = run(export_main, "--depth", 20, "--dataset", "cifar10", "-o", "out.onnx", "--no-validate")
    assert result.exit_code == 0, result.output
    assert not stale.exists() and foreign.exists()
    assert f"note: removed {stale}" in result.output or "note: removed .staging-killed" in result.output


# ---------------------------------------------------------------- crashes, hangs, runaway memory


def test_a_decompression_bomb_and_an_elongated_image_are_named_and_the_others_predicted(place):
    png_header_only(place / "bomb.png", 20000, 20000)
    Image.new("L", (1, 3000), 128).save(place / "thin.png")
    result = run(deploy_main, "predict", "r18.onnx", "good.png", "bomb.png", "thin.png", "good.png", "--json")
    assert result.exit_code == 1 and "Traceback" not in result.output
    data = json.loads(result.output[: result.output.rindex("}") + 1])
    sources = [p["source"] for p in data["predictions"]]
    assert sources == ["good.png", "bomb.png", "thin.png", "good.png"]  # the repeated image gets its own line
    assert "indices" in data["predictions"][0] and "indices" in data["predictions"][3]
    assert "too large to decode safely" in data["predictions"][1]["error"]
    assert "too elongated" in data["predictions"][2]["error"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--duration", "nan"], "Invalid value for '--duration': must be a finite number, got nan"),
        (["--duration", "inf"], "Invalid value for '--duration': must be a finite number"),
        (["--warmup", "nans"], "--warmup seconds must be a finite number"),
        (["--warmup", "infs"], "--warmup seconds must be a finite number"),
        (["--threads", "100000"], "Invalid value for '--threads': must be at least 1 and at most 1024, got 100000"),
        (["--batch", "100000000"], "--batch must be at least 1 and at most 4096, got 100000000"),
        (["--peak-tflops", "nan"], "Invalid value for '--peak-tflops': must be a finite number"),
        (["--seed", "-1"], "Invalid value for '--seed'"),
    ],
)
def test_benchmark_numbers_are_finite_and_bounded(args, message, place):
    before = snapshot(place)
    one_sentence(run(bench_main, "r20.onnx", "--no-peak", *args), 2, message)
    assert snapshot(place) == before


@pytest.mark.parametrize(
    "args,message",
    [
        (["--input-size", "10000"], "input size (pixels per side) must be at least 8 and at most 2048, got 10000"),
        (["--input-size", "100000x100000"], "must be at least 8 and at most 2048"),
        (["--num-classes", "99999999999"], "Invalid value for '--num-classes'"),
        (["--mean", "nan,0,inf"], "mean values must be a finite number"),
        (["--std", "0.2,0,0.2"], "std values must be above 0"),
        (["--atol", "nan"], "Invalid value for '--atol': must be a finite number"),
        (["--batch", "100000"], "Invalid value for '--batch'"),
    ],
)
def test_export_numbers_are_finite_and_bounded(args, message, place):
    before = snapshot(place)
    one_sentence(run(export_main, "--depth", 20, "--dataset", "cifar10", *args), 2, message)
    assert snapshot(place) == before


@pytest.mark.parametrize(
    "args,message",
    [
        (["--max-batch", "99999999999999999999"], "--max-batch must be at least 0 and at most 2147483647"),
        (["--instances", "99999999999999999999"], "--instances must be at least 1 and at most 2147483647"),
        (["--max-queue-delay-us", "-5"], "--max-queue-delay-us must be at least 0"),
    ],
)
def test_triton_numbers_fit_the_schema(args, message, place):
    before = snapshot(place)
    one_sentence(run(deploy_main, "triton", "r20.onnx", "--repository", "repo", *args), 2, message)
    assert snapshot(place) == before


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda m: m["files"].update({"model.onnx": "abc"}), "describes model.onnx wrongly"),
        (lambda m: m["files"]["model.onnx"].pop("bytes"), "describes model.onnx wrongly"),
        (
            lambda m: m["files"]["model.onnx"].update(bytes=str(m["files"]["model.onnx"]["bytes"])),
            "describes model.onnx wrongly",
        ),
        (lambda m: m.update(files=list(m["files"])), "is not a readable bundle manifest"),
        (
            lambda m: m["files"].update({"../r20.onnx": m["files"]["model.onnx"]}),
            "which is not a file of the bundle folder",
        ),
    ],
)
def test_a_malformed_bundle_manifest_is_one_sentence(change, message, place):
    bundle = make_bundle(place)
    rewrite_manifest(bundle, change)
    before = snapshot(place)
    one_sentence(run(deploy_main, "predict", bundle, "good.png"), 2, message)
    assert snapshot(place) == before


@pytest.mark.parametrize(
    "command",
    [
        ["predict", "r20.onnx", "good.png", "--labels", "latin1.txt"],
        ["bundle", "r20.onnx", "-o", "b", "--labels", "latin1.txt"],
        ["triton", "r20.onnx", "--repository", "repo", "--labels", "latin1.txt"],
    ],
)
def test_labels_that_are_not_utf8_are_one_sentence(command, place):
    (place / "latin1.txt").write_bytes("\n".join(f"caf\xe9 {i}" for i in range(10)).encode("latin-1"))
    before = snapshot(place)
    one_sentence(run(deploy_main, *command), 2, "labels file latin1.txt is not UTF-8 text")
    assert snapshot(place) == before


# ---------------------------------------------------------------- silent wrong results


def test_nan_weights_are_refused_at_export_and_nan_scores_at_prediction(place):
    model = resnet.create(20, "cifar10")
    with torch.no_grad():
        model.fc.weight[0, 0] = float("nan")
    torch.save(model.state_dict(), place / "nan.pth")
    before = snapshot(place)
    one_sentence(
        run(export_main, "--depth", 20, "--dataset", "cifar10", "--weights", "nan.pth", "--no-validate"),
        2,
        "fc.weight holds 1 NaN or infinite values",
    )
    assert snapshot(place) == before
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(place / "r20.onnx"))
    fc = next(t for t in proto.graph.initializer if t.name == "fc.bias")
    fc.CopyFrom(numpy_helper.from_array(np.full(10, np.nan, np.float32), "fc.bias"))
    onnx.save(proto, str(place / "broken.onnx"))
    one_sentence(run(deploy_main, "predict", "broken.onnx", "good.png"), 2, "broken.onnx gives NaN or infinite scores")


def test_sixteen_bit_images_are_scaled_not_clipped(place):
    from deploy.preprocess import load_image

    ramp = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)  # 0 .. 65535
    Image.fromarray(ramp).save(place / "ramp16.png")
    eight = np.asarray(load_image(place / "ramp16.png"))[:, :, 0]
    assert np.array_equal(eight, np.arange(256, dtype=np.uint8).reshape(16, 16))
    assert np.array_equal(np.asarray(load_image(ramp))[:, :, 0], eight)


def test_the_api_refuses_what_it_cannot_mean(place):
    from deploy import Predictor
    from deploy.preprocess import ImageError

    with Predictor("r20.onnx") as predictor:
        with pytest.raises(ImageError, match="holds NaN or infinite values"):
            predictor.predict(np.full((8, 8, 3), np.nan, np.float32))
        with pytest.raises(ImageError, match=r"is empty \(0x0 pixels\)"):
            predictor.predict(np.zeros((0, 0, 3), np.uint8))
        (p,) = predictor.predict(os.fsencode("good.png"))  # a path in bytes is a path
        assert p.source == "good.png"
        with pytest.raises(
            resnet.ToolkitError,
            match=r"input of shape \(2, 3, 16, 16\) does not fit this model, which takes \(N, 3, 32, 32\)",
        ):
            predictor.predict_arrays(np.zeros((2, 3, 16, 16), np.float32))


# ---------------------------------------------------------------- unclear messages


def test_folders_where_files_belong_are_named_as_folders(place):
    (place / "pics").mkdir()
    result = run(deploy_main, "predict", "r20.onnx", "pics")
    assert result.exit_code == 1 and "pics is a folder, not an image file" in result.output
    one_sentence(run(bench_main, "pics", "--no-peak"), 2, "pics is a folder, not a model file")


@pytest.mark.parametrize("kind", ["random", "malicious", "module"])
def test_unreadable_checkpoints_never_suggest_unsafe_loading(kind, place):
    import pickle

    path = place / f"{kind}.pth"
    marker = place / "pwned"
    if kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(3000))
    elif kind == "malicious":

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {marker}",))

        path.write_bytes(pickle.dumps(Evil()))
    else:
        torch.save({"model": torch.nn.Linear(2, 2)}, path)
    result = run(export_main, "--depth", 20, "--dataset", "cifar10", "--weights", path.name, "-o", "x.onnx")
    line = one_sentence(result, 2, f"checkpoint {path.name}")
    assert "weights_only=False" not in line and "weights_only` set to `False" not in line and not marker.exists()
    if kind == "module":
        assert "holds Python objects besides tensors (torch.nn.modules.linear.Linear)" in line
    assert not (place / "x.onnx").exists()
