"""Does the harness distort what it measures? Its median against a bare `session.run` loop.

    python -m benchmark.fidelity                     # exports ResNet-50 to a temporary file
    python -m benchmark.fidelity --model resnet50.onnx --batch 8 --rounds 6

One ONNX Runtime session, the same four random input batches, timed two ways in the same
process: through `benchmark.harness.BatchTimer.iterate` (what resnet-bench does) and by a bare
`session.run(None, {name: x})` between two `time.perf_counter()` calls. The two alternate one
iteration at a time (in alternating order), so that drift of the machine hits both alike.
Passes when the harness median is within --tolerance (3%) of the bare median; exit status 1
otherwise.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def bare_iteration(session, name: str, x) -> float:
    """One `session.run`, timed with nothing around it (milliseconds)."""
    feed = {name: x}
    start = time.perf_counter()
    session.run(None, feed)
    return (time.perf_counter() - start) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="ONNX file (default: ResNet-50 exported to a temporary folder)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=150, help="iterations per method")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tolerance", type=float, default=0.03)
    args = parser.parse_args(argv)

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
