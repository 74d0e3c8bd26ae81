"""`resnet-bench`: latency and throughput of TensorRT engines, ONNX Runtime and PyTorch.

The options come in groups that give the library's objects: how each backend runs
(`RuntimeOptions`), how long to measure (`LoopSettings`), a registered model (`ModelOptions`), the
files to write (`ReportFiles`); `benchmark_models` does the rest.
"""

from __future__ import annotations

import click

from deploy.runtimes import RuntimeOptions
from deploy.runtimes.choices import BACKEND_CHOICES, CONV_SEARCHES, DEVICES, OPENVINO_HINTS, ORT_PROVIDERS
from resnet.cli import model_options
from toolkit.cli import ProgressBar, ToolkitCommand, json_option, option_group, options, parse_ints, write_json
from toolkit.files import check_outputs
from toolkit.numbers import LIMITS, Number, check_number
from toolkit.precision import TORCH_PRECISIONS

from .connections import PROTOCOLS, ServedTarget
from .harness import LoopSettings
from .profile import format_profile
from .report import ReportFiles, format_table
from .run import benchmark_models
from .serving import GENERATORS, LoadSettings, benchmark_served, resolve_generator
from .sla import format_sla


def parse_batches(text: str, option: str = "--batch") -> list[int]:
    """`"1,8,32"` -> [1, 8, 32] (repeats dropped), each within the batch bounds."""
    try:
        batches = parse_ints(text, option)
    except click.BadParameter:
        batches = []
    if not batches or min(batches) < 1:
        what = "batch sizes" if option == "--batch" else f"{option} values"
        raise click.BadParameter(f"{what} are positive integers separated by commas, e.g. 1,8,32 (got {text!r})")
    for batch in batches:
        check_number(batch, option, integer=True, limit="batch")
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


def _loop(warmup: str, iterations, duration, no_data_transfers) -> LoopSettings:
    warmup_iterations, warmup_seconds = parse_warmup(warmup)
    return LoopSettings(
        warmup_iterations=warmup_iterations,
        warmup_seconds=warmup_seconds,
        iterations=iterations,
        duration=duration,
        data_transfers=not no_data_transfers,
    )


loop_options = option_group(
    "loop",
    _loop,
    click.option(
        "--warmup",
        default="0.2s",
        show_default=True,
        help="Warm-up per target and batch: iterations (10) or seconds (0.5s).",
    ),
    click.option(
        "--iterations",
        type=Number(integer=True, limit="iterations"),
        default=None,
        help="Timed iterations per target and batch (instead of --duration).",
    ),
    click.option(
        "--duration",
        type=Number(low=0, low_open=True, high=LIMITS["seconds"][1]),
        default=3.0,
        show_default=True,
        help="Seconds of timed iterations per target and batch (at least 10 iterations).",
    ),
    click.option(
        "--no-data-transfers", is_flag=True, help="GPU: time the execution alone, without host<->device copies."
    ),
)


def _runtime(
    backend,
    threads,
    provider,
    cudnn_search,
    nhwc,
    device,
    precision,
    openvino_hint,
    compile_,
    channels_last,
    cuda_graph,
):
    return RuntimeOptions(
        backend=backend,
        openvino_hint=openvino_hint,
        provider=provider,
        threads=threads,
        cuda_graphs=cuda_graph,
        device=device,
        precision=precision,
        compile=compile_,
        channels_last=channels_last,
        conv_search=cudnn_search,
        prefer_nhwc=nhwc,
    )


runtime_options = option_group(
    "runtime",
    _runtime,
    click.option(
        "--backend",
        type=click.Choice(list(BACKEND_CHOICES)),
        default=None,
        help="Backend of the first target: openvino runs an ONNX file in OpenVINO on the CPU; auto chooses (docs/"
        "benchmark.md says by which rule). [default: the file's own: .onnx ONNX Runtime, .plan TensorRT, .pth PyTorch]",
    ),
    click.option(
        "--threads",
        type=Number(integer=True, limit="threads"),
        default=None,
        help="Threads for CPU backends (ONNX Runtime, OpenVINO, PyTorch). [default: their own]",
    ),
    click.option(
        "--provider",
        type=click.Choice(list(ORT_PROVIDERS)),
        default=None,
        help="ONNX Runtime execution provider; cuda runs on device buffers (IOBinding). "
        "[default: cuda when its libraries load here, else cpu; tensorrt only when asked]",
    ),
    click.option(
        "--cudnn-search",
        type=click.Choice(list(CONV_SEARCHES)),
        default="exhaustive",
        show_default=True,
        help="ONNX Runtime on CUDA: cuDNN's convolution algorithm search (exhaustive: fastest kernels, slower first run).",
    ),
    click.option(
        "--nhwc/--no-nhwc",
        default=True,
        show_default=True,
        help="ONNX Runtime on CUDA: prefer channels-last convolutions.",
    ),
    click.option(
        "--device",
        type=click.Choice(list(DEVICES)),
        default=None,
        help="PyTorch device. [default: cuda when available]",
    ),
    click.option(
        "--precision",
        type=click.Choice(list(TORCH_PRECISIONS)),
        default="fp32",
        show_default=True,
        help="Arithmetic of the first target where its backend chooses it: PyTorch (fp32, fp16, bf16), OpenVINO "
        "(fp32, bf16; always set, never OpenVINO's silent BF16 default); --vs pytorch computes in the same.",
    ),
    click.option(
        "--openvino-hint",
        type=click.Choice(list(OPENVINO_HINTS)),
        default="latency",
        show_default=True,
        help="OpenVINO: latency (a batch is one request) or throughput (a batch split over its parallel streams).",
    ),
    click.option("--compile", "compile_", is_flag=True, help="PyTorch: torch.compile the model."),
    click.option("--channels-last", is_flag=True, help="PyTorch: channels-last memory format."),
    click.option(
        "--cuda-graph",
        is_flag=True,
        help="GPU backends (TensorRT, ONNX Runtime on CUDA, PyTorch on a GPU): replay a CUDA graph per batch size.",
    ),
)

report_options = option_group(
    "files",
    ReportFiles,
    json_option("the run"),
    click.option(
        "--csv",
        "csv_path",
        default=None,
        help="Write one CSV row per target and batch ('-': stdout, nothing else printed).",
    ),
    click.option(
        "--markdown",
        "markdown_path",
        default=None,
        help="Write the table as Markdown ('-': stdout, nothing else printed).",
    ),
    click.option(
        "--plot",
        "plot_path",
        default=None,
        help="Draw median latency against throughput over the sweep (PNG; needs matplotlib).",
    ),
)


def _served(triton, ray, model_name, protocol, concurrency, load_generator):
    if triton is not None and ray is not None:
        raise click.UsageError("--triton and --ray each name a server: give one")
    url, server = (triton, "triton") if triton is not None else (ray, "ray")
    given = {
        k: click.get_current_context().get_parameter_source(k).name != "DEFAULT" for k in ("protocol", "load_generator")
    }
    if url is None:
        if model_name is not None or given["load_generator"]:
            raise click.UsageError("--model and --load-generator go with a server given with --triton or --ray")
        return None
    if model_name is None:
        raise click.UsageError(f"--{server} needs --model, the name of the model to load it with")
    if server == "ray" and given["protocol"]:
        raise click.UsageError("--protocol is Triton's; a Ray application is reached over HTTP (JSON tensors)")
    if server == "triton":
        url, protocol = _triton_url(url, protocol, given["protocol"])
    _check_port(url, server)
    served = ServedTarget(url, model_name, protocol, server=server)
    return served, parse_batches(concurrency, "--concurrency"), load_generator


def _triton_url(url: str, protocol: str, protocol_given: bool) -> tuple[str, str]:
    """host:port and the protocol, from a URL that may say it (http://, grpc://)."""
    scheme, found, rest = url.partition("://")
    if not found:
        return url, protocol
    if scheme not in PROTOCOLS:
        raise click.UsageError(f"--triton {url}: the URL's scheme is http:// or grpc://, not {scheme}://")
    if protocol_given and protocol != scheme:
        raise click.UsageError(f"--triton {url} says {scheme}, --protocol says {protocol}: give one")
    return rest.rstrip("/"), scheme


def _check_port(url: str, server: str) -> None:
    import urllib.parse

    address = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = address.port
    except ValueError:
        port = address.netloc.rpartition(":")[2]
        raise click.UsageError(f"--{server} {url}: port {port} is not a TCP port (1 to 65535)") from None
    if port is None and server == "triton":
        raise click.UsageError(f"--{server} {url} needs a port: host:port")
    if port is not None and not 1 <= port <= 65535:
        raise click.UsageError(f"--{server} {url}: port {port} is not a TCP port (1 to 65535)")


served_options = option_group(
    "served",
    _served,
    click.option(
        "--triton",
        metavar="URL",
        default=None,
        help="Measure a model served by Triton at URL (host:port, or grpc://host:port or http://host:port, which sets "
        "--protocol; see resnet-deploy serve), under load.",
    ),
    click.option(
        "--ray",
        metavar="URL",
        default=None,
        help="Measure a model of a Ray Serve application (resnet-deploy ray) at URL (http://host:port of Serve's HTTP "
        "proxy), under load from closed-loop clients.",
    ),
    click.option("--model", "model_name", default=None, help="With --triton or --ray: the served model's name."),
    click.option(
        "--protocol", type=click.Choice(list(PROTOCOLS)), default="grpc", show_default=True, help="With --triton."
    ),
    click.option(
        "--concurrency",
        default="1",
        show_default=True,
        help="With --triton or --ray: clients sending at once, or a comma-separated sweep, e.g. 1,4,8.",
    ),
    click.option(
        "--load-generator",
        type=click.Choice(["auto", *GENERATORS]),
        default="auto",
        show_default=True,
        help="What sends the load: perf_analyzer (NVIDIA's, Triton only; python -m benchmark.perf_analyzer install "
        "puts it in this environment), builtin (this toolkit's closed-loop clients), or auto: perf_analyzer where "
        "it runs, else builtin with a note.",
    ),
)

peak_options = options(
    click.option(
        "--peak-tflops",
        type=Number(low=0, low_open=True, high=1e6),
        default=None,
        help="The machine's peak (TFLOP/s): the last column is then the fraction of it, 'of peak'. [default: a "
        "matrix product measured here, 'of matmul': a rate this machine reaches, which better kernels can pass]",
    ),
    click.option("--no-peak", is_flag=True, help="Skip the matmul measurement (and the last column)."),
)


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
@loop_options
@runtime_options
@model_options(
    depth_required=False, depth_help="Benchmark a registered model in PyTorch instead of a file:", note="With --depth."
)
@peak_options
@click.option(
    "--seed",
    type=Number(integer=True, low=0, high=2**32 - 1),
    default=0,
    show_default=True,
    help="Seed of the random inputs.",
)
@click.option(
    "--profile",
    is_flag=True,
    help="Also time each layer with the backend's own profiler, mapped to the ResNet's modules and stages "
    "(--plot then draws it).",
)
@click.option(
    "--profile-json", default=None, help="With --profile: write the per-layer times of every measurement here."
)
@click.option(
    "--sla-p99-ms",
    type=Number(low_open=True, limit="milliseconds"),
    default=None,
    help="Find the batch (of --batch, e.g. 1,2,4,8,16) with the highest throughput whose p99 fits this budget "
    "(--plot then draws the curve); exit status 1 when none does.",
)
@served_options
@report_options
def main(
    target,
    other,
    batches,
    loop,
    runtime,
    model,
    peak_tflops,
    no_peak,
    seed,
    profile,
    profile_json,
    sla_p99_ms,
    served,
    files,
) -> int:
    """Measure latency and throughput of a model, the way trtexec reports them.

    \b
    resnet-bench resnet50_fp16.plan --batch 1,32,128         # TensorRT
    resnet-bench resnet50.onnx --batch 1,8 --vs pytorch      # ONNX Runtime against PyTorch eager
    resnet-bench resnet50.onnx --backend openvino --precision bf16 --vs resnet50.onnx --batch 1,8
    resnet-bench --depth 50 --device cuda --precision fp16 --channels-last --cuda-graph --batch 32
    resnet-bench --triton localhost:8001 --model resnet50 --concurrency 1,4,8 --vs resnet50.onnx
    resnet-bench --ray http://127.0.0.1:8000 --model resnet50 --concurrency 1,4,8 --vs resnet50.onnx
    resnet-bench resnet50.onnx --profile --plot profile.png         # where the time goes
    resnet-bench resnet50.onnx --sla-p99-ms 500 --batch 1,2,4,8,16 --json sla.json

    The backend follows from the file: .plan/.engine TensorRT, .onnx ONNX Runtime (or OpenVINO,
    --backend openvino), .pt/.pth PyTorch; --backend and --precision apply to the first target,
    and a --vs file runs on its own backend in FP32. The input size comes from the file. With
    --triton or --ray, --batch is each request's batch and --vs the in-process runtime of the same file; Triton's
    load comes from perf_analyzer where it runs (--load-generator). Exit status: 0,
    1 when no
    batch meets --sla-p99-ms, 2 for bad input.
    """
    check_outputs(*files.paths(), profile_json, inputs=[p for p in (target, other) if p and p != "pytorch"])
    _check_analyses(profile, profile_json, sla_p99_ms, served, files)
    bar = ProgressBar(enabled="-" not in files.paths())
    if served is not None:
        run = _benchmark_served(target, other, batches, loop, runtime, served, seed, bar)
    else:
        run = benchmark_models(
            target,
            other,
            parse_batches(batches) if batches is not None else None,
            runtime,
            loop,
            model=model,
            peak_tflops=peak_tflops,
            measure_peak=not no_peak,
            seed=seed,
            progress=(lambda timer, fraction: bar(f"{timer.label} batch {timer.batch}", fraction))
            if bar.enabled
            else None,
            profile=profile,
            sla_p99_ms=sla_p99_ms,
        )
    files.write(run)
    return _report(run, files, profile_json)


def _check_analyses(profile: bool, profile_json, sla_p99_ms, served, files: ReportFiles) -> None:
    """--profile and --sla-p99-ms: one of them, for in-process targets; matplotlib for --plot,
    said before measuring for minutes."""
    if files.plot_path:
        from toolkit.optional import require

        require("matplotlib", "--plot")
    if profile_json == "-" and "-" in (files.json_path, files.csv_path, files.markdown_path):
        raise click.UsageError(
            "only one of --json, --csv, --markdown and --profile-json can go to standard output ('-')"
        )
    if profile_json and not profile:
        raise click.UsageError("--profile-json goes with --profile")
    if profile and sla_p99_ms is not None:
        raise click.UsageError("--profile and --sla-p99-ms are two runs: give one of them")
    if served is not None and (profile or sla_p99_ms is not None):
        raise click.UsageError("--profile and --sla-p99-ms measure in-process targets, not a server")


def _report(run, files: ReportFiles, profile_json) -> int:
    """Print the table (with the profiles and the SLA choice), write --profile-json; the exit status."""
    if profile_json:
        profiles = [{"label": m.label, **m.profile.to_dict()} for m in run.measurements if m.profile is not None]
        write_json(profile_json, {"profiles": profiles})
    report = files.stdout(run)
    text = format_table(run)
    text += "".join("\n\n" + format_profile(m.label, m.profile) for m in run.measurements if m.profile is not None)
    text += "\n\n" + format_sla(run.sla) + "\n" if run.sla is not None else ""
    if profile_json != "-":  # standard output holds the one document sent there, nothing else
        click.echo(report if report is not None else text, nl=report is None)
    if run.sla is not None and run.sla.batch is None:
        click.echo(f"resnet-bench: {run.sla.failure()}", err=True)
        return 1
    ended = next((m for m in run.measurements if m.extra.get("ended")), None)
    if ended is not None:
        click.echo(f"resnet-bench: the run ended at {ended.label}: {ended.extra['ended']}; what was measured "
                   "until then is reported", err=True)  # fmt: skip
        return 1
    return 0


def _benchmark_served(target, other, batches, loop: LoopSettings, runtime, served, seed: int, bar):
    """`benchmark_served` with the command's options: one batch per request, the loop's warm-up and
    duration (three windows of a third of it; up to nine until stable), `--vs` the in-process file."""
    if target is not None:
        raise click.UsageError(
            "--triton and --ray measure a served model: give no TARGET (the in-process file goes in --vs)"
        )
    if other == "pytorch":
        raise click.UsageError("with a server, --vs names the in-process file (.onnx, .plan) of the served model")
    batch = parse_batches(batches) if batches is not None else [1]
    if len(batch) != 1:
        raise click.UsageError("with a server, --batch is each request's batch: one number")
    if loop.iterations is not None or loop.warmup_iterations is not None:
        raise click.UsageError(
            "with a server the clients run for a time: give --duration and --warmup in seconds (0.5s), not iterations"
        )
    served_model, concurrency, choice = served
    generator, note = resolve_generator(choice, served_model)
    if note:
        click.echo(f"note: {note}", err=True)
    settings = LoadSettings(warmup_seconds=loop.warmup_seconds, window_seconds=loop.duration / 3, generator=generator)
    vs = None if other is None else {"target": other, "options": runtime, "loop": loop}
    progress = (lambda text, fraction: bar(text, fraction)) if bar.enabled else None
    return benchmark_served(served_model, concurrency, batch[0], settings, vs=vs, seed=seed, progress=progress)


if __name__ == "__main__":
    main()
