"""The PyTorch baselines our TensorRT engines must beat, measured on the accelerator machine.

    PYTHONPATH=. python -m benchmark.gpu_baselines            # on a machine with a CUDA GPU

ResNet-50 (random weights: speed doesn't depend on them) at batch 1, 32 and 256, in FP32 and
FP16, eager and with channels-last + CUDA graphs, through the same harness as resnet-bench
(CUDA events, pinned inputs, host<->device copies included and reported apart), with the
fraction of the card's peak (a measured matmul rate of the same precision). Writes
`benchmark/results/gpu-baselines-<card>.json` and `.md`, named after the card.

`--device cpu` runs the same script on the CPU (channels-last only, no CUDA graphs) so that it
can be tested anywhere.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
# Public reference figures: NVIDIA DeepLearningExamples (PaddlePaddle RN50v1.5 README), TensorRT ResNet-50 FP16, A100 80GB.
DLE_A100_TRT_FP16 = {1: (0.76, 1306), 32: (2.45, 13078), 128: (None, 16387), 256: (None, 17364)}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--depth", type=int, default=50)
    parser.add_argument("--dataset", default="imagenet")
    parser.add_argument("--batches", default="1,32,256")
    parser.add_argument("--precisions", default="fp32,fp16")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per configuration and batch")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds of warm-up per configuration and batch")
    parser.add_argument("--peak-tflops", type=float, default=None, help="skip the matmul peak measurement and use this")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import resnet
    from deploy.runtimes import RuntimeOptions
    from deploy.runtimes.pytorch import torch_runtime

    from .harness import LoopSettings
    from .report import format_table, to_markdown
    from .run import run_benchmark
    from .targets import Target

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_baselines: no CUDA GPU visible (use --device cpu to try the script on the CPU)", file=sys.stderr)
        return 2
    batches = [int(b) for b in args.batches.split(",")]
    settings = LoopSettings(warmup_seconds=args.warmup, duration=args.duration)
    card = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    modes = [
        ("eager", False, False),
        ("channels-last + CUDA graphs" if args.device == "cuda" else "channels-last", True, args.device == "cuda"),
    ]
    runs = []
    for precision in args.precisions.split(","):
        for mode, channels_last, cuda_graphs in modes:
            model = resnet.create(args.depth, args.dataset)
            options = RuntimeOptions(
                device=args.device,
                precision=precision,
                channels_last=channels_last,
                cuda_graphs=cuda_graphs,
                max_batch=max(batches),
            )
            runtime = torch_runtime(model, options)
            target = Target(f"{model.name} pytorch {precision} {mode}", runtime, runtime.info)
            run = run_benchmark([target], batches, settings, peak_tflops=args.peak_tflops)
            runtime.close()
            print(format_table(run), flush=True)
            runs.append(run)
            if args.device == "cuda":
                torch.cuda.empty_cache()

    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = args.output_dir / f"gpu-baselines-{slug(card)}"
    data = {
        "card": card,
        "command": "PYTHONPATH=. python -m benchmark.gpu_baselines "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "runs": [r.to_dict() for r in runs],
        "reference_dle_a100_tensorrt_fp16": {
            str(b): {"latency_ms": ms, "images_per_second": t} for b, (ms, t) in DLE_A100_TRT_FP16.items()
        },
    }
    stem.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    lines = [f"# PyTorch baselines on {card}", "", f"Command: `{data['command']}`", ""]
    for run in runs:
        lines += [to_markdown(run), ""]
    lines += [
        "Reference, not measured here: TensorRT ResNet-50 FP16 on an A100 80GB (NVIDIA DeepLearningExamples):",
        "batch 1: 0.76 ms, 1,306 img/s; batch 32: 2.45 ms, 13,078 img/s; batch 128: 16,387 img/s; batch 256: 17,364 img/s.",
        "",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines))
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
