"""Hostile and careless input through the real commands: every case is one sentence with the
promised exit status, and nothing outside the intended output changes (each test hashes the
folder before and after). Small CIFAR models and crafted files keep it fast."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
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


def png_header_only(path: Path, width: int, height: int, color_type: int = 0) -> None:
    """A PNG file that declares width x height and holds no pixels (`crafted.png_header_only`)."""
    from crafted import png_header_only as header_only

    path.write_bytes(header_only(width, height, color_type))


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


def test_triton_force_never_replaces_a_folder_it_did_not_write_as_it_is(place):
    """A hand-written model folder whose config names the model, and a folder the toolkit wrote
    that the user then added to or edited: --force refuses both and leaves them as they are; a
    folder exactly as the toolkit wrote it is replaced."""
    hand = place / "repo" / "r20"
    (hand / "1").mkdir(parents=True)
    (hand / "config.pbtxt").write_text('name: "r20"\nbackend: "python"\n')
    (hand / "1" / "model.py").write_text("# the user's own model\n")
    before = snapshot(place)
    forced = ["triton", "r20.onnx", "--repository", "repo", "--name", "r20", "--force"]
    one_sentence(run(deploy_main, *forced), 2, "is not a Triton model")
    assert snapshot(place) == before
    assert run(deploy_main, "triton", "r20.onnx", "--repository", "mine", "--name", "r20").exit_code == 0
    for change in (lambda f: (f / "extra.txt").write_text("mine"), lambda f: (f / "config.pbtxt").write_text("x")):
        shutil.rmtree(place / "mine")
        assert run(deploy_main, "triton", "r20.onnx", "--repository", "mine", "--name", "r20").exit_code == 0
        change(place / "mine" / "r20")
        before = snapshot(place)
        one_sentence(run(deploy_main, *forced[:3], "mine", *forced[4:]), 2, "is not a Triton model")
        assert snapshot(place) == before
    shutil.rmtree(place / "mine")
    assert run(deploy_main, "triton", "r20.onnx", "--repository", "mine", "--name", "r20").exit_code == 0
    assert run(deploy_main, *forced[:3], "mine", *forced[4:]).exit_code == 0


def test_a_name_too_long_for_the_pair_writes_nothing(place):
    before = snapshot(place)
    args = ["triton", "r20.onnx", "--repository", "repo", "--triton-backend", "python", "--name", "m" * 250]
    one_sentence(run(deploy_main, *args), 2, "is 250 characters; a model name is at most 200")
    assert snapshot(place) == before


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
        # as from a terminal: a suite started in the background (`make test &`) ignores SIGINT, and
        # a child would inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
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
    """The signal is sent once torch's library is mapped into the process (read from /proc: its
    import has begun, and goes on for a second or more): one line, the signal's status, and no
    file written."""
    before = {p.name for p in place.glob("*.onnx*")}
    process = launch("resnet-export", "--depth", 20, "--dataset", "cifar10", cwd=place)
    deadline = time.monotonic() + 60
    while "libtorch" not in _maps(process.pid) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert process.poll() is None, "resnet-export ended before torch was imported"
    process.send_signal(stop)
    out, err = process.communicate(timeout=60)
    assert process.returncode == status, err
    assert "Traceback" not in err and word in err and len(err.strip().splitlines()) == 1
    assert {p.name for p in place.glob("*.onnx*")} == before  # nothing written


def _maps(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


@pytest.mark.parametrize("stop,caught", [(signal.SIGTERM, "Terminated"), (signal.SIGINT, "KeyboardInterrupt")])
def test_a_signal_during_an_import_acts_once_the_import_ended(stop, caught, tmp_path):
    """torch runs Python code from C++ while it imports, where an exception raised by a signal
    handler aborts the process (a C++ message, no clean-up): a signal that comes while a module
    imports acts once the import ended, and then raises as always."""
    (tmp_path / "slow_module.py").write_text(
        f"import os, time\nos.kill(os.getpid(), {int(stop)})\ntime.sleep(0.3)\nprint('imported', flush=True)\n"
    )
    code = (
        "import time\nfrom toolkit.launch import handle_running\nhandle_running()\n"
        "try:\n    import slow_module\n    time.sleep(10)\n"
        "except KeyboardInterrupt as stop:\n    print(type(stop).__name__, flush=True)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    assert done.stdout.split() == ["imported", caught], done.stdout + done.stderr


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
    png_header_only(place / "row.png", 99_000_000, 1, color_type=6)  # 99 megapixels, but 396 MB as RGBA
    Image.new("L", (1, 3000), 128).save(place / "thin.png")
    names = ["good.png", "bomb.png", "thin.png", "row.png", "good.png"]
    result = run(deploy_main, "predict", "r18.onnx", *names, "--json")
    assert result.exit_code == 1 and "Traceback" not in result.output
    data = json.loads(result.output[: result.output.rindex("}") + 1])
    assert [p["source"] for p in data["predictions"]] == names  # the repeated image gets its own line
    assert "indices" in data["predictions"][0] and "indices" in data["predictions"][4]
    assert "too large to decode safely (more than 100 megapixels)" in data["predictions"][1]["error"]
    assert "too elongated" in data["predictions"][2]["error"]
    assert "in mode RGBA: 396 MB decoded, above the 300 MB read" in data["predictions"][3]["error"]


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
        (["--max-batch", "99999999999999999999"], "--max-batch must be at least 1 and at most 2147483647"),
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
    one_sentence(run(deploy_main, *command), 2, "latin1.txt is not UTF-8 text")
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


# ================================================================ the second hostile pass
# Each case below failed before its fix (issue 17's list: data loss, integrity, hangs, crashes,
# unbounded memory, silent wrong results, unclear messages).

from deploy.cli import eval_main  # noqa: E402

DIGITS = ROOT / "tests" / "data" / "digits"


@pytest.fixture(scope="module")
def digits_model(digits_files):
    return digits_files["fp32"]


@pytest.fixture
def data(place, digits_model):
    """d.onnx (the trained digits model), data/<class>/ with two held-out scans each (20 images),
    cal/ with eight calibration scans, labels.txt naming the classes 0-9."""
    (place / "d.onnx").write_bytes(digits_model.read_bytes())
    for folder in sorted((DIGITS / "heldout").iterdir()):
        (place / "data" / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[:2]:
            (place / "data" / folder.name / image.name).write_bytes(image.read_bytes())
    (place / "cal").mkdir()
    for image in sorted((DIGITS / "calibration").iterdir())[:8]:
        (place / "cal" / image.name).write_bytes(image.read_bytes())
    (place / "labels.txt").write_text("".join(f"{i}\n" for i in range(10)))
    return place


def first_image(place: Path) -> str:
    return str(next(iter(sorted((place / "data" / "3").iterdir()))).relative_to(place))


# ---------------------------------------------------------------- 1. reports never overwrite inputs


@pytest.mark.parametrize(
    "extra,json_to,message",
    [
        ([], "d.onnx", "it is an input of this command"),
        ([], "FIRST", "inside data, an input folder of this command"),
        (["--reference", "r20.onnx"], "r20.onnx", "it is an input of this command"),
        (["--labels", "labels.txt"], "labels.txt", "it is an input of this command"),
    ],
)
def test_an_evaluation_report_never_overwrites_its_inputs(extra, json_to, message, data):
    json_to = first_image(data) if json_to == "FIRST" else json_to
    before = snapshot(data)
    one_sentence(run(eval_main, "d.onnx", "data", *extra, "--json", json_to), 2, message)
    assert snapshot(data) == before


def test_an_export_report_never_overwrites_a_calibration_image(data):
    before = snapshot(data)
    args = ["--depth", 20, "--dataset", "digits", "--precision", "int8", "--calibration", "cal", "-o", "x.onnx"]
    one_sentence(run(export_main, *args, "--json", "cal/0001.png"), 2, "inside cal, an input folder")
    one_sentence(run(export_main, *args, "--eval", "data", "--json", "data/3/new.json"), 2, "inside data")
    assert snapshot(data) == before


# ---------------------------------------------------------------- 2. publishing never deletes a newer folder


def test_publishing_a_folder_never_replaces_one_that_appeared_meanwhile(tmp_path):
    from toolkit.errors import ToolkitError
    from toolkit.files import publish_folder

    target = tmp_path / "bundle"
    with pytest.raises(ToolkitError, match="appeared while this command ran"):
        with publish_folder(target) as folder:
            (folder / "new.txt").write_text("ours")
            target.mkdir()  # the user's folder, made while the command runs
            (target / "thesis.txt").write_text("four years of work")
    assert sorted(p.name for p in target.iterdir()) == ["thesis.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no staging folder left
    # Two runs to one new target: the later one refuses instead of replacing the earlier one.
    other = tmp_path / "other"
    with pytest.raises(ToolkitError, match="appeared while this command ran"):
        with publish_folder(other) as second:
            (second / "b.txt").write_text("second")
            with publish_folder(other) as first:
                (first / "a.txt").write_text("first")
    assert [p.name for p in other.iterdir()] == ["a.txt"]
    # A folder that may be replaced (--force, checked as ours) is checked again at publish time.
    with pytest.raises(ToolkitError, match="no longer one this command may replace"):
        with publish_folder(other, replace=lambda folder: (folder / "a.txt").exists()) as third:
            (third / "c.txt").write_text("third")
            (other / "a.txt").unlink()
            (other / "user.txt").write_text("the user's now")
    assert [p.name for p in other.iterdir()] == ["user.txt"]


# ---------------------------------------------------------------- 3. config.pbtxt from foreign tensor names


def renamed_output(source: Path, target: Path, name: str) -> Path:
    import onnx

    proto = onnx.load(str(source))
    old = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
    proto.graph.output[0].name = name
    onnx.save(proto, str(target))
    return target


def test_tensor_names_cannot_inject_into_a_triton_config(place):
    pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient parses the configs")
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    crafted = 'logits" dims: [ 1 ] } ] parameters { key: "x" value: { string_value: "evil" } } output [ { name: "y'
    renamed_output(place / "r20.onnx", place / "quoted.onnx", crafted)
    assert run(deploy_main, "triton", "quoted.onnx", "--repository", "repo", "--name", "m").exit_code == 0
    config = text_format.Parse((place / "repo" / "m" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert [o.name for o in config.output] == [crafted] and not config.parameters
    renamed_output(place / "r20.onnx", place / "newline.onnx", "logits\nparameters")
    before = snapshot(place)
    one_sentence(run(deploy_main, "triton", "newline.onnx", "--repository", "repo2"), 2, "control character")
    assert snapshot(place) == before


# ---------------------------------------------------------------- 4. external data travels with the model


def with_external_data(source: Path, target: Path) -> Path:
    import onnx

    onnx.save_model(
        onnx.load(str(source)),
        str(target),
        save_as_external_data=True,
        location=target.name + ".data",
        size_threshold=1024,  # the Slice and Pad constants stay inline, as ONNX Runtime needs
    )
    return target


def test_bundles_and_triton_carry_external_data_and_bundles_check_it(place):
    from deploy import Predictor
    from deploy.bundle import Bundle

    with_external_data(place / "r20.onnx", place / "ext.onnx")
    assert run(deploy_main, "bundle", "ext.onnx", "-o", "b").exit_code == 0
    manifest = json.loads((place / "b" / "manifest.json").read_text())
    assert "ext.onnx.data" in manifest["files"]
    with Predictor("b") as predictor:
        assert len(predictor.predict(["good.png"])) == 1
    assert run(deploy_main, "triton", "ext.onnx", "--repository", "repo", "--name", "m").exit_code == 0
    assert (place / "repo" / "m" / "1" / "ext.onnx.data").read_bytes() == (place / "ext.onnx.data").read_bytes()
    rewrite_manifest(place / "b", lambda m: m["files"].pop("ext.onnx.data"))
    with pytest.raises(
        resnet.ToolkitError, match="reads its weights from ext.onnx.data, which the manifest does not list"
    ):
        Bundle.open(place / "b")


def test_external_data_outside_the_models_folder_is_refused(place):
    import onnx

    with_external_data(place / "r20.onnx", place / "ext.onnx")
    proto = onnx.load(str(place / "ext.onnx"), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../secret.data"
    onnx.save(proto, str(place / "ext.onnx"))
    before = snapshot(place)
    one_sentence(run(deploy_main, "bundle", "ext.onnx", "-o", "b"), 2, "../secret.data")
    assert snapshot(place) == before


# ---------------------------------------------------------------- 5. image folders that loop


def test_links_in_an_image_folder_never_loop_or_count_twice(data):
    (data / "data" / "3" / "up").symlink_to("..")  # a loop back into the tree
    (data / "data" / "4" / "again").symlink_to(data / "data" / "5")  # a second way to the same images
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from toolkit.launch import launch; launch('resnet-eval')",
            "d.onnx",
            "data",
            "--json",
            "-",
        ],
        cwd=data,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["images"] == 20
    assert "skipped" in done.stderr and "up" in done.stderr


# ---------------------------------------------------------------- 6. a reference with another recipe


@pytest.mark.parametrize("batch", [2, 64])
def test_an_image_only_the_reference_refuses_is_skipped_for_both(batch, data):
    Image.new("L", (1, 3000), 128).save(data / "data" / "3" / "thin.png")  # too elongated for r18's recipe
    result = run(eval_main, "d.onnx", "data", "--reference", "r18.onnx", "--batch", batch, "--json", "-")
    assert result.exit_code == 0 and "Traceback" not in result.output
    report = json.loads(result.output[result.output.index("{") : result.output.rindex("}") + 1])
    assert report["images"] == 20 and [u["image"] for u in report["unreadable"]] == ["data/3/thin.png"]


# ---------------------------------------------------------------- 7-9. calibration: static batch, bounded memory


def test_an_int8_export_with_a_static_batch_calibrates(data):
    args = ["--depth", 20, "--dataset", "digits", "--weights", DIGITS / "resnet20_digits.pth", "--precision", "int8"]
    result = run(export_main, *args, "--calibration", "cal", "--static-batch", "--batch", 3, "-o", "s.onnx")
    assert result.exit_code == 0, result.output
    from deploy.artifacts import inspect_onnx

    assert inspect_onnx(data / "s.onnx").input.shape == (3, 3, 32, 32)


@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_calibration_reads_images_batch_by_batch(method, data, monkeypatch):
    """At most one calibration batch of images is preprocessed at a time, whatever the folder holds."""
    import deploy.preprocess
    import export.quantize

    Counted.live = Counted.most = 0
    real = deploy.preprocess.preprocess

    def counting(image, spec):
        return counted(real(image, spec))

    monkeypatch.setattr(export.quantize, "preprocess", counting)
    scan = sorted((data / "cal").iterdir())[0].read_bytes()
    for index in range(40):
        (data / "cal" / f"extra{index}.png").write_bytes(scan)
    model = resnet.load_model(DIGITS / "resnet20_digits.pth")
    # 45: the last batch is short, which ONNX Runtime's histogram collector could not merge in one pass.
    options = export.quantize.Int8Options(data / "cal", method=method, size=45)
    report = export_onnx(model, data / "m.onnx", precision="int8", int8=options, validate=False)
    assert report.model.quantization["calibration_images"] == 45
    assert Counted.most <= 2 * export.quantize.CALIBRATION_BATCH


# ---------------------------------------------------------------- 10-11. predict's memory, python -m resnet


class Counted(np.ndarray):
    """A preprocessed image that counts how many of its kind are alive at once."""

    live = most = 0

    def __del__(self):
        Counted.live -= 1


def counted(array: np.ndarray) -> np.ndarray:
    Counted.live += 1
    Counted.most = max(Counted.most, Counted.live)
    return array.view(Counted)


@pytest.mark.parametrize("method", ["predict", "predict_each"])
def test_predict_holds_one_batch_of_images_at_a_time(method, place):
    """Memory independent of the number of images: at most one batch (32) is preprocessed at once."""
    from deploy import Predictor

    Counted.live = Counted.most = 0
    with Predictor("r20.onnx") as predictor:
        real = predictor.preprocess
        predictor.preprocess = lambda image: counted(real(image))
        results = getattr(predictor, method)(["good.png"] * 100)
    assert len(results) == 100 and Counted.most <= 2 * predictor.images_per_run


def test_python_m_resnet_has_a_help_and_survives_a_closed_pipe(tmp_path):
    command = [sys.executable, "-m", "resnet"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    helped = subprocess.run([*command, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert helped.returncode == 0 and "Usage" in helped.stdout and "resnet18" not in helped.stdout
    wrong = subprocess.run([*command, "--bogus"], capture_output=True, text=True, env=env, timeout=60)
    assert wrong.returncode == 2 and "No such option" in wrong.stderr
    piped = subprocess.run(
        " ".join(command) + " | head -1", shell=True, capture_output=True, text=True, env=env, timeout=300
    )
    assert "Traceback" not in piped.stderr and piped.stdout.startswith("model")


# ---------------------------------------------------------------- 12. torch_runtime leaves the caller's model alone


def test_running_a_model_in_pytorch_does_not_change_it(place):
    from deploy.runtimes import RuntimeOptions
    from deploy.runtimes.pytorch import torch_runtime

    model = resnet.create(20, "cifar10").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch_runtime(model, RuntimeOptions(device="cpu", precision="bf16", channels_last=True)).close()
    assert model.training and all(
        torch.equal(v, before[k]) and v.dtype == before[k].dtype for k, v in model.state_dict().items()
    )
    assert export_onnx(model, place / "after.onnx").validation.passed


# ---------------------------------------------------------------- 13. non-square ImageNet-style sizes


@pytest.mark.parametrize("size", [(64, 96), (96, 64), (8, 2048)])
def test_a_non_square_input_takes_images_of_every_shape(size, place):
    from deploy.preprocess import preprocess

    spec = resnet.IMAGENET.with_size(*size)
    assert spec.resize >= max(size)
    for width, height in [(73, 73), (60, 200), (200, 60), (40, 30)]:
        assert preprocess(Image.new("RGB", (width, height), (1, 2, 3)), spec).shape == (3, *size)
    with pytest.raises(resnet.ToolkitError, match="resize .* must be at least the crop's longer side"):
        resnet.InputSpec(64, 96, (0.5,) * 3, (0.5,) * 3, 10, resize=73)


# ---------------------------------------------------------------- 14-15. class folders and labels


def test_labels_that_miss_a_class_folder_are_an_error(data):
    (data / "data" / "9").rename(data / "data" / "Nine")
    before = snapshot(data)
    one_sentence(run(eval_main, "d.onnx", "data", "--labels", "labels.txt"), 2, "Nine")
    assert snapshot(data) == before


def test_an_empty_class_folder_is_an_error_and_hidden_folders_are_skipped(data):
    (data / "data" / "3" / ".ipynb_checkpoints").mkdir()
    (data / "data" / ".ipynb_checkpoints").mkdir()
    result = run(eval_main, "d.onnx", "data", "--json", "-")
    assert result.exit_code == 0 and "skipped 2 (hidden)" in result.output and ".ipynb_checkpoints" in result.output
    report = json.loads(result.output[result.output.index("{") : result.output.rindex("}") + 1])
    assert report["images"] == 20 and report["top1"] >= 0.9
    for hidden in (data / "data" / "3" / ".ipynb_checkpoints", data / "data" / ".ipynb_checkpoints"):
        hidden.rmdir()
    (data / "data" / "empty").mkdir()
    one_sentence(run(eval_main, "d.onnx", "data"), 2, "empty")


# ---------------------------------------------------------------- 16. same-named files in a benchmark


def test_same_named_models_get_their_own_labels_and_figures(place):
    for folder, source in (("a", "r20.onnx"), ("c", "r18.onnx")):
        (place / folder).mkdir()
        (place / folder / "model.onnx").write_bytes((place / source).read_bytes())
    result = run(
        bench_main, "a/model.onnx", "--vs", "c/model.onnx", "--iterations", 2, "--warmup", 0, "--no-peak", "--json", "-"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    labels = [m["label"] for m in report["measurements"]]
    assert len(set(labels)) == 2 and len(report["comparisons"]) == 1
    flops = [m["flops_per_image"] for m in report["measurements"]]
    assert flops[0] < flops[1]  # ResNet-20 at 32x32, ResNet-18 at 224x224
    same = json.loads(
        run(
            bench_main, "r20.onnx", "--vs", "r20.onnx", "--iterations", 2, "--warmup", 0, "--no-peak", "--json", "-"
        ).output
    )
    assert len({m["label"] for m in same["measurements"]}) == 2 and len(same["comparisons"]) == 1


# ---------------------------------------------------------------- 17-20. wrong arrays, stdout, warnings


def test_float_images_outside_zero_to_one_are_refused(place):
    from deploy import Predictor
    from deploy.preprocess import ImageError

    with Predictor("r20.onnx") as predictor:
        with pytest.raises(ImageError, match=r"from 0 to 255.*\[0, 1\]"):
            predictor.predict(np.linspace(0, 255, 300, dtype=np.float32).reshape(10, 10, 3))


def test_dash_means_stdout_for_every_report(place):
    result = run(bench_main, "r20.onnx", "--iterations", 2, "--warmup", 0, "--no-peak", "--csv", "-")
    assert result.exit_code == 0 and result.output.startswith("label,backend,device") and not (place / "-").exists()
    result = run(bench_main, "r20.onnx", "--iterations", 2, "--warmup", 0, "--no-peak", "--markdown", "-")
    assert result.exit_code == 0 and result.output.startswith("| target |") and not (place / "-").exists()
    one_sentence(
        run(bench_main, "r20.onnx", "--iterations", 2, "--no-peak", "--json", "-", "--csv", "-"), 2, "standard output"
    )


@pytest.mark.parametrize(
    "command,args",
    [
        ("resnet-deploy", ["predict", "r20.onnx", "good.png"]),
        ("resnet-eval", ["d.onnx", "data"]),
        ("resnet-eval", ["d.onnx", "data", "--json", "-"]),
    ],
)
def test_a_closed_stdout_is_an_error(command, args, data):
    code = f"from toolkit.launch import launch; launch({command!r})"
    done = subprocess.run(
        f"{sys.executable} -c {code!r} {' '.join(args)} >&-",
        shell=True,
        cwd=data,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "standard output is closed" in done.stderr and "Traceback" not in done.stderr


# ---------------------------------------------------------------- 21-29. messages that say what happened


def test_when_no_image_can_be_read_the_message_names_one_and_why(data):
    for image in (data / "data").rglob("*.png"):
        image.write_bytes(b"not a png")
    line = one_sentence(run(eval_main, "d.onnx", "data"), 2, "none of the 20 images", "data/0/")
    assert "not a readable image" in line and "Traceback" not in line, line


def test_a_fifo_or_a_device_named_like_an_image_says_what_it_is(place):
    os.mkfifo(place / "pipe.png")
    (place / "zero.png").symlink_to("/dev/zero")
    result = run(deploy_main, "predict", "r20.onnx", "pipe.png", "zero.png")
    assert result.exit_code == 1
    assert "pipe.png is a FIFO, not an image file" in result.output
    assert "zero.png is a character device, not an image file" in result.output


def test_numbers_in_messages_never_contradict_themselves(data):
    import math

    from export import Thresholds
    from toolkit.numbers import check_number

    with pytest.raises(resnet.ToolkitError, match=r"at most 1, got 1\.0000001"):
        check_number(1.0000001, "x", high=1)
    assert math.copysign(1.0, Thresholds(max_top1_drop=-0.0).max_top1_drop) == 1.0  # never "must be <= -0"
    # One scan of a 3 filed under 7: top-1 is 19/20; a limit a hair above it must read as above it.
    seven = sorted((data / "data" / "7").iterdir())[0]
    seven.write_bytes(sorted((data / "data" / "3").iterdir())[0].read_bytes())
    report = json.loads(run(eval_main, "d.onnx", "data", "--json", "-").output)
    result = run(eval_main, "d.onnx", "data", "--min-top1", report["top1"] + 1e-9)
    line = [row for row in result.output.splitlines() if "below" in row][0]
    value, limit = line.split("top-1 ")[1].split(" is below --min-top1 ")
    assert result.exit_code == 1 and value != limit


def test_an_output_folder_that_cannot_take_a_file_is_refused_before_any_work(place):
    """/proc passes os.access(W_OK) for root, yet no file can be made there: the check probes."""
    result = run(export_main, "--depth", 20, "--dataset", "cifar10", "-o", "/proc/m.onnx")
    one_sentence(result, 2, "cannot write /proc/m.onnx: folder /proc is not writable")
    from toolkit.files import check_writable

    with pytest.raises(resnet.ToolkitError, match="folder /proc is not writable"):
        check_writable("/proc/m.onnx")


def test_skipped_calibration_images_are_counted_and_pytorch_near_chance_is_said(data):
    (data / "cal" / "broken.png").write_bytes(b"not a png")
    args = ["--depth", 20, "--dataset", "digits", "--weights", DIGITS / "resnet20_digits.pth", "--precision", "int8"]
    result = run(export_main, *args, "--calibration", "cal", "-o", "q.onnx")
    assert result.exit_code == 0 and "1 of the 9 calibration images could not be read" in result.output
    assert "broken.png" in result.output and "calibrated on 8 images" in result.output
    (data / "shuffled").mkdir()
    for index, folder in enumerate(sorted((data / "data").iterdir())):
        (data / "data" / folder.name).rename(data / "shuffled" / f"{(index + 3) % 10}")
    result = run(
        export_main,
        "--depth",
        20,
        "--dataset",
        "digits",
        "--weights",
        DIGITS / "resnet20_digits.pth",
        "--eval",
        "shuffled",
        "-o",
        "e.onnx",
    )
    assert "PyTorch's own top-1" in result.output


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: __import__("deploy").open_runtime(None), "model file must be a path"),
        (lambda: __import__("deploy").RuntimeOptions(threads="2"), "threads must be a number"),
        (lambda: resnet.create("50"), "depth must be a whole number"),
        (lambda: export_onnx(resnet.create(20, "cifar10"), "m.onnx", opset="17"), "opset must be a number"),
        (lambda: export_onnx(torch.nn.Linear(2, 2), "m.onnx"), "export takes a resnet.ResNet"),
        (lambda: __import__("export").lint_onnx("good.png"), "is not a readable ONNX file"),
    ],
)
def test_the_api_says_what_it_accepts(call, message, place):
    with pytest.raises(resnet.ToolkitError, match=message):
        call()


def test_the_predictor_and_runtimes_check_their_arguments(place):
    from deploy import OrtRuntime, Predictor

    with pytest.raises(resnet.ToolkitError, match="labels"):
        Predictor("r20.onnx", labels=5)
    with Predictor("r20.onnx") as predictor:
        with pytest.raises(resnet.ToolkitError, match="top_k must be a number"):
            predictor.predict(["good.png"], top_k="3")
    with OrtRuntime("r20.onnx") as runtime:
        for bad in (np.zeros((1, 3, 32, 32), complex), np.zeros((1, 3, 32, 32), object)):
            with pytest.raises(resnet.ToolkitError, match="real numbers"):
                runtime.run(bad)


def test_an_image_name_cannot_forge_a_prediction_line(place):
    forged = "x.png: [0] 1.000\nreal.png"
    (place / forged).write_bytes((place / "good.png").read_bytes())
    result = run(deploy_main, "predict", "r20.onnx", forged)
    assert result.exit_code == 0 and len([line for line in result.output.splitlines() if line.strip()]) == 2


def test_an_empty_triton_name_is_refused(place):
    line = one_sentence(run(deploy_main, "triton", "r20.onnx", "--repository", "repo", "--name", ""), 2, "name")
    assert "empty" in line.lower() and not (place / "repo").exists(), line  # nothing written


def test_images_up_to_our_limit_are_read_whatever_pillows_default(place):
    from deploy.preprocess import MAX_PIXELS, load_image

    Image.new("L", (10_000, 9_500), 7).save(place / "big.png")  # 95 MP: above Pillow's own 89.5 MP warning
    assert 95_000_000 < MAX_PIXELS and load_image(place / "big.png").size == (10_000, 9_500)


def test_deep_json_in_a_bundle_manifest_or_a_model_folders_marker_is_one_sentence(place):
    """Issue 35, item 6: JSON nested past Python's parser limit in a bundle's manifest.json or in a
    Triton model folder's marker was a RecursionError (only ValueError was caught)."""
    bundle = make_bundle(place)
    deep = '{"format": ' + "[" * 100_000 + "]" * 100_000 + "}"
    (bundle / "manifest.json").write_text(deep)
    before = snapshot(place)
    one_sentence(run(deploy_main, "predict", bundle, "good.png"), 2, "is JSON nested too deep to be a bundle manifest")
    assert snapshot(place) == before
    assert run(deploy_main, "triton", "r20.onnx", "--repository", "repo", "--name", "r20").exit_code == 0
    (place / "repo" / "r20" / ".resnet-deploy-toolkit.json").write_text(deep)
    before = snapshot(place)
    forced = ["triton", "r20.onnx", "--repository", "repo", "--name", "r20", "--force"]
    one_sentence(run(deploy_main, *forced), 2, "is not a Triton model")  # not provably ours: kept
    assert snapshot(place) == before
