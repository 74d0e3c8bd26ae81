#!/usr/bin/env python3
"""The GPU checks in one command: the test suite, exports validated in FP16 arithmetic, and the
GPU backends measured against bare loops, written to `benchmark/results/gpu-<card>.{json,md}`.

    tools/gpu-check                    # on a machine with a CUDA GPU (and onnxruntime-gpu)
    tools/gpu-check --skip-tests --skip-compile --batches 1,32
    PYTHONPATH=. python3 tools/gpu_check.py --smoke --output-dir /tmp/x    # the same steps, tiny, anywhere

Steps (each says how long it took; the whole aims at 5 minutes on an H100/H200):

1. the test suite (`pytest -n 4` with `OMP_NUM_THREADS=4` when pytest-xdist is there), so every
   GPU test runs for real;
2. ResNet-50 exported at opset 17 in FP32 and FP16, validated (FP16 on CUDA: FP16 arithmetic);
3. `resnet-bench`'s harness at batch 1, 32, 256: ONNX Runtime on CUDA (FP32 and FP16, with and
   without CUDA graphs), PyTorch (FP32 and FP16 eager, channels-last + CUDA graphs, and FP16
   `torch.compile`); copies included, split by CUDA events;
4. bare loops as references, in the same process (`benchmark.fidelity`: ONNX Runtime with
   IOBinding and a CUDA graph, the options a tuned user would write by hand, and PyTorch
   replaying a CUDA graph); the harness (without copies) must be within 5% of each;
5. `resnet-bench --profile` of the FP16 file on ONNX Runtime CUDA at batch 1 and 32 (each layer
   from ONNX Runtime's profiler on a CUDA session with the runtime's options): stages and gap;
5b. the board's GPU path with PyTorch unimportable (`tools/board_gpu_path.py`): the driver's probe,
   the CUDA runtime's device memory through ctypes, ONNX Runtime's CUDA provider on host arrays and,
   with TensorRT, the engine through `TensorRTHostRuntime`, each against the CPU;
6. the targets: ONNX Runtime CUDA FP16 at least 10,500 img/s at batch 256 and at most 0.75 ms at
   batch 1, copies included.

A thin script over library calls (`export.export_onnx`, `benchmark.run_benchmark`,
`benchmark.fidelity`); the results are written atomically. `--smoke` runs every step on a CIFAR
ResNet-20 at batch 1 and 2 for a few milliseconds each, on the CPU where there is no GPU (ONNX
Runtime and PyTorch on the CPU stand in), so that the script itself is tested anywhere. Exit
status: 0 when the tests pass and every target is met, 1 otherwise, 2 when there is no GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from board_gpu_path import board_targets, run_board_path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmark" / "results"
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


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
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
    if args.smoke:
        args.batches, args.duration, args.warmup, args.skip_tests, args.skip_compile = "1,2", 0.02, 0.0, True, True
    args.batches = [int(b) for b in args.batches.split(",")]
    return args


def machine_problem(smoke: bool) -> str | None:
    """Why the checks can't run here (no GPU, or ONNX Runtime's CUDA provider can't run); None
    when they can (with --smoke, always)."""
    from deploy.runtimes import default_provider, provider_problem

    if smoke:
        return None
    if not torch.cuda.is_available():
        return "no CUDA GPU visible (--smoke runs the same steps on the CPU)"
    if default_provider() != "cuda":
        return f"ONNX Runtime's CUDA provider can't run here: {provider_problem('cuda')}"
    return None


class Measurements:
    """The harness runs, by name: each configuration over the batch sizes, one `run_benchmark`."""

    def __init__(self, batches: list[int], warmup: float, duration: float, on_gpu: bool) -> None:
        from benchmark.harness import LoopSettings

        self.batches, self.on_gpu, self.runs = batches, on_gpu, []
        self.settings = LoopSettings(warmup_seconds=warmup, duration=duration)
        self.no_copies = LoopSettings(warmup_seconds=warmup, duration=duration, data_transfers=False)

    def measure(self, name: str, runtime, copies: bool = True) -> dict:
        from benchmark.report import to_markdown
        from benchmark.run import run_benchmark
        from benchmark.targets import Target

        try:
            run = run_benchmark(
                [Target(name, runtime, runtime.info)],
                self.batches,
                self.settings if copies else self.no_copies,
                measure_peak=False,
            )
        finally:
            runtime.close()
            if self.on_gpu:
                torch.cuda.empty_cache()
        for m in run.measurements:
            print(
                f"   {name:<44} batch {m.batch:>4}: {m.images_per_second:>10,.1f} img/s, median {m.latency.median:.3f} ms",
                flush=True,
            )
        record = {"name": name, "run": run.to_dict(), "markdown": to_markdown(run)}
        self.runs.append(record)
        return record

    def named(self, name: str) -> dict:
        return next(r for r in self.runs if r["name"] == name)


def measure_onnxruntime(runs: Measurements, paths: dict[str, Path]) -> None:
    """ONNX Runtime on CUDA (FP32 and FP16, with and without CUDA graphs, and FP16 with graphs
    without copies: the reference the bare loop checks); on the CPU (smoke) FP32 and FP16."""
    from deploy.runtimes import RuntimeOptions, open_runtime

    provider = "cuda" if runs.on_gpu else "cpu"
    for precision in ("fp32", "fp16"):
        for graphs in (False, True) if runs.on_gpu else (False,):
            options = RuntimeOptions(provider=provider, cuda_graphs=graphs, buffer_rows=max(runs.batches))
            name = f"onnxruntime {provider} {precision}" + (" cuda-graphs" if graphs else "")
            runs.measure(name, open_runtime(paths[precision], options))
    if runs.on_gpu:
        options = RuntimeOptions(provider="cuda", cuda_graphs=True, buffer_rows=max(runs.batches))
        runs.measure("onnxruntime cuda fp16 cuda-graphs, no copies", open_runtime(paths["fp16"], options), copies=False)


def profile_onnxruntime(paths: dict[str, Path], on_gpu: bool, smoke: bool) -> list[dict]:
    """`resnet-bench FP16.onnx --profile --batch 1,32` (on the CPU in smoke): each measurement's
    stages, gap and profiler."""
    from benchmark.harness import LoopSettings
    from benchmark.run import benchmark_models
    from deploy.runtimes import RuntimeOptions

    options = RuntimeOptions(provider="cuda" if on_gpu else "cpu")
    settings = LoopSettings(warmup_seconds=0.05 if smoke else 0.5, duration=0.05 if smoke else 1.0)
    run = benchmark_models(str(paths["fp16"]), None, [1, 2] if smoke else [1, 32], options, settings,
                           measure_peak=False, profile=True)  # fmt: skip
    return [
        {
            "batch": m.batch,
            "profiler": m.profile.profiler,
            "stages": {s["name"]: round(s["share"], 4) for s in m.profile.stages},
            "measured_ms": m.profile.measured_ms,
            "gap_ms": m.profile.gap_ms,
        }
        for m in run.measurements
    ]


def measure_pytorch(runs: Measurements, model, compile_: bool) -> None:
    """PyTorch FP32 and FP16 eager, channels-last + CUDA graphs (and FP16 torch.compile), and FP16
    channels-last graphs without copies (the bare loop's reference); on the CPU (smoke) FP32
    eager and channels-last."""
    from deploy.runtimes import RuntimeOptions
    from deploy.runtimes.pytorch import torch_runtime

    configurations = [("fp32", False, False, False), ("fp16", False, False, False)]
    configurations += [("fp32", True, True, False), ("fp16", True, True, False)]
    configurations += [("fp16", True, True, True)] if compile_ else []
    if not runs.on_gpu:
        configurations = [("fp32", False, False, False), ("fp32", True, False, False)]
    for precision, channels_last, graphs, compiled in configurations:
        options = RuntimeOptions(
            device="cuda" if runs.on_gpu else "cpu",
            precision=precision,
            channels_last=channels_last,
            cuda_graphs=graphs,
            compile=compiled,
            buffer_rows=max(runs.batches),
        )
        words = [
            "compile" if compiled else "eager",
            "channels-last" if channels_last else "",
            "cuda-graphs" if graphs else "",
        ]
        runs.measure(f"pytorch {precision} {' '.join(filter(None, words))}", torch_runtime(model, options))
    if runs.on_gpu:
        options = RuntimeOptions(
            device="cuda", precision="fp16", channels_last=True, cuda_graphs=True, buffer_rows=max(runs.batches)
        )
        runs.measure("pytorch fp16 channels-last cuda-graphs, no copies", torch_runtime(model, options), copies=False)


def fidelity(runs: Measurements, paths: dict[str, Path], model, smoke: bool) -> list[dict]:
    """The harness against the bare loops of `benchmark.fidelity`, batch by batch."""
    import resnet
    from benchmark.fidelity import against_bare, bare_ort_loop, bare_torch_loop

    iterations, warmup, gpu = (20 if smoke else 200), (20 if runs.on_gpu else 2), runs.on_gpu
    fresh = lambda: resnet.create(model.depth, model.dataset)  # noqa: E731 - a bare loop converts its model in place
    # On a GPU the references run without copies, as the bare loops do; on a CPU there are none.
    if gpu:
        ort, torch_name, measured = (
            "onnxruntime cuda fp16 cuda-graphs",
            "pytorch fp16 channels-last cuda-graphs",
            ", no copies",
        )
    else:
        ort, torch_name, measured = "onnxruntime cpu fp32", "pytorch fp32 eager", ""
    pairs = [
        (ort, lambda b: bare_ort_loop(paths["fp16" if gpu else "fp32"], b, iterations, warmup, gpu)),
        (torch_name, lambda b: bare_torch_loop(fresh(), b, iterations, warmup, gpu)),
    ]
    records = []
    for name, bare in pairs:
        records += against_bare(name, runs.named(name + measured)["run"]["measurements"], bare, FIDELITY_TOLERANCE)
    for f in records:
        print(
            f"   {f['backend']:<40} batch {f['batch']:>4}: harness {f['harness_ms']:.3f} ms, bare {f['bare_ms']:.3f} ms "
            f"({f['difference']:+.1%})",
            flush=True,
        )
    return records


def targets(runs: Measurements, fidelity_records: list[dict]) -> list[dict]:
    """The targets and whether each was met: ONNX Runtime CUDA FP16's throughput at batch 256 and
    latency at batch 1 (copies included), and every harness-against-bare-loop figure."""
    found = []
    if runs.on_gpu:
        by_batch = {m["batch"]: m for m in runs.named("onnxruntime cuda fp16 cuda-graphs")["run"]["measurements"]}
        if 256 in by_batch:
            value = by_batch[256]["images_per_second"]
            what = "ONNX Runtime CUDA FP16, batch 256, copies included: img/s"
            found.append(
                {
                    "what": what,
                    "value": value,
                    "limit": f">= {TARGET_IMAGES_PER_SECOND_256}",
                    "met": value >= TARGET_IMAGES_PER_SECOND_256,
                }
            )
        if 1 in by_batch:
            value = by_batch[1]["latency"]["median"]
            what = "ONNX Runtime CUDA FP16, batch 1, copies included: median ms"
            found.append(
                {
                    "what": what,
                    "value": value,
                    "limit": f"<= {TARGET_LATENCY_MS_1}",
                    "met": value <= TARGET_LATENCY_MS_1,
                }
            )
    for f in fidelity_records:
        what = f"harness within {FIDELITY_TOLERANCE:.0%} of the bare loop: {f['backend']}, batch {f['batch']}"
        found.append(
            {"what": what, "value": f["difference"], "limit": f"|x| <= {FIDELITY_TOLERANCE}", "met": f["within"]}
        )
    return found


def write_results(results: dict, runs: list[dict], folder: Path) -> Path:
    """`gpu-<card>.json` and `.md` in `folder`, each written atomically; returns the JSON's path."""
    from toolkit.files import write_text_atomic

    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"gpu-{slug(results['card'])}"
    write_text_atomic(stem.with_suffix(".json"), json.dumps(results, indent=2, default=str) + "\n")
    write_text_atomic(stem.with_suffix(".md"), markdown(results, runs))
    print(f"\nwrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")
    return stem.with_suffix(".json")


def main(argv: list[str] | None = None) -> int:
    import resnet

    args = parse_arguments(argv)
    problem = machine_problem(args.smoke)
    if problem is not None:
        print(f"gpu_check: {problem}", file=sys.stderr)
        return 2
    on_gpu = torch.cuda.is_available()
    card = torch.cuda.get_device_name() if on_gpu else "cpu"
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
    paths, results["exports"] = export_models(model, Path(tempfile.mkdtemp(prefix="gpu-check-")), on_gpu)
    runs = Measurements(args.batches, args.warmup, args.duration, on_gpu)
    steps.start("ONNX Runtime" + (" on CUDA (IOBinding)" if on_gpu else " on the CPU (no GPU: smoke)"))
    measure_onnxruntime(runs, paths)
    steps.start("PyTorch" + (" on CUDA" if on_gpu else " on the CPU (no GPU: smoke)"))
    measure_pytorch(runs, model, compile_=not args.skip_compile)
    steps.start("bare loops (the references) against the harness")
    results["fidelity"] = fidelity(runs, paths, model, args.smoke)
    steps.start("resnet-bench --profile on ONNX Runtime" + (" CUDA" if on_gpu else " CPU (no GPU: smoke)"))
    results["profiles"] = profile_onnxruntime(paths, on_gpu, args.smoke)
    steps.start("the board's GPU path, PyTorch unimportable" + ("" if on_gpu else " (no GPU: its CPU half)"))
    results["board"] = run_board_path(paths, on_gpu)
    steps.finish()
    results.update(
        targets=targets(runs, results["fidelity"]) + board_targets(results["board"], on_gpu),
        steps=steps.seconds,
        runs=[{k: r[k] for k in ("name", "run")} for r in runs.runs],
        reference_dle_a100_tensorrt_fp16={
            str(b): {"latency_ms": ms, "images_per_second": t} for b, (ms, t) in DLE_A100_TRT_FP16.items()
        },
    )
    write_results(results, runs.runs, args.output_dir)
    tests_failed = results.get("tests", {}).get("returncode") not in (None, 0)
    missed = not args.smoke and not all(t["met"] for t in results["targets"])  # a smoke run's figures judge nothing
    return 1 if tests_failed or missed else 0


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
    lines += ["", "## The board's GPU path, PyTorch unimportable", "", f"`{json.dumps(results['board'])}`"]
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
