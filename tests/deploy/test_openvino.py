"""OpenVINO as a runtime for ONNX files on the CPU, for real: FP32 against ONNX Runtime, BF16
against PyTorch FP32, INT8 files against ONNX Runtime's INT8, the same one-sentence errors, the
refusal of BF16 on a CPU without it (simulated by the CPU probe's result), bundles, `auto`."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import resnet
from benchmark.cli import main as bench_main
from deploy import Predictor
from deploy.bundle import Bundle, write_bundle
from deploy.cli import eval_main
from deploy.runtimes import RuntimeOptions, open_bundle, open_runtime
from deploy.runtimes.cpu import CpuFeatures
from deploy.runtimes.open import choose_backend
from export import export_onnx
from export.validate import CRITERIA, validate_runtime
from toolkit.errors import ToolkitError

pytest.importorskip("openvino", reason="OpenVINO is an optional runtime: pip install '.[openvino]'")
pytest.importorskip("onnxruntime", reason="compared with ONNX Runtime: pip install '.[cpu]'")

HAS_BF16 = CpuFeatures.probe().bf16
needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason=f"this CPU has no native BF16 ({CpuFeatures.probe().describe()})")
WITHOUT_BF16 = CpuFeatures(("avx2", "avx512f", "avx512_vnni"))


@pytest.fixture(scope="module")
def files(digits, digits_files):
    model = resnet.load_model(digits["checkpoint"])
    return {"model": model, "fp32": digits_files["fp32"], "int8": digits_files["cpu"], "static": digits_files["static"]}


def _scaled(reference, candidate):
    return float(np.abs(candidate - reference).max() / np.abs(reference).max())


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_fp32_equals_onnx_runtime_within_1e_4_of_scale(shortcut, tmp_path):
    torch.manual_seed(1)
    path = tmp_path / "m.onnx"
    export_onnx(resnet.create(20, dataset="cifar10", shortcut=shortcut), path, validate=False)
    ort, ov = open_runtime(path), open_runtime(path, RuntimeOptions(backend="openvino"))
    for n in (1, 3, 8):  # every batch size: each is compiled with its own static shape
        x = ort.random_input(n, seed=n)
        assert _scaled(ort.run(x), ov.run(x)) <= 1e-4
    assert ov.settings()["precision"] == "fp32" and "fp32" in ov.describe()


@needs_bf16
def test_bf16_is_judged_as_fp16_is_against_pytorch_fp32(files):
    runtime = open_runtime(files["fp32"], RuntimeOptions(backend="openvino", precision="bf16"))
    report = validate_runtime(files["model"], runtime, criterion=CRITERIA["bf16"], batch_sizes=[1, 8, 16])
    assert report.passed, report.failures
    assert report.cosine >= 0.999 and report.precision == "bf16"
    assert any("BF16 arithmetic was exercised" in note for note in report.notes)
    # BF16 really is computed: the logits are not FP32's.
    fp32 = open_runtime(files["fp32"], RuntimeOptions(backend="openvino"))
    x = fp32.random_input(8)
    assert _scaled(fp32.run(x), runtime.run(x)) > 1e-4


@needs_bf16
def test_bf16_keeps_the_digits_top1_within_0_2_points(files, digits, tmp_path):
    result = CliRunner().invoke(
        eval_main,
        [
            str(files["fp32"]),
            str(digits["heldout"]),
            "--backend",
            "openvino",
            "--precision",
            "bf16",
            "--reference",
            str(digits["checkpoint"]),
            "--json",
            str(tmp_path / "e.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "e.json").read_text())
    assert "bf16" in report["backend"]
    assert 100 * (report["reference_top1"] - report["top1"]) <= 0.2


def test_an_int8_file_agrees_with_onnx_runtime_int8(files, digits):
    images = Predictor(files["int8"])
    batch = np.stack([images.preprocess(p) for p in sorted(digits["heldout"].rglob("*.png"))[:64]])
    ort, ov = open_runtime(files["int8"]), open_runtime(files["int8"], RuntimeOptions(backend="openvino"))
    a, b = ort.run(batch).astype(np.float64), ov.run(batch).astype(np.float64)
    cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() >= 0.999
    assert ov.settings()["precision"] == "int8"


def _message(runtime, batch):
    with pytest.raises(ToolkitError) as caught:
        runtime.run(batch)
    return str(caught.value)


def test_bad_input_gets_the_same_sentences_as_onnx_runtime(files):
    for path, bad in (
        (files["fp32"], np.zeros((2, 3, 16, 16), np.float32)),  # wrong shape
        (files["fp32"], np.array([["a"]])),  # wrong element type
        (files["static"], np.zeros((3, 3, 32, 32), np.float32)),  # a batch the fixed-batch file does not take
    ):
        ort, ov = open_runtime(path), open_runtime(path, RuntimeOptions(backend="openvino"))
        assert _message(ov, bad) == _message(ort, bad).replace("onnxruntime", "openvino")
    static = open_runtime(files["static"], RuntimeOptions(backend="openvino"))
    assert static.run(np.zeros((4, 3, 32, 32), np.float32)).shape == (4, 10)


def test_bf16_is_refused_on_a_cpu_without_it(files):
    from deploy.runtimes.openvino import OpenVinoRuntime

    refused = "BF16 in OpenVINO needs an x86 CPU with native BF16 .*this one .x86_64. has avx2, avx512f.*: run the model in FP32 here"
    with pytest.raises(ToolkitError, match=refused):
        OpenVinoRuntime(files["fp32"], precision="bf16", features=WITHOUT_BF16)
    with pytest.raises(ToolkitError, match="OpenVINO computes in fp32 or bf16, not fp16"):
        OpenVinoRuntime(files["fp32"], precision="fp16")


def test_the_throughput_hint_splits_a_batch_and_gives_the_same_logits(files):
    latency = open_runtime(files["fp32"], RuntimeOptions(backend="openvino"))
    throughput = open_runtime(files["fp32"], RuntimeOptions(backend="openvino", openvino_hint="throughput"))
    x = latency.random_input(7)
    assert np.array_equal(latency.run(x), throughput.run(x))
    # Split into as many requests as OpenVINO finds best for this CPU (asked here on its own), each
    # compiled for its part of the batch; one request (one part) with the latency hint.
    import openvino

    core = openvino.Core()
    probe = core.compile_model(core.read_model(str(files["fp32"])), "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
    streams = min(7, int(probe.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    _, requests, part = throughput._requests(7)
    assert part == -(-7 // streams) and (streams == 1 or len(requests) == streams)
    assert part < 7 or streams == 1
    assert latency._requests(7)[2] == 7


def test_auto_follows_the_documented_rule(files, monkeypatch):
    from deploy.runtimes import gpu

    monkeypatch.setattr(gpu, "cuda_available", lambda: False)
    vnni = CpuFeatures.probe().vnni
    assert choose_backend(files["fp32"], RuntimeOptions()) == "onnxruntime"
    assert choose_backend(files["int8"], RuntimeOptions()) == ("openvino" if vnni else "onnxruntime")
    assert choose_backend(files["fp32"], RuntimeOptions(precision="bf16")) == "openvino"
    monkeypatch.setattr(CpuFeatures, "probe", classmethod(lambda cls: CpuFeatures(("avx2",))))
    assert choose_backend(files["int8"], RuntimeOptions()) == "onnxruntime"  # no VNNI: ONNX Runtime


def test_a_bundle_names_openvino_and_falls_back_to_onnx_runtime(files, tmp_path, monkeypatch):
    from toolkit.files import on_notice

    said = []
    on_notice(said.append)
    bundle = write_bundle(files["fp32"], tmp_path / "b", backend="openvino", precision="fp32")
    assert bundle.manifest["runtime"] == {"backend": "openvino", "precision": "fp32", "fallback": "onnxruntime"}
    assert open_bundle(Bundle.open(tmp_path / "b")).backend == "openvino"
    write_bundle(files["fp32"], tmp_path / "b16", backend="openvino", precision="bf16")
    # A board whose CPU has no BF16 (the probe's result): ONNX Runtime, said on stderr.
    monkeypatch.setattr(CpuFeatures, "probe", classmethod(lambda cls: WITHOUT_BF16))
    assert open_bundle(Bundle.open(tmp_path / "b16")).backend == "onnxruntime"
    on_notice(None)
    assert any("running it in ONNX Runtime" in line for line in said)
    with pytest.raises(ToolkitError, match="native BF16"):
        open_bundle(Bundle.open(tmp_path / "b16"), backend="openvino")
    with pytest.raises(ToolkitError, match="add --backend openvino"):
        write_bundle(files["fp32"], tmp_path / "c", precision="bf16")


@needs_bf16
def test_the_benchmark_labels_and_records_openvino_bf16_against_the_file_in_onnx_runtime(files, tmp_path):
    out = tmp_path / "b.json"
    result = CliRunner().invoke(
        bench_main,
        [
            str(files["fp32"]),
            "--backend",
            "openvino",
            "--precision",
            "bf16",
            "--vs",
            str(files["fp32"]),
            "--batch",
            "1",
            "--iterations",
            "3",
            "--warmup",
            "1",
            "--no-peak",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    run = json.loads(out.read_text())
    first, second = run["measurements"]
    assert (
        first["label"] == f"{files['fp32'].name} (openvino cpu bf16)"
        and first["extra"]["settings"]["precision"] == "bf16"
    )
    assert second["label"] == f"{files['fp32'].name} (onnxruntime cpu)"  # the --vs file: its own backend, FP32
    assert run["machine"]["versions"]["openvino"] and "avx512_bf16" in run["machine"]["cpu_flags"]
