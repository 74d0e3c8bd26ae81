"""The GPU checks in one command: the test suite, exports validated in FP16 arithmetic, and the
GPU backends measured against bare loops, written to `benchmark/results/gpu-<card>.{json,md}`.

    tools/gpu-check                    # on a machine with a CUDA GPU (and onnxruntime-gpu)
    tools/gpu-check --skip-tests --skip-compile --batches 1,32
    python -m benchmark.gpu_check --smoke --output-dir /tmp/x     # the same steps, tiny, on any machine

Steps (each says how long it took; the whole aims at 5 minutes on an H100/H200):

1. the test suite (`pytest -n 4` with `OMP_NUM_THREADS=4` when pytest-xdist is there), so every
   GPU test runs for real;
2. ResNet-50 exported at opset 17 in FP32 and FP16, validated (FP16 on CUDA: FP16 arithmetic);
3. `resnet-bench`'s harness at batch 1, 32, 256: ONNX Runtime on CUDA (FP32 and FP16, with and
   without CUDA graphs), PyTorch (FP32 and FP16 eager, channels-last + CUDA graphs, and FP16
   `torch.compile`); copies included, split by CUDA events;
4. bare loops as references, in the same process: ONNX Runtime with IOBinding and a CUDA graph
   (the options a tuned user would write by hand), and PyTorch replaying a CUDA graph; the harness
   (without copies) must be within 5% of each;
5. the targets: ONNX Runtime CUDA FP16 at least 10,500 img/s at batch 256 and at most 0.75 ms at
   batch 1, copies included.

The bare loops are written here on purpose, apart from `deploy.runtimes`: a reference must not
share the code it checks. `--smoke` runs every step on a CIFAR ResNet-20 at batch 1 and 2 for a
few milliseconds each, on the CPU where there is no GPU (ONNX Runtime and PyTorch on the CPU
stand in), so that the script itself is tested anywhere.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
FIDELITY_TOLERANCE = 0.05
# Public reference figures: NVIDIA DeepLearningExamples (PaddlePaddle RN50v1.5 README), TensorRT
# ResNet-50 FP16 on an A100 80GB: batch -> (latency ms, img/s).
DLE_A100_TRT_FP16 = {1: (0.76, 1306), 32: (2.45, 13078), 128: (None, 16387), 256: (None, 17364)}
TARGET_IMAGES_PER_SECOND_256 = 10_500
TARGET_LATENCY_MS_1 = 0.75


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


class Steps:
    """Prints each step as it starts and records how long it took."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._name, self._start = None, 0.0

    def start(self, name: str) -> None:
        self.finish()
        print(f"\n== {name}", flush=True)
        self._name, self._start = name, time.perf_counter()

    def finish(self) -> None:
        if self._name is not None:
            self.seconds[self._name] = round(time.perf_counter() - self._start, 1)
            print(f"   ({self.seconds[self._name]} s)", flush=True)
            self._name = None


def run_tests(timeout: int) -> dict:
    """The whole suite in a subprocess: its summary line, exit status and duration."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    if importlib.util.find_spec("xdist") is not None:
        command += ["-n", "4"]
        environment["OMP_NUM_THREADS"] = "4"
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout)
        lines = done.stdout.strip().splitlines()
        summary, status = (lines[-1] if lines else done.stderr.strip()[-300:]), done.returncode
        failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    except subprocess.TimeoutExpired:
        summary, status, failed = f"did not finish within {timeout} s", None, []
    print(f"   {summary}", flush=True)
    for line in failed:
        print(f"   {line}", flush=True)
    return {
        "command": " ".join(command),
        "summary": summary,
        "returncode": status,
        "failed": failed,
        "seconds": round(time.perf_counter() - start, 1),
    }


def export_models(model, folder: Path, on_gpu: bool) -> tuple[dict[str, Path], list[dict]]:
    from export import export_onnx

    paths, records = {}, []
    for precision in ("fp32", "fp16"):
        path = folder / f"{model.name}_{precision}.onnx"
        report = export_onnx(model, path, opset=17, precision=precision, validate_on="auto")
        paths[precision] = path
        v = report.validation
        records.append(
            {
                "file": path.name,
                "precision": precision,
                "validated_on": v.device,
                "cosine": v.cosine,
                "scaled_error": v.scaled_error,
                "top1_agreement": v.top1_agreement,
                "notes": v.notes,
                "seconds": round(report.timings["total_s"], 2),
            }
        )
        print(
            f"   {path.name}: validated on {v.device}, cosine {v.cosine:.6f}, error {v.scaled_error:.2g} of the logit scale",
            flush=True,
        )
    return paths, records


def bare_ort_loop(path: Path, batch: int, iterations: int, warmup: int, on_gpu: bool) -> list[float]:
    """ONNX Runtime timed by hand: on a GPU with IOBinding on device buffers, a CUDA graph and its
    own stream, each run between two CUDA events (milliseconds); on a CPU, `session.run`."""
    import onnxruntime as ort

    if not on_gpu:
        from .fidelity import bare_iteration

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inp = session.get_inputs()[0]
        x = np.random.default_rng(0).standard_normal((batch, *inp.shape[1:]), dtype=np.float32)
        for _ in range(warmup):
            bare_iteration(session, inp.name, x)
        return [bare_iteration(session, inp.name, x) for _ in range(iterations)]
    stream = torch.cuda.Stream()
    options = {
        "device_id": "0",
        "has_user_compute_stream": "1",
        "user_compute_stream": str(stream.cuda_stream),
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "prefer_nhwc": "1",
        "enable_cuda_graph": "1",
    }
    session = ort.InferenceSession(str(path), providers=[("CUDAExecutionProvider", options)])
    inp, out = session.get_inputs()[0], session.get_outputs()[0]
    half = inp.type == "tensor(float16)"
    x = torch.randn(batch, *inp.shape[1:], device="cuda").to(torch.float16 if half else torch.float32)
    y = torch.empty(
        batch, out.shape[1], device="cuda", dtype=torch.float16 if out.type == "tensor(float16)" else torch.float32
    )
    binding = session.io_binding()
    binding.bind_input(inp.name, "cuda", 0, np.float16 if half else np.float32, tuple(x.shape), x.data_ptr())
    binding.bind_output(
        out.name, "cuda", 0, np.float16 if y.dtype == torch.float16 else np.float32, tuple(y.shape), y.data_ptr()
    )
    run_options = ort.RunOptions()
    run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
    torch.cuda.synchronize()
    for _ in range(warmup):
        session.run_with_iobinding(binding, run_options)
    stream.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(iterations):
        start.record(stream)
        session.run_with_iobinding(binding, run_options)
        end.record(stream)
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def bare_torch_loop(model, batch: int, iterations: int, warmup: int, on_gpu: bool) -> list[float]:
    """PyTorch timed by hand: FP16 channels-last replaying a CUDA graph on a GPU (CUDA events),
    a plain FP32 forward on a CPU (perf_counter); milliseconds."""
    spec = model.input_spec
    if not on_gpu:
        model = model.eval()
        x = torch.randn(batch, spec.channels, spec.height, spec.width)
        times = []
        with torch.inference_mode():
            for index in range(warmup + iterations):
                start = time.perf_counter()
                model(x)
                if index >= warmup:
                    times.append((time.perf_counter() - start) * 1e3)
        return times
    model = model.eval().cuda().half().to(memory_format=torch.channels_last)
    x = torch.randn(batch, spec.channels, spec.height, spec.width, device="cuda", dtype=torch.float16)
    x = x.contiguous(memory_format=torch.channels_last)
    stream = torch.cuda.Stream()
    with torch.inference_mode():
        with torch.cuda.stream(stream):
            for _ in range(3):
                model(x)
        stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            model(x)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.cuda.stream(stream):
            for _ in range(warmup):
                graph.replay()
            stream.synchronize()
            times = []
            for _ in range(iterations):
                start.record(stream)
                graph.replay()
                end.record(stream)
                end.synchronize()
                times.append(start.elapsed_time(end))
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,32,256")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per configuration and batch")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds of warm-up per configuration and batch")
    parser.add_argument("--skip-tests", action="store_true", help="do not run the test suite first")
    parser.add_argument("--tests-timeout", type=int, default=240)
    parser.add_argument(
        "--skip-compile", action="store_true", help="skip torch.compile (about a minute per batch size)"
    )
    parser.add_argument("--smoke", action="store_true", help="every step, tiny (CIFAR ResNet-20, batch 1 and 2)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import resnet
    from deploy.runtimes import RuntimeOptions, default_provider, open_runtime
    from deploy.runtimes.pytorch import torch_runtime

    from .harness import LoopSettings
    from .report import to_markdown
    from .run import run_benchmark
    from .targets import Target

    on_gpu = torch.cuda.is_available()
    if not on_gpu and not args.smoke:
        print("gpu_check: no CUDA GPU visible (--smoke runs the same steps on the CPU)", file=sys.stderr)
        return 2
    ort_on_gpu = on_gpu and default_provider() == "cuda"
    if on_gpu and not ort_on_gpu and not args.smoke:
        from deploy.runtimes import provider_problem

        print(f"gpu_check: ONNX Runtime's CUDA provider can't run here: {provider_problem('cuda')}", file=sys.stderr)
        return 2
    if args.smoke:
        args.batches, args.duration, args.warmup, args.skip_tests, args.skip_compile = "1,2", 0.02, 0.0, True, True
    batches = [int(b) for b in args.batches.split(",")]
    settings = LoopSettings(warmup_seconds=args.warmup, duration=args.duration)
    no_copies = LoopSettings(warmup_seconds=args.warmup, duration=args.duration, data_transfers=False)
    card = torch.cuda.get_device_name() if on_gpu else "cpu"
    device = "cuda" if on_gpu else "cpu"
    steps = Steps()
    results: dict = {
        "card": card,
        "command": "tools/gpu-check " + " ".join(argv if argv is not None else sys.argv[1:]),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "smoke": args.smoke,
    }

    if not args.skip_tests:
        steps.start("the test suite")
        results["tests"] = run_tests(args.tests_timeout)

    steps.start("exports (opset 17, FP32 and FP16)")
    model = resnet.create(20, "cifar10") if args.smoke else resnet.create(50)
    folder = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    paths, results["exports"] = export_models(model, folder, on_gpu)

    runs: list[dict] = []

    def measure(name: str, runtime, loop: LoopSettings = settings) -> dict:
        target = Target(name, runtime, runtime.info)
        try:
            run = run_benchmark([target], batches, loop, measure_peak=False)
        finally:
            runtime.close()
            if on_gpu:
                torch.cuda.empty_cache()
        for m in run.measurements:
            print(
                f"   {name:<44} batch {m.batch:>4}: {m.images_per_second:>10,.1f} img/s, median {m.latency.median:.3f} ms",
                flush=True,
            )
        record = {"name": name, "run": run.to_dict(), "markdown": to_markdown(run)}
        runs.append(record)
        return record

    steps.start("ONNX Runtime" + (" on CUDA (IOBinding)" if ort_on_gpu else " on the CPU (no GPU: smoke)"))
    provider = "cuda" if ort_on_gpu else "cpu"
    for precision in ("fp32", "fp16"):
        for graphs in (False, True) if ort_on_gpu else (False,):
            options = RuntimeOptions(provider=provider, cuda_graphs=graphs, max_batch=max(batches))
            name = f"onnxruntime {provider} {precision}" + (" cuda-graphs" if graphs else "")
            measure(name, open_runtime(paths[precision], options))
    if ort_on_gpu:
        options = RuntimeOptions(provider="cuda", cuda_graphs=True, max_batch=max(batches))
        ort_reference = measure(
            "onnxruntime cuda fp16 cuda-graphs, no copies", open_runtime(paths["fp16"], options), no_copies
        )

    steps.start("PyTorch" + (" on CUDA" if on_gpu else " on the CPU (no GPU: smoke)"))
    configurations = [
        ("fp32", False, False, False),
        ("fp16", False, False, False),
        ("fp32", True, True, False),
        ("fp16", True, True, False),
    ]
    if not args.skip_compile:
        configurations.append(("fp16", True, True, True))
    if not on_gpu:
        configurations = [("fp32", False, False, False), ("fp32", True, False, False)]
    for precision, channels_last, graphs, compiled in configurations:
        options = RuntimeOptions(
            device=device,
            precision=precision,
            channels_last=channels_last,
            cuda_graphs=graphs,
            compile=compiled,
            max_batch=max(batches),
        )
        words = [
            "compile" if compiled else "eager",
            "channels-last" if channels_last else "",
            "cuda-graphs" if graphs else "",
        ]
        measure(f"pytorch {precision} {' '.join(filter(None, words))}", torch_runtime(model, options))
    if on_gpu:
        options = RuntimeOptions(
            device="cuda", precision="fp16", channels_last=True, cuda_graphs=True, max_batch=max(batches)
        )
        torch_reference = measure(
            "pytorch fp16 channels-last cuda-graphs, no copies", torch_runtime(model, options), no_copies
        )

    steps.start("bare loops (the references) against the harness")
    fidelity = []
    iterations = 20 if args.smoke else 200
    # The bare PyTorch loops build a fresh model: torch_runtime converted `model` in place.
    pairs = []
    if on_gpu:
        pairs = [
            (
                "onnxruntime cuda fp16 cuda-graphs",
                ort_reference,
                lambda b: bare_ort_loop(paths["fp16"], b, iterations, 20, True),
            ),
            (
                "pytorch fp16 channels-last cuda-graphs",
                torch_reference,
                lambda b: bare_torch_loop(resnet.create(model.depth, model.dataset), b, iterations, 20, True),
            ),
        ]
    else:
        pairs = [
            ("onnxruntime cpu fp32", runs[0], lambda b: bare_ort_loop(paths["fp32"], b, iterations, 2, False)),
            (
                "pytorch fp32 eager",
                next(r for r in runs if r["name"] == "pytorch fp32 eager"),
                lambda b: bare_torch_loop(resnet.create(model.depth, model.dataset), b, iterations, 2, False),
            ),
        ]
    for name, record, bare in pairs:
        for m in record["run"]["measurements"]:
            bare_ms = statistics.median(bare(m["batch"]))
            harness_ms = m["latency"]["median"]
            difference = harness_ms / bare_ms - 1
            fidelity.append(
                {
                    "backend": name,
                    "batch": m["batch"],
                    "harness_ms": harness_ms,
                    "bare_ms": bare_ms,
                    "difference": difference,
                    "within": abs(difference) <= FIDELITY_TOLERANCE,
                }
            )
            print(
                f"   {name:<40} batch {m['batch']:>4}: harness {harness_ms:.3f} ms, bare {bare_ms:.3f} ms "
                f"({difference:+.1%})",
                flush=True,
            )
    steps.finish()
    results["fidelity"] = fidelity

    targets = []
    if ort_on_gpu:
        fp16 = next(r for r in runs if r["name"] == "onnxruntime cuda fp16 cuda-graphs")["run"]["measurements"]
        by_batch = {m["batch"]: m for m in fp16}
        if 256 in by_batch:
            value = by_batch[256]["images_per_second"]
            targets.append(
                {
                    "what": "ONNX Runtime CUDA FP16, batch 256, copies included: img/s",
                    "value": value,
                    "limit": f">= {TARGET_IMAGES_PER_SECOND_256}",
                    "met": value >= TARGET_IMAGES_PER_SECOND_256,
                }
            )
        if 1 in by_batch:
            value = by_batch[1]["latency"]["median"]
            targets.append(
                {
                    "what": "ONNX Runtime CUDA FP16, batch 1, copies included: median ms",
                    "value": value,
                    "limit": f"<= {TARGET_LATENCY_MS_1}",
                    "met": value <= TARGET_LATENCY_MS_1,
                }
            )
    targets += [
        {
            "what": f"harness within {FIDELITY_TOLERANCE:.0%} of the bare loop: {f['backend']}, batch {f['batch']}",
            "value": f["difference"],
            "limit": f"|x| <= {FIDELITY_TOLERANCE}",
            "met": f["within"],
        }
        for f in fidelity
    ]
    results.update(
        targets=targets,
        steps=steps.seconds,
        runs=[{k: r[k] for k in ("name", "run")} for r in runs],
        reference_dle_a100_tensorrt_fp16={
            str(b): {"latency_ms": ms, "images_per_second": t} for b, (ms, t) in DLE_A100_TRT_FP16.items()
        },
    )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = args.output_dir / f"gpu-{slug(card)}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    stem.with_suffix(".md").write_text(markdown(results, runs))
    print(f"\nwrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")
    tests_failed = results.get("tests", {}).get("returncode") not in (None, 0)
    return 1 if tests_failed or not all(t["met"] for t in targets) else 0


def markdown(results: dict, runs: list[dict]) -> str:
    lines = [f"# GPU checks on {results['card']}", "", f"Command: `{results['command']}`, {results['created']}.", ""]
    if "tests" in results:
        t = results["tests"]
        lines += [f"Test suite: {t['summary']} (`{t['command']}`).", ""]
        lines += [f"- {line}" for line in t["failed"]] + ([""] if t["failed"] else [])
    lines += [
        "## Exports (opset 17)",
        "",
        "| file | validated on | cosine | error / logit scale | notes |",
        "|---|---|---:|---:|---|",
    ]
    lines += [
        f"| {e['file']} | {e['validated_on']} | {e['cosine']:.6f} | {e['scaled_error']:.2g} | {'; '.join(e['notes'])} |"
        for e in results["exports"]
    ]
    batches = sorted({m["batch"] for r in runs for m in r["run"]["measurements"]})
    lines += [
        "",
        "## Throughput (img/s) and median latency (ms), host copies included unless said",
        "",
        "| configuration | " + " | ".join(f"batch {b}" for b in batches) + " |",
        "|---|" + "---:|" * len(batches),
    ]
    for r in runs:
        cells = {
            m["batch"]: f"{m['images_per_second']:,.0f} / {m['latency']['median']:.3f}"
            for m in r["run"]["measurements"]
        }
        lines.append(f"| {r['name']} | " + " | ".join(cells.get(b, "") for b in batches) + " |")
    lines += [
        "",
        "## The harness against bare loops",
        "",
        "| backend | batch | harness ms | bare ms | difference |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {f['backend']} | {f['batch']} | {f['harness_ms']:.3f} | {f['bare_ms']:.3f} | {f['difference']:+.1%} |"
        for f in results["fidelity"]
    ]
    lines += ["", "## Targets", "", "| target | value | limit | met |", "|---|---:|---|---|"]
    lines += [
        f"| {t['what']} | {t['value']:.4g} | {t['limit']} | {'yes' if t['met'] else 'NO'} |" for t in results["targets"]
    ]
    lines += [
        "",
        "Reference, not measured here: TensorRT ResNet-50 FP16 on an A100 80GB (NVIDIA DeepLearningExamples): "
        "batch 1: 0.76 ms, 1,306 img/s; batch 32: 2.45 ms, 13,078 img/s; batch 256: 17,364 img/s.",
        "",
        "Steps: " + ", ".join(f"{k} {v} s" for k, v in results["steps"].items()) + ".",
        "",
        "## Every run",
        "",
    ]
    for r in runs:
        lines += [f"### {r['name']}", "", r["markdown"], ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
