"""The harness, reports and resnet-bench, on a small CIFAR model in ONNX Runtime and PyTorch (no timing assertions)."""

import csv
import io
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import resnet
from benchmark import BatchTimer, LoopSettings, flops_per_image, open_target, run_benchmark, run_timers
from benchmark.cli import main
from benchmark.report import CSV_COLUMNS, to_csv, to_markdown
from deploy import OrtRuntime
from deploy.runtimes import RuntimeOptions
from deploy.runtimes.pytorch import TorchCpuRuntime
from export import export_onnx

FAST = LoopSettings(warmup_iterations=1, warmup_seconds=None, iterations=4)


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    model = resnet.create(20, "cifar10")
    export_onnx(model, folder / "r20.onnx", validate=False)
    export_onnx(model, folder / "r20_b8.onnx", batch=8, dynamic_batch=False, validate=False)
    torch.save(model.state_dict(), folder / "r20.pth")
    return folder


def test_session_counts_iterations_and_throughput(cifar):
    runtime = OrtRuntime(cifar / "r20.onnx", threads=1)
    session = BatchTimer("r20", runtime, 3)
    session.warm_up(FAST)
    assert session.warmup_iterations == 1
    (m,) = run_timers([session], FAST)
    assert m.iterations == 4 and m.latency.count == 4 and m.warmup_iterations == 1
    assert m.images_per_second == pytest.approx(3 * 4 / m.seconds)
    assert m.seconds == pytest.approx(sum(session.samples["latency"]) / 1e3)
    assert m.h2d is None and m.compute is None  # CPU: no transfer split
    assert len({x.tobytes() for x in session.inputs}) == len(session.inputs) and all(
        np.count_nonzero(x) for x in session.inputs
    )


def test_duration_mode_runs_at_least_min_iterations(cifar):
    runtime = OrtRuntime(cifar / "r20.onnx", threads=1)
    (m,) = run_timers(
        [BatchTimer("r20", runtime, 1)], LoopSettings(warmup_seconds=0.0, duration=0.05, min_iterations=7)
    )
    assert m.iterations >= 7 and m.seconds >= 0.05


def test_interleaved_targets_are_measured_alike(cifar):
    options = RuntimeOptions(device="cpu", threads=1)
    first = open_target(str(cifar / "r20.onnx"), options)
    second = open_target("pytorch", options, like=first)
    seen = []
    # Turns of up to 60 s: each target's four iterations at a batch size fit in one, whatever the
    # machine's speed, so the order of the turns is the harness's, not the clock's.
    run = run_benchmark(
        [first, second], [1, 2], replace(FAST, turn_seconds=60), measure_peak=False,
        progress=lambda session, fraction: seen.append(session.label),
    )  # fmt: skip
    assert [(m.label, m.batch, m.iterations) for m in run.measurements] == [
        (first.label, 1, 4),
        (second.label, 1, 4),
        (first.label, 2, 4),
        (second.label, 2, 4),
    ]
    # Interleaved in turns, the first target's before the second's.
    assert seen[:8] == [first.label] * 4 + [second.label] * 4
    assert [(c.first, c.second, c.batch) for c in run.comparisons] == [
        (first.label, second.label, 1),
        (first.label, second.label, 2),
    ]
    m = run.measurements[0]
    c = run.comparisons[0]
    assert c.latency_ratio == pytest.approx(m.latency.median / run.measurements[1].latency.median)


def test_flops_and_fraction_of_peak(cifar):
    target = open_target(str(cifar / "r20.onnx"), RuntimeOptions(threads=1))
    macs, _ = resnet.count_macs(resnet.create(20, "cifar10"), (1, 3, 32, 32))
    assert flops_per_image(target.info) == 2 * macs
    run = run_benchmark([target], [2], FAST, peak_tflops=0.5)
    m = run.measurements[0]
    assert m.achieved_tflops == pytest.approx(2 * macs * m.images_per_second / 1e12)
    assert m.fraction_of_peak == pytest.approx(m.achieved_tflops / 0.5)
    assert run.machine.peak_source == "--peak-tflops"


def test_measured_peak_is_a_matmul_rate():
    from benchmark.environment import measure_matmul_tflops

    rate, how = measure_matmul_tflops("cpu", "fp32", size=256, repeats=1, threads=1)
    assert rate > 0 and how.startswith("matmul fp32 256x256 on cpu, 1 threads, ")
    # the best of the products installed here (PyTorch's and ONNX Runtime's), the other named beside it
    winner, other = ("ONNX Runtime", "PyTorch") if ", ONNX Runtime" in how else ("PyTorch", "ONNX Runtime")
    assert how.split("; ")[0].endswith(winner) and f"; {other}: " in how
    beside = float(how.split(f"; {other}: ")[1].split()[0])
    assert rate >= beside * 0.995  # (it is printed to 3 digits)


def test_torch_cpu_runtime_computes_the_model(cifar):
    model = resnet.create(20, "cifar10").eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert np.allclose(TorchCpuRuntime(model).run(x), expected, atol=1e-5)
    assert np.allclose(TorchCpuRuntime(model, channels_last=True).run(x), expected, atol=1e-4)
    bf16 = TorchCpuRuntime(resnet.create(20, "cifar10").eval(), precision="bf16")
    assert bf16.run(x).dtype == np.float32 and "bf16" in bf16.describe()


def test_reports(cifar, tmp_path):
    target = open_target(str(cifar / "r20.onnx"), RuntimeOptions(threads=1))
    run = run_benchmark([target], [1, 4], FAST, peak_tflops=1.0)
    data = json.loads(json.dumps(run.to_dict()))
    assert set(data) == {"machine", "settings", "measurements", "comparisons"}
    assert set(data["machine"]) >= {
        "cpu",
        "logical_cpus",
        "threads",
        "gpu",
        "driver",
        "versions",
        "peak_tflops",
        "peak_source",
    }
    assert "onnxruntime" in data["machine"]["versions"] and "torch" in data["machine"]["versions"]
    measurement = data["measurements"][0]
    assert set(measurement["latency"]) == {"count", "min", "mean", "median", "p90", "p95", "p99", "max", "std"}
    rows = list(csv.DictReader(io.StringIO(to_csv(run))))
    assert list(rows[0]) == CSV_COLUMNS and [r["batch"] for r in rows] == ["1", "4"]
    assert float(rows[1]["images_per_second"]) == pytest.approx(run.measurements[1].images_per_second)
    markdown = to_markdown(run)
    assert markdown.splitlines()[0].startswith("| target | batch | img/s") and markdown.count("r20.onnx") == 2


def test_cli_writes_every_format(cifar, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            str(cifar / "r20.onnx"),
            "--vs",
            "pytorch",
            "--device",
            "cpu",
            "--provider",
            "cpu",
            "--batch",
            "1,2",
            "--iterations",
            "3",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--no-peak",
            "--json",
            str(tmp_path / "r.json"),
            "--csv",
            str(tmp_path / "r.csv"),
            "--markdown",
            str(tmp_path / "r.md"),
            "--plot",
            str(tmp_path / "r.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "r20.onnx (onnxruntime cpu)" in result.output and "resnet20_cifar10 (pytorch eager)" in result.output
    assert "median latency" in result.output and "vs: " in result.output
    assert len(json.loads((tmp_path / "r.json").read_text())["measurements"]) == 4
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 5
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "r.md").read_text().count("\n|") >= 5


def test_cli_json_to_stdout_and_pytorch_sources(cifar):
    result = CliRunner().invoke(
        main,
        [
            "--depth",
            "20",
            "--dataset",
            "cifar10",
            "--device",
            "cpu",
            "--iterations",
            "2",
            "--warmup",
            "0",
            "--no-peak",
            "--json",
            "-",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["measurements"][0]["label"] == "resnet20_cifar10 (pytorch eager)"
    result = CliRunner().invoke(main, [str(cifar / "r20.pth"), "--device", "cpu", "--iterations", "2", "--no-peak"])
    assert result.exit_code == 0 and "r20.pth (pytorch eager)" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing.onnx"], "model file missing.onnx does not exist"),
        (["{folder}/r20.onnx", "--batch", "0"], "batch sizes are positive integers"),
        (["{folder}/r20.onnx", "--batch", "one"], "batch sizes are positive integers"),
        (
            ["{folder}/r20_b8.onnx", "--batch", "4"],
            "batch 4 is outside what this onnxruntime model accepts (exactly 8)",
        ),
        (
            ["{folder}/r20.onnx", "--no-data-transfers", "--provider", "cpu"],
            "--no-data-transfers applies to GPU runtimes",
        ),
        (["{folder}/r20.onnx", "--warmup", "soon"], "warm-up is a number of iterations"),
        (["{folder}/r20.pth.txt"], "does not exist"),
        (["pytorch"], "'pytorch' compares with the PyTorch model of the other target"),
        ([], "name a model file"),
        # It measured FP32 under an FP32 label: ONNX Runtime has no --precision (OpenVINO has BF16).
        (["{folder}/r20.onnx", "--precision", "bf16"], "so --precision bf16 would not change what it computes"),
        (["{folder}/r20.onnx", "--channels-last"], "ONNX Runtime does not use --channels-last; it applies to PyTorch"),
        (["{folder}/r20.onnx", "--plot", "-"], "--plot writes a figure file; give it a file name, not '-'"),
        (["{folder}/r20.onnx", "--plot", "{folder}/x.txt"], "the figure is drawn as .png"),
        (["{folder}/r20.onnx", "--profile", "--profile-json", "-", "--json", "-"], "only one of --json, --csv"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(args, message, cifar):
    result = CliRunner().invoke(main, [a.format(folder=cifar) for a in args] + ["--iterations", "1", "--no-peak"])
    assert result.exit_code == 2, result.output
    assert not (cifar / "x.txt").exists()
    (line,) = result.output.strip().splitlines()
    assert line.startswith("resnet-bench: ") and message in line


@pytest.mark.parametrize(
    "args,message",
    [
        (["--triton", "127.0.0.1:9"], "--triton needs --model"),
        (["{folder}/r20.onnx", "--triton", "127.0.0.1:9", "--model", "m"], "give no TARGET"),
        (["--triton", "127.0.0.1:9", "--model", "m", "--vs", "pytorch"], "--vs names the in-process file"),
        (["--triton", "127.0.0.1:9", "--model", "m", "--batch", "1,2"], "--batch is each request's batch"),
        (["--triton", "127.0.0.1:9", "--model", "m", "--iterations", "5"], "not iterations"),
        (["--triton", "127.0.0.1:9", "--model", "m", "--warmup", "5"], "not iterations"),
        (["--triton", "127.0.0.1:9", "--model", "m", "--concurrency", "0"], "positive integers"),
        (["--triton", "127.0.0.1:9", "--model", "m", "--protocol", "http", "--duration", "0.3"], "nothing listens at"),
        (["--triton", "127.0.0.1:99999", "--model", "m"], "port 99999 is not a TCP port (1 to 65535)"),
        (["--triton", "127.0.0.1", "--model", "m"], "--triton 127.0.0.1 needs a port"),
        (["--ray", "http://127.0.0.1:0", "--model", "m"], "port 0 is not a TCP port"),
    ],
)
def test_bad_load_options_are_one_sentence_and_exit_2(args, message, cifar):
    """No server is needed to refuse these (port 9, discard, has no Triton on loopback)."""
    pytest.importorskip("tritonclient.grpc", reason="tritonclient is needed: pip install '.[serve]'")
    result = CliRunner().invoke(main, [a.format(folder=cifar) for a in args])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert message in line


def test_corrupt_unknown_and_foreign_files(cifar, tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    (tmp_path / "m.tflite").write_bytes(b"x")
    (tmp_path / "e.plan").write_bytes(b"serialized engine")
    for name, message in [
        ("bad.onnx", "ONNX Runtime cannot load"),
        ("m.tflite", "cannot tell the backend of m.tflite"),
    ]:
        result = CliRunner().invoke(main, [str(tmp_path / name), "--no-peak"])
        assert result.exit_code == 2 and message in result.output
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        result = CliRunner().invoke(main, [str(tmp_path / "e.plan"), "--no-peak"])
        assert result.exit_code == 2 and "pip install '.[gpu]'" in result.output


@pytest.mark.parametrize("provider", ["cuda", "tensorrt"])
def test_a_provider_that_cannot_run_is_one_sentence(provider, cifar):
    from deploy.runtimes import provider_problem

    problem = provider_problem(provider)
    if problem is None:
        pytest.skip(f"ONNX Runtime's {provider} provider can run here")
    result = CliRunner().invoke(main, [str(cifar / "r20.onnx"), "--provider", provider, "--no-peak"])
    assert result.exit_code == 2
    assert result.output.strip() == f"resnet-bench: ONNX Runtime's {provider} provider can't run here: {problem}"


def test_the_gpu_check_script_runs_its_steps(tmp_path):
    """tools/gpu_check.py `--smoke`: every step, tiny; on a machine without a GPU, CPU runtimes stand in."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, str(root / "tools" / "gpu_check.py"), "--smoke", "--output-dir", str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr  # a smoke run's targets are written, not judged (CPU figures)
    card = "cpu" if not torch.cuda.is_available() else None
    (written,) = tmp_path.glob("gpu-*.json")
    data = json.loads(written.read_text())
    assert card is None or written.name == "gpu-cpu.json"
    assert [e["precision"] for e in data["exports"]] == ["fp32", "fp16"]
    assert all(m["batch"] in (1, 2) for r in data["runs"] for m in r["run"]["measurements"])
    assert {f["backend"] for f in data["fidelity"]} and all(f["bare_ms"] > 0 for f in data["fidelity"])
    assert len(data["targets"]) >= len(data["fidelity"])
    assert "## The harness against bare loops" in written.with_suffix(".md").read_text()
    # resnet-bench --profile on ONNX Runtime (on CUDA where there is a GPU): per batch, the stages
    # the board's path, in a process where PyTorch can't be imported (its CPU half where there's no GPU)
    board = data["board"]
    assert board["torch_imported"] is False and (board["cuda_available"] or board["onnxruntime_cpu"]), board
    assert "board's GPU path" in written.with_suffix(".md").read_text()
    assert [p["batch"] for p in data["profiles"]] == [1, 2]
    assert all("ONNX Runtime's profiler" in p["profiler"] and "layer3" in p["stages"] for p in data["profiles"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_harness_splits_transfers_and_compute():
    target = open_target(
        None, RuntimeOptions(device="cuda", cuda_graphs=True), model=resnet.ModelOptions(20, "cifar10")
    )
    run = run_benchmark([target], [8], FAST, measure_peak=False)
    m = run.measurements[0]
    assert m.h2d.median > 0 and m.compute.median > 0 and m.d2h.median > 0 and m.enqueue.median > 0
    assert m.latency.median >= m.compute.median


def test_turns_alternate_the_targets_and_start_with_an_untimed_iteration(cifar):
    """Each turn runs one untimed iteration (the previous target's threads may still spin), then
    timed ones for turn_seconds; with turn_seconds 0, one timed iteration each in turn, no settling."""
    options = RuntimeOptions(device="cpu", threads=1)
    first = open_target(str(cifar / "r20.onnx"), options)
    second = open_target("pytorch", options, like=first)
    for turn, expected_order in ((0.0, [0, 1, 0, 1]), (1e-9, [0, 1, 0, 1])):
        calls = []
        for index, target in enumerate((first, second)):
            run = target.runtime.run
            target.runtime.run = lambda batch, run=run, index=index, calls=calls: (calls.append(index), run(batch))[1]
        settings = LoopSettings(warmup_iterations=0, warmup_seconds=None, iterations=2, turn_seconds=turn)
        run_benchmark([first, second], [1], settings, measure_peak=False)
        for target in (first, second):
            del target.runtime.run
        settle = turn > 0
        # a turn of at least one iteration each: with settling, every timed iteration follows an untimed one
        assert calls == ([0, 0, 1, 1, 0, 0, 1, 1] if settle else expected_order)
