"""`resnet-bench`: latency and throughput of TensorRT engines, ONNX Runtime and PyTorch."""

from __future__ import annotations

import json

import click

from resnet.cli import model_options
from toolkit.cli import ProgressBar, ToolkitCommand, json_option, parse_ints
from toolkit.files import check_outputs
from toolkit.numbers import LIMITS, Number, check_number

from .harness import LoopSettings
from .report import format_table, write_outputs
from .run import run_benchmark
from .targets import TargetOptions, open_target


def parse_batches(text: str) -> list[int]:
    try:
        batches = parse_ints(text, "--batch")
    except click.BadParameter:
        batches = []
    if not batches or min(batches) < 1:
        raise click.BadParameter(f"batch sizes are positive integers separated by commas, e.g. 1,8,32 (got {text!r})")
    for batch in batches:
        check_number(batch, "--batch", integer=True, limit="batch")
    return list(dict.fromkeys(batches))


def parse_warmup(text: str) -> tuple[int | None, float | None]:
    """`"10"` -> 10 iterations; `"0.5s"` -> half a second."""
    try:
        value = float(text[:-1]) if text.endswith("s") else int(text)
    except ValueError:
        raise click.BadParameter(f"warm-up is a number of iterations (10) or seconds (0.5s), got {text!r}") from None
    if text.endswith("s"):
        return None, check_number(value, "--warmup seconds", limit="seconds")
    return check_number(value, "--warmup iterations", low=0, high=LIMITS["iterations"][1], integer=True), None


@click.command("resnet-bench", cls=ToolkitCommand)
@click.argument("target", required=False)
@click.option(
    "--vs",
    "other",
    default=None,
    help="A second model to measure in the same run, interleaved: a file, or 'pytorch' for the same architecture in PyTorch.",
)
@click.option(
    "--batch",
    "batches",
    default=None,
    help="Batch size or comma-separated sweep, e.g. 1,8,32,128. [default: the engine's opt batch, else 1]",
)
@click.option(
    "--warmup",
    default="0.2s",
    show_default=True,
    help="Warm-up per target and batch: iterations (10) or seconds (0.5s).",
)
@click.option(
    "--iterations",
    type=Number(integer=True, limit="iterations"),
    default=None,
    help="Timed iterations per target and batch (instead of --duration).",
)
@click.option(
    "--duration",
    type=Number(low=0, low_open=True, high=LIMITS["seconds"][1]),
    default=3.0,
    show_default=True,
    help="Seconds of timed iterations per target and batch (at least 10 iterations).",
)
@click.option(
    "--threads",
    type=Number(integer=True, limit="threads"),
    default=None,
    help="Threads for CPU backends (ONNX Runtime and PyTorch). [default: their own]",
)
@click.option(
    "--provider",
    type=click.Choice(["cpu", "cuda", "tensorrt"]),
    default=None,
    help="ONNX Runtime execution provider; cuda runs on device buffers (IOBinding). "
    "[default: cuda when its libraries load here, else cpu; tensorrt only when asked]",
)
@click.option(
    "--cudnn-search",
    type=click.Choice(["exhaustive", "heuristic", "default"]),
    default="exhaustive",
    show_default=True,
    help="ONNX Runtime on CUDA: cuDNN's convolution algorithm search (exhaustive: fastest kernels, slower first run).",
)
@click.option(
    "--nhwc/--no-nhwc",
    default=True,
    show_default=True,
    help="ONNX Runtime on CUDA: prefer channels-last convolutions.",
)
@click.option(
    "--device", type=click.Choice(["cpu", "cuda"]), default=None, help="PyTorch device. [default: cuda when available]"
)
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "bf16"]),
    default="fp32",
    show_default=True,
    help="PyTorch arithmetic.",
)
@click.option("--compile", "compile_", is_flag=True, help="PyTorch: torch.compile the model.")
@click.option("--channels-last", is_flag=True, help="PyTorch: channels-last memory format.")
@click.option(
    "--cuda-graph",
    is_flag=True,
    help="GPU backends (TensorRT, ONNX Runtime on CUDA, PyTorch on a GPU): replay a CUDA graph per batch size.",
)
@click.option("--no-data-transfers", is_flag=True, help="GPU: time the execution alone, without host<->device copies.")
@model_options(
    depth_required=False, depth_help="Benchmark a registered model in PyTorch instead of a file:", note="With --depth."
)
@click.option(
    "--peak-tflops",
    type=Number(low=0, low_open=True, high=1e6),
    default=None,
    help="The machine's peak, for the fraction-of-peak column. [default: a measured matmul rate]",
)
@click.option("--no-peak", is_flag=True, help="Skip the peak measurement (and the fraction-of-peak column).")
@click.option(
    "--seed",
    type=Number(integer=True, low=0, high=2**32 - 1),
    default=0,
    show_default=True,
    help="Seed of the random inputs.",
)
@json_option("the run")
@click.option("--csv", "csv_path", default=None, help="Write one CSV row per target and batch.")
@click.option("--markdown", "markdown_path", default=None, help="Write the table as Markdown.")
@click.option(
    "--plot",
    "plot_path",
    default=None,
    help="Draw median latency against throughput over the sweep (PNG; needs matplotlib).",
)
def main(
    target,
    other,
    batches,
    warmup,
    iterations,
    duration,
    threads,
    provider,
    cudnn_search,
    nhwc,
    device,
    precision,
    compile_,
    channels_last,
    cuda_graph,
    no_data_transfers,
    depth,
    dataset,
    shortcut,
    num_classes,
    peak_tflops,
    no_peak,
    seed,
    json_path,
    csv_path,
    markdown_path,
    plot_path,
) -> int:
    """Measure latency and throughput of a model, the way trtexec reports them.

    \b
    resnet-bench resnet50_fp16.plan --batch 1,32,128         # TensorRT
    resnet-bench resnet50.onnx --batch 1,8 --vs pytorch      # ONNX Runtime against PyTorch eager
    resnet-bench --depth 50 --device cuda --precision fp16 --channels-last --cuda-graph --batch 32

    The backend follows from the file: .plan/.engine TensorRT, .onnx ONNX Runtime, .pt/.pth
    PyTorch. The input size and precision come from the file. Exit status: 0, or 2 for bad input.
    """
    check_outputs(
        json_path, csv_path, markdown_path, plot_path, inputs=[p for p in (target, other) if p and p != "pytorch"]
    )
    warmup_iterations, warmup_seconds = parse_warmup(warmup)
    settings = LoopSettings(
        warmup_iterations=warmup_iterations,
        warmup_seconds=warmup_seconds,
        iterations=iterations,
        duration=duration,
        data_transfers=not no_data_transfers,
    )
    if plot_path:  # say so before measuring for minutes
        from toolkit.optional import require

        require("matplotlib", "--plot")
    options = TargetOptions(
        provider=provider,
        device=device,
        precision=precision,
        compile=compile_,
        channels_last=channels_last,
        cuda_graphs=cuda_graph,
        threads=threads,
        conv_search=cudnn_search,
        prefer_nhwc=nhwc,
    )
    model_args = {"depth": depth, "dataset": dataset, "shortcut": shortcut, "num_classes": num_classes}
    first = open_target(target, options, model_args=model_args)
    targets = [first]
    if other is not None:
        targets.append(open_target(other, options, like=first, model_args=model_args))
    if batches is None:
        profile = getattr(first.runtime, "batch_profile", None)
        sweep = [profile.opt] if profile is not None else [1]
    else:
        sweep = parse_batches(batches)
    quiet = json_path == "-"
    bar = ProgressBar(enabled=not quiet)
    progress = (lambda timer, fraction: bar(f"{timer.label} batch {timer.batch}", fraction)) if bar.enabled else None
    try:
        run = run_benchmark(
            targets,
            sweep,
            settings,
            peak_tflops=peak_tflops,
            measure_peak=not no_peak,
            threads=threads,
            seed=seed,
            progress=progress,
        )
    finally:
        for t in targets:
            t.runtime.close()
    write_outputs(run, json_path=json_path, csv_path=csv_path, markdown_path=markdown_path, plot_path=plot_path)
    if quiet:
        click.echo(json.dumps(run.to_dict(), indent=2))
    else:
        click.echo(format_table(run))
    return 0


if __name__ == "__main__":
    main()
