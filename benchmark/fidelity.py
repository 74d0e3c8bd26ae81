"""Does the harness distort what it measures? Its median against bare loops written by hand; and
do the per-layer profiles account for the time measured?

    python -m benchmark.fidelity                     # exports ResNet-50 to a temporary file
    python -m benchmark.fidelity --model resnet50.onnx --batch 8 --iterations 60
    python -m benchmark.fidelity --profiles          # ResNet-20 (batch 8) and ResNet-50 (batch 1)

One ONNX Runtime session, the same four random input batches, timed two ways in the same
process: through `benchmark.harness.BatchTimer.iterate` (what resnet-bench does) and by a bare
`session.run(None, {name: x})` between two `time.perf_counter()` calls. The two alternate one
iteration at a time (in alternating order), so that drift of the machine hits both alike.
Passes when the harness median is within --tolerance (3%) of the bare median; exit status 1
otherwise.

`--profiles`: each CPU backend's profile (`benchmark.profile.profile_runtime`: ONNX Runtime,
PyTorch, OpenVINO where installed) of a ResNet-20 at batch 8 and a ResNet-50 at batch 1 (224x224),
the quietest of three: the layers' sum must be within 25% of the latency measured in the same runs
(the gap), and the residual stages must hold at least 80% (ResNet-20) or 85% (ResNet-50) of it.
These are timing figures, so they are checked here, not in the tests (which check the profiles'
structure); exit status 1 when one misses.

The bare GPU loops (`bare_ort_loop`: ONNX Runtime with IOBinding and a CUDA graph; and
`bare_torch_loop`: PyTorch replaying a CUDA graph) are the references `tools/gpu_check.py`
holds the harness to. They are written here on purpose, apart from `deploy.runtimes`: a
reference must not share the code it checks.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def bare_iteration(session, name: str, x) -> float:
    """One `session.run`, timed with nothing around it (milliseconds)."""
    feed = {name: x}
    start = time.perf_counter()
    session.run(None, feed)
    return (time.perf_counter() - start) * 1e3


def bare_ort_loop(path: Path, batch: int, iterations: int, warmup: int, on_gpu: bool) -> list[float]:
    """ONNX Runtime timed by hand: on a GPU with IOBinding on device buffers, a CUDA graph and its
    own stream, each run between two CUDA events (milliseconds); on a CPU, `session.run`."""
    import onnxruntime as ort

    if not on_gpu:
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


def against_bare(name: str, measurements: list[dict], bare, tolerance: float) -> list[dict]:
    """The harness's median at each batch of a run (`Measurement.to_dict()` records) against the
    median of `bare(batch)`, a bare loop's times (ms): one record per batch, within `tolerance`
    or not."""
    records = []
    for m in measurements:
        bare_ms = statistics.median(bare(m["batch"]))
        harness_ms = m["latency"]["median"]
        difference = harness_ms / bare_ms - 1
        records.append(
            {
                "backend": name,
                "batch": m["batch"],
                "harness_ms": harness_ms,
                "bare_ms": bare_ms,
                "difference": difference,
                "within": abs(difference) <= tolerance,
            }
        )
    return records


PROFILE_CASES = ((20, "cifar10", 8, 0.80), (50, "imagenet", 1, 0.85))  # depth, dataset, batch, least share in stages


def profile_fidelity(folder: Path, max_gap: float = 0.25) -> list[dict]:
    """For each of `PROFILE_CASES` and each CPU backend: the quietest of three profiles' gap
    (layers' sum against measured latency) and the share of the residual stages, within bounds or not."""
    from dataclasses import replace

    import resnet
    from deploy.runtimes import RuntimeOptions, open_runtime
    from export import export_onnx

    timed = RuntimeOptions(layer_times=True)

    from .profile import profile_runtime

    records = []
    for depth, dataset, batch, least_share in PROFILE_CASES:
        torch.manual_seed(0)
        model = resnet.create(depth, dataset).eval()
        path = folder / f"resnet{depth}.onnx"
        export_onnx(model, path, validate=False)
        runtimes = [open_runtime(path, timed), open_runtime(model, replace(timed, device="cpu"))]
        try:
            runtimes.append(open_runtime(path, replace(timed, backend="openvino")))
        except Exception:  # noqa: BLE001 - OpenVINO is optional
            pass
        for runtime in runtimes:
            profile = min(
                (profile_runtime(runtime, batch, runs=5, warmup=2) for _ in range(3)), key=lambda p: abs(p.gap_ms)
            )
            share = sum(s["share"] for s in profile.stages if s["name"].startswith("layer"))
            gap = profile.gap_ms / profile.measured_ms
            records.append(
                {
                    "model": f"resnet{depth}",
                    "backend": runtime.backend,
                    "batch": batch,
                    "gap": gap,
                    "stages_share": share,
                    "within": abs(gap) <= max_gap and share >= least_share,
                }
            )
            runtime.close()
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profiles", action="store_true", help="check the per-layer profiles instead (see above)")
    parser.add_argument("--model", help="ONNX file (default: ResNet-50 exported to a temporary folder)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=150, help="iterations per method")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tolerance", type=float, default=0.03)
    args = parser.parse_args(argv)
    if args.profiles:
        with tempfile.TemporaryDirectory() as folder:
            records = profile_fidelity(Path(folder))
        for r in records:
            print(
                f"{r['model']} batch {r['batch']} {r['backend']:12s} gap {r['gap']:+.1%}, residual stages "
                f"{r['stages_share']:.1%}: {'within' if r['within'] else 'OUTSIDE'}"
            )
        return 0 if all(r["within"] for r in records) else 1

    from deploy.runtimes.onnxruntime import OrtRuntime

    from .harness import BatchTimer, LoopSettings

    with tempfile.TemporaryDirectory() as folder:
        path = Path(args.model) if args.model else Path(folder) / "resnet50.onnx"
        if not args.model:
            import resnet
            from export import export_onnx

            export_onnx(resnet.create(50), path, validate=False)
        runtime = OrtRuntime(path, threads=args.threads)
        timer = BatchTimer("harness", runtime, args.batch)
        timer.warm_up(LoopSettings(warmup_iterations=5, warmup_seconds=None))
        bare: list[float] = []
        for i in range(args.iterations):
            x = timer.inputs[i % len(timer.inputs)]  # the input the harness uses next
            if i % 2:
                timer.iterate()
                bare.append(bare_iteration(runtime.session, runtime.input_name, x))
            else:
                bare.append(bare_iteration(runtime.session, runtime.input_name, x))
                timer.iterate()
        harness = timer.samples["latency"]
    h, b = statistics.median(harness), statistics.median(bare)
    difference = h / b - 1
    print(
        f"model {path.name}, batch {args.batch}, {args.iterations} iterations per method, alternating; {runtime.describe()}"
    )
    print(
        f"harness median {h:.3f} ms ({len(harness)} iterations); bare session.run median {b:.3f} ms ({len(bare)} iterations)"
    )
    verdict = "within" if abs(difference) <= args.tolerance else "OUTSIDE"
    print(f"difference {difference:+.2%}: {verdict} the {args.tolerance:.0%} tolerance")
    return 0 if verdict == "within" else 1


if __name__ == "__main__":
    sys.exit(main())
