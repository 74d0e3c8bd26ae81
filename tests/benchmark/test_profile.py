"""resnet-bench --profile (per-layer times from each backend's profiler) and --sla-p99-ms (the best
batch for a latency budget), and the Triton config made from it. Real models, real runtimes."""

import importlib.util
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import resnet
from benchmark.cli import main as bench_main
from benchmark.profile import Profile, profile_runtime, units
from deploy.cli import main as deploy_main
from deploy.runtimes import RuntimeOptions, open_runtime
from export import export_onnx
from toolkit.errors import ToolkitError

pytest.importorskip("onnxruntime", reason="profiles ONNX files in ONNX Runtime: pip install '.[cpu]'")


@pytest.fixture(scope="module", params=[20, 50], ids=["resnet20", "resnet50"])
def model_file(request, tmp_path_factory, small_imagenet):
    torch.manual_seed(0)
    model = resnet.create(20, "cifar10") if request.param == 20 else small_imagenet(50)
    path = tmp_path_factory.mktemp("profile") / f"r{request.param}.onnx"
    export_onnx(model, path, validate=False)
    return model, path


TIMED = RuntimeOptions(layer_times=True)


def _runtimes(model, path):
    yield open_runtime(path, TIMED)
    yield open_runtime(model, replace(TIMED, device="cpu"))
    if importlib.util.find_spec("openvino") is not None:
        yield open_runtime(path, replace(TIMED, backend="openvino"))


def test_every_convolution_is_timed_and_the_stages_hold_the_time(model_file):
    """The profile's structure, on every CPU backend. How well its times add up (the gap against
    the measured latency, the share of the residual stages) is a timing figure, checked by the
    benchmark `python -m benchmark.fidelity --profiles` (docs/benchmark.md), not here."""
    model, path = model_file
    expected = [u for u in units(model.architecture) if "conv" in u or u.endswith("downsample")]
    for runtime in _runtimes(model, path):
        profile = profile_runtime(runtime, 2, runs=2, warmup=1)
        names = [layer.name for layer in profile.layers]
        assert set(expected) <= set(names), (runtime.backend, sorted(set(expected) - set(names)))
        assert all(layer.ms >= 0 for layer in profile.layers) and profile.measured_ms > 0
        assert abs(sum(layer.share for layer in profile.layers) - 1) < 1e-9
        stages = ["stem", *[f"layer{i + 1}" for i in range(len(model.architecture.layers))], "head"]
        assert [s["name"] for s in profile.stages if s["name"] != "other"] == stages, runtime.backend
        assert sum(s["ms"] for s in profile.stages) == pytest.approx(profile.attributed_ms)
        assert Profile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile


def test_an_int8_files_quantized_convolutions_are_its_units(digits_files, digits):
    """The `cpu` INT8 form runs QLinearConv nodes ONNX Runtime renames (`layer1.0.conv1_token_4`):
    each is its convolution's unit, the stem included, and a FLOP rate is given only to a unit that
    ran its convolution or matrix product (never a convolution's work over an add's time)."""
    model = resnet.load_model(digits["checkpoint"])
    expected = [u for u in units(model.architecture) if "conv" in u]
    with open_runtime(digits_files["cpu"], TIMED) as runtime:
        profile = profile_runtime(runtime, 4, runs=2, warmup=1)
    by_name = {layer.name: layer for layer in profile.layers}
    assert set(expected) <= set(by_name), sorted(set(expected) - set(by_name))
    assert "QLinearConv" in by_name["conv1"].ops and profile.stages[0]["name"] == "stem"
    rated = [layer for layer in profile.layers if layer.gflops is not None]
    assert rated and all(any("Conv" in op or "Gemm" in op for op in layer.ops) for layer in rated)
    other = next((s["share"] for s in profile.stages if s["name"] == "other"), 0.0)
    assert other < 0.5, profile.stages  # was 0.86-0.91: the convolutions themselves


def test_a_profile_runs_with_the_options_its_runtime_was_opened_with(model_file):
    """The profiler is the runtime's own (`time_layers`), so it runs as the runtime runs: ONNX
    Runtime's on the same provider and threads (it used to read `runtime.threads`, which the CUDA
    runtime lacks: an AttributeError on every GPU), OpenVINO's with the same hint (it used to open
    its own runtime, without the hint). A runtime opened without the profiler says so."""
    model, path = model_file
    if model.architecture.stem == "imagenet":
        pytest.skip("the ResNet-20 run shows it")
    ort = open_runtime(path, replace(TIMED, threads=1))
    assert "cpu, 1 thread" in profile_runtime(ort, 2, runs=1, warmup=1).profiler
    with pytest.raises(ToolkitError, match="was opened without its profiler"):
        profile_runtime(open_runtime(path), 2, runs=1, warmup=1)
    if importlib.util.find_spec("openvino") is not None:
        hinted = open_runtime(path, replace(TIMED, backend="openvino", openvino_hint="throughput"))
        assert "throughput hint" in profile_runtime(hinted, 4, runs=1, warmup=1).profiler


def run(*args):
    return CliRunner().invoke(bench_main, [str(a) for a in args])


def test_the_profile_is_in_the_json_and_drawn(model_file, tmp_path):
    model, path = model_file
    if model.architecture.stem == "imagenet":
        pytest.skip("the ResNet-20 run shows it")
    result = run(
        path,
        "--profile",
        "--batch",
        "1,4",
        "--iterations",
        3,
        "--warmup",
        1,
        "--no-peak",
        "--json",
        tmp_path / "r.json",
        "--profile-json",
        tmp_path / "p.json",
        "--plot",
        tmp_path / "p.png",
    )
    assert result.exit_code == 0, result.output
    assert "profile: r20.onnx (onnxruntime cpu), batch 4" in result.output and "gap" in result.output
    measurements = json.loads((tmp_path / "r.json").read_text())["measurements"]
    assert [m["batch"] for m in measurements] == [1, 4]
    for m in measurements:
        assert {"layers", "stages", "attributed_ms", "measured_ms"} <= set(m["profile"])
        assert [s["name"] for s in m["profile"]["stages"]][:5] == ["stem", "layer1", "layer2", "layer3", "head"]
    assert len(json.loads((tmp_path / "p.json").read_text())["profiles"]) == 2
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_profile_json_on_standard_output_is_the_only_thing_there(model_file):
    model, path = model_file
    if model.architecture.stem == "imagenet":
        pytest.skip("the ResNet-20 run shows it")
    result = run(
        path, "--profile", "--batch", "1", "--iterations", 2, "--warmup", 0, "--no-peak", "--profile-json", "-"
    )
    assert result.exit_code == 0, result.output
    assert [p["label"] for p in json.loads(result.stdout)["profiles"]] == [f"{path.name} (onnxruntime cpu)"]


def test_a_budget_below_batch_1_is_one_sentence_and_exit_1(model_file, tmp_path):
    _, path = model_file
    result = run(
        path,
        "--sla-p99-ms",
        "0.001",
        "--batch",
        "1,2",
        "--iterations",
        3,
        "--warmup",
        1,
        "--no-peak",
        "--json",
        tmp_path / "s.json",
    )
    assert result.exit_code == 1
    assert "no batch size meets 0.001 ms (batch 1 p99 is" in result.output
    sla = json.loads((tmp_path / "s.json").read_text())["sla"]
    assert sla["batch"] is None and [row["fits"] for row in sla["rows"]] == [False, False]


def test_a_generous_budget_chooses_the_fastest_batch_that_fits_and_configures_triton(model_file, tmp_path):
    model, path = model_file
    if model.architecture.stem == "imagenet":
        pytest.skip("the ResNet-20 run shows it")
    result = run(
        path,
        "--sla-p99-ms",
        "10000",
        "--batch",
        "1,2,4,8",
        "--iterations",
        5,
        "--warmup",
        1,
        "--no-peak",
        "--json",
        tmp_path / "s.json",
        "--plot",
        tmp_path / "s.png",
    )
    assert result.exit_code == 0, result.output
    sla = json.loads((tmp_path / "s.json").read_text())["sla"]
    fitting = [row for row in sla["rows"] if row["fits"]]
    assert len(fitting) == 4  # 10 s fits every batch of a ResNet-20
    best = max(fitting, key=lambda row: row["images_per_second"])
    assert sla["batch"] == best["batch"] and "<- chosen" in result.output
    assert sla["max_queue_delay_us"] == int((10000 - best["p99_ms"]) * 1000)
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    out = CliRunner().invoke(
        deploy_main,
        ["triton", str(path), "--repository", str(tmp_path / "repo"), "--cpu", "--sla-from", str(tmp_path / "s.json")],
    )
    assert out.exit_code == 0, out.output
    config = next((tmp_path / "repo").glob("*/config.pbtxt")).read_text()
    assert f"preferred_batch_size: [ {best['batch']} ]" in config
    assert f"max_queue_delay_microseconds: {sla['max_queue_delay_us']}" in config
    other = tmp_path / "other.onnx"  # another model: the record is not its measurement
    export_onnx(resnet.create(20, "cifar10", shortcut="B"), other, validate=False)
    refused = CliRunner().invoke(
        deploy_main,
        ["triton", str(other), "--repository", str(tmp_path / "r2"), "--sla-from", str(tmp_path / "s.json")],
    )
    assert refused.exit_code == 2 and "not other.onnx (their checksums differ)" in refused.output, refused.output
    assert not (tmp_path / "r2").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--profile-json", "{tmp}/p.json"], "--profile-json goes with --profile"),
        (["--profile", "--sla-p99-ms", "5"], "--profile and --sla-p99-ms are two runs"),
        (["--sla-p99-ms", "0"], "--sla-p99-ms"),
    ],
)
def test_bad_profile_and_sla_options_are_one_sentence_and_exit_2(args, message, model_file, tmp_path):
    _, path = model_file
    result = run(path, *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_sla_from_without_an_sla_record_is_refused(model_file, tmp_path):
    _, path = model_file
    (tmp_path / "x.json").write_text("{}")
    out = CliRunner().invoke(
        deploy_main,
        ["triton", str(path), "--repository", str(tmp_path / "repo"), "--sla-from", str(tmp_path / "x.json")],
    )
    assert out.exit_code == 2 and 'has no "sla" record' in out.output
    assert not (tmp_path / "repo").exists()


def _fifo(folder):
    os.mkfifo(folder / "fifo.json")
    return folder / "fifo.json"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda folder: Path("/dev/zero"), "/dev/zero is a character device, not resnet-bench JSON"),
        (_fifo, "is a FIFO, not resnet-bench JSON"),
        (lambda folder: _write(folder, "[" * 100_000 + "]" * 100_000), "nested too deep"),
        (lambda folder: _write(folder, "{" + " " * (17 * 2**20) + "}"), "larger than 16 MiB"),
        (lambda folder: _write(folder, '{"sla": {"batch": NaN, "max_queue_delay_us": 5}}'), "holds NaN"),
        (lambda folder: _write(folder, '{"sla": {"batch": "8", "max_queue_delay_us": 5}}'), "batch must be a whole"),
        (lambda folder: _write(folder, '{"sla": {"batch": 8.9, "max_queue_delay_us": 5}}'), "not 8.9"),
        (lambda folder: _write(folder, '{"sla": {"batch": true, "max_queue_delay_us": 5}}'), "not True"),
        (lambda folder: _write(folder, '{"sla": {"batch": 8, "max_queue_delay_us": -1}}'), "max_queue_delay_us must"),
        (lambda folder: _write(folder, '{"sla": {"batch": 8}}'), "not None"),
        (lambda folder: _write(folder, "[8]"), 'has no "sla" record'),
        (
            lambda folder: _write(folder, '{"sla": {"batch": 128, "max_queue_delay_us": 5}}'),
            "s.json chose batch 128, above max batch 64",
        ),
    ],
)
def test_a_bad_sla_from_file_is_one_sentence_and_writes_nothing(make, message, model_file, tmp_path):
    """Hostile --sla-from inputs are refused before anything is read whole or written."""
    _, path = model_file
    given = make(tmp_path)
    out = CliRunner().invoke(
        deploy_main, ["triton", str(path), "--repository", str(tmp_path / "repo"), "--sla-from", str(given)]
    )
    assert out.exit_code == 2 and message in out.output and "Traceback" not in out.output, out.output
    assert len(out.output.strip().splitlines()) == 1 and not (tmp_path / "repo").exists()


def _write(folder, text):
    (folder / "s.json").write_text(text)
    return folder / "s.json"
