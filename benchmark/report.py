"""A benchmark run as data, and its renderings: terminal table, JSON, CSV, Markdown, plot."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from toolkit.errors import ToolkitError
from toolkit.files import atomic_path, check_figure_path, write_text_atomic

from .environment import MachineInfo
from .harness import LoopSettings, Measurement
from .sla import SlaChoice

CSV_COLUMNS = [
    "label",
    "backend",
    "device",
    "batch",
    "iterations",
    "seconds",
    "images_per_second",
    "batches_per_second",
    "latency_min_ms",
    "latency_mean_ms",
    "latency_median_ms",
    "latency_p90_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "h2d_median_ms",
    "compute_median_ms",
    "d2h_median_ms",
    "enqueue_median_ms",
    "flops_per_image",
    "achieved_tflops",
    "peak_tflops",
    "fraction_of_peak",
    # A served model's (resnet-bench --triton): its clients, failed requests, Triton's own split.
    "concurrency",
    "failed",
    "server_queue_ms",
    "server_compute_input_ms",
    "server_compute_infer_ms",
    "server_compute_output_ms",
    "server_inferences",
    "server_executions",
]


@dataclass
class Comparison:
    """`first` against `second` at one batch size: ratios of their medians and throughputs."""

    first: str
    second: str
    batch: int
    latency_ratio: float  # first median / second median (below 1: first is faster)
    throughput_ratio: float  # first images/s / second images/s
    latency_difference_ms: float  # first median - second median (a server's cost per request at c1)

    @classmethod
    def of(cls, first: Measurement, second: Measurement, batch: int) -> Comparison:
        return cls(
            first.label,
            second.label,
            batch,
            first.latency.median / second.latency.median,
            first.images_per_second / second.images_per_second,
            first.latency.median - second.latency.median,
        )

    def describe(self, times: str = "x") -> str:
        return (
            f"{self.first} / {self.second} at batch {self.batch}: median latency {self.latency_ratio:.3f}{times} "
            f"({self.latency_difference_ms:+.3f} ms), throughput {self.throughput_ratio:.3f}{times}"
        )


@dataclass
class BenchmarkRun:
    machine: MachineInfo
    settings: LoopSettings
    measurements: list[Measurement]
    comparisons: list[Comparison] = field(default_factory=list)
    sla: SlaChoice | None = None  # --sla-p99-ms: the budget, the chosen batch and every row

    def to_dict(self) -> dict:
        return {
            "machine": self.machine.to_dict(),
            "settings": asdict(self.settings),
            "measurements": [m.to_dict() for m in self.measurements],
            "comparisons": [asdict(c) for c in self.comparisons],
        } | ({"sla": self.sla.to_dict()} if self.sla is not None else {})


def compare(measurements: list[Measurement]) -> list[Comparison]:
    """First target against each other one, batch by batch."""
    labels = list(dict.fromkeys(m.label for m in measurements))
    result = []
    for other in labels[1:]:
        for m in measurements:
            if m.label != labels[0]:
                continue
            o = next((x for x in measurements if x.label == other and x.batch == m.batch), None)
            if o is not None:
                result.append(Comparison.of(m, o, m.batch))
    return result


def _row(m: Measurement) -> dict:
    row = {
        "label": m.label,
        "backend": m.backend,
        "device": m.device,
        "batch": m.batch,
        "iterations": m.iterations,
        "seconds": m.seconds,
        "images_per_second": m.images_per_second,
        "batches_per_second": m.batches_per_second,
    }
    for stat, value in m.latency.to_dict().items():
        if stat != "count" and stat != "std":
            row[f"latency_{stat}_ms"] = value  # None (an empty cell) where not measured
    for part in ("h2d", "compute", "d2h", "enqueue"):
        stats = getattr(m, part)
        row[f"{part}_median_ms"] = None if stats is None else stats.median
    for key in ("flops_per_image", "achieved_tflops", "peak_tflops", "fraction_of_peak"):
        row[key] = getattr(m, key)
    server = m.extra.get("server", {})
    row["concurrency"], row["failed"] = m.extra.get("concurrency"), m.extra.get("failed")
    for key in (*SERVER_PARTS, "inferences", "executions"):
        row[f"server_{key}"] = server.get(key)
    return row


def to_csv(run: BenchmarkRun) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for m in run.measurements:
        writer.writerow({k: "" if v is None else v for k, v in _row(m).items()})
    return buffer.getvalue()


def _cells(m: Measurement, gpu: bool) -> list[str]:
    latency = m.latency
    cells = [m.label, str(m.batch), f"{m.images_per_second:,.1f}", f"{m.batches_per_second:,.2f}"]
    cells += [
        "-" if math.isnan(v) else f"{v:.3f}"  # perf_analyzer reports no minimum or maximum
        for v in (latency.min, latency.mean, latency.median, latency.p90, latency.p95, latency.p99, latency.max)
    ]
    if gpu:
        cells += ["-" if s is None else f"{s.median:.3f}" for s in (m.h2d, m.compute, m.d2h, m.enqueue)]
    cells.append("-" if m.fraction_of_peak is None else f"{m.fraction_of_peak:.1%}")
    return cells


def rate_column(machine: MachineInfo) -> str:
    """The last column's name: the fraction of the peak the user gave (`--peak-tflops`), or of the
    matrix-product rate measured here, which is a rate the machine reaches, not its peak: a runtime
    with better kernels can pass it (ONNX Runtime's convolutions did, on AVX-512)."""
    return "of peak" if machine.peak_source == "--peak-tflops" else "of matmul"


def _rate_line(machine: MachineInfo) -> str:
    what = "peak" if machine.peak_source == "--peak-tflops" else "matmul"
    return f"{what}: {machine.peak_tflops:.3g} TFLOP/s ({machine.peak_source})"


def _headers(gpu: bool, rate: str = "of matmul") -> list[str]:
    headers = [
        "target",
        "batch",
        "img/s",
        "batch/s",
        "min ms",
        "mean ms",
        "median ms",
        "p90 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
    ]
    if gpu:
        headers += ["h2d ms", "compute ms", "d2h ms", "enqueue ms"]
    return headers + [rate]


def format_table(run: BenchmarkRun) -> str:
    """The terminal table, with the machine above and the ratios below."""
    gpu = any(m.compute is not None for m in run.measurements)
    rows = [_headers(gpu, rate_column(run.machine))] + [_cells(m, gpu) for m in run.measurements]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    machine = run.machine
    flags = f"; {', '.join(machine.cpu_flags)}" if machine.cpu_flags else ""
    where = f"{machine.cpu} ({machine.logical_cpus} logical CPUs{', ' + str(machine.threads) + ' threads' if machine.threads else ''}{flags})"
    if machine.gpu:
        where += f"; {machine.gpu} (compute capability {machine.compute_capability}, driver {machine.driver or '?'})"
    lines.append(f"machine: {where}")
    if machine.int8_path:
        lines.append(f"int8:    {machine.int8_path}")
    if machine.peak_tflops:
        what, rest = _rate_line(machine).split(": ", 1)
        lines.append(f"{what + ':':<8} {rest}")
    lines.append("")
    for index, row in enumerate(rows):
        lines.append(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    descriptions = list(dict.fromkeys(f"{m.label}: {m.description}" for m in run.measurements))
    lines.append("")
    lines.extend(descriptions)
    lines.extend(served_line(m) for m in run.measurements if "server" in m.extra)
    for c in run.comparisons:
        lines.append(f"vs: {c.describe()}")
    return "\n".join(lines)


def served_line(m: Measurement) -> str:
    """What the server said of a served measurement's requests (Triton's statistics; a Ray
    application's batch per answer), in one line."""
    server = m.extra["server"]
    parts = ", ".join(
        f"{name.removesuffix('_ms').replace('_', ' ')} {server[name]:.3f}" for name in SERVER_PARTS if name in server
    )
    parts = f"{parts} ms per request; " if parts else ""
    failed = (
        f"; {m.extra['failed']} failed ({'; '.join(m.extra['failures'])})" if m.extra["failed"] else "; none failed"
    )
    stable = "" if m.extra.get("stable") else "; throughput not stable within 10% over the windows"
    generator = f"; load from {m.extra['generator']}" if m.extra.get("generator") else ""
    return (
        f"server: {m.label}: {parts}{server['inferences']:,} inferences in "
        f"{server['executions']:,} executions{failed}{stable}{generator}"
    )


SERVER_PARTS = ("queue_ms", "compute_input_ms", "compute_infer_ms", "compute_output_ms")


def to_markdown(run: BenchmarkRun) -> str:
    gpu = any(m.compute is not None for m in run.measurements)
    headers = _headers(gpu, rate_column(run.machine))
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|",
    ]
    lines += ["| " + " | ".join(_cells(m, gpu)) + " |" for m in run.measurements]
    machine = run.machine
    lines.append("")
    lines.append(
        f"Machine: {machine.cpu}, {machine.logical_cpus} logical CPUs"
        + (f", {machine.threads} threads" if machine.threads else "")
        + (f"; {machine.gpu} (driver {machine.driver})" if machine.gpu else "")
        + "."
    )
    if machine.int8_path:
        lines.append(f"INT8 path: {machine.int8_path}.")
    if machine.peak_tflops:
        lines.append(_rate_line(machine).capitalize() + ".")
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in machine.versions.items()) + ".")
    lines.extend(f"- {served_line(m)}" for m in run.measurements if "server" in m.extra)
    for c in run.comparisons:
        lines.append(f"- {c.describe('×')}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ReportFiles:
    """The files a run is written to (`resnet-bench --json/--csv/--markdown/--plot`); None: not
    written; "-": standard output, for one of the JSON, CSV and Markdown reports (the command
    prints it in place of its table)."""

    json_path: str | None = None
    csv_path: str | None = None
    markdown_path: str | None = None
    plot_path: str | None = None

    def __post_init__(self) -> None:
        if self.plot_path is not None:
            check_figure_path(self.plot_path, "--plot")
        if [self.json_path, self.csv_path, self.markdown_path].count("-") > 1:
            raise ToolkitError("only one of --json, --csv and --markdown can go to standard output ('-')")

    def paths(self) -> list[str | None]:
        return [self.json_path, self.csv_path, self.markdown_path, self.plot_path]

    def renderings(self, run: BenchmarkRun) -> dict[str | None, Callable[[], str]]:
        return {
            self.json_path: lambda: json.dumps(run.to_dict(), indent=2) + "\n",
            self.csv_path: lambda: to_csv(run),
            self.markdown_path: lambda: to_markdown(run),
        }

    def stdout(self, run: BenchmarkRun) -> str | None:
        """The report that goes to standard output ("-"), rendered; None when none does."""
        render = {path: text for path, text in self.renderings(run).items() if path == "-"}
        return render["-"]() if render else None

    def write(self, run: BenchmarkRun) -> None:
        """Write every report that has a file name (each atomically), and the plot."""
        for path, text in self.renderings(run).items():
            if path and path != "-":
                write_text_atomic(Path(path), text())
        if self.plot_path:
            from .profile import plot_profile
            from .sla import plot_sla

            if run.sla is not None:
                plot_sla(run.sla, Path(self.plot_path))
            elif run.measurements and run.measurements[0].profile is not None:
                first = run.measurements[0]
                plot_profile(first.label, first.profile, Path(self.plot_path))
            else:
                plot(run, Path(self.plot_path))


def plot(run: BenchmarkRun, path: Path) -> None:
    """Median latency against throughput over the batch sweep, one line per target."""
    from .pyplot import pyplot

    plt = pyplot()

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    series = lambda m: m.extra.get("series", m.label)  # noqa: E731 - a served model's concurrencies are one line
    for label in dict.fromkeys(series(m) for m in run.measurements):
        points = sorted(
            (m for m in run.measurements if series(m) == label), key=lambda m: (m.extra.get("concurrency", 0), m.batch)
        )
        xs, ys = [m.images_per_second for m in points], [m.latency.median for m in points]
        axes.plot(xs, ys, marker="o", label=label)
        for m, x, y in zip(points, xs, ys, strict=True):
            axes.annotate(
                m.extra.get("point", f"b{m.batch}"), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8
            )
    axes.set_xlabel("throughput (images/s)")
    axes.set_ylabel("median latency (ms)")
    axes.set_title("latency against throughput over the batch sweep")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    plt.close(figure)
