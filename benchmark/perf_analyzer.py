"""NVIDIA's perf_analyzer as `resnet-bench --triton`'s load generator (`--load-generator
perf_analyzer`, the default where it runs).

perf_analyzer 2.51 is the release of the server `nvidia-pytriton` bundles, and the last whose
binary loads on glibc 2.34 (2.52 and later need 2.38): `tritonclient==2.51.0`'s wheel carries it
in its data folder. It needs `libb64.so.0d` and `libcudart.so.12`, which `nvidia-pytriton` ships
under hashed names. `install()` (`python -m benchmark.perf_analyzer install`; `make` runs it)
takes the binary from that wheel (pip's cache or PyPI, without installing the wheel: this
environment keeps its own tritonclient) into `PREFIX/lib/resnet-deploy-toolkit/perf_analyzer-2.51.0/`
with a `lib/` of links under the plain names. `find()` looks there, then for `perf_analyzer` on
PATH (NVIDIA's SDK container has one), or at `$PERF_ANALYZER`.

`run()` runs it once per concurrency with the builtin generator's settings (window, windows,
stability, batch) and reads its report: the client's throughput and latency percentiles (the CSV)
and the server's split and counts (its summary), into the same `Measurement` as the builtin's.
perf_analyzer reports no minimum or maximum latency: those are NaN (shown as `-`).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import MissingDependencyError, ToolkitError

from .stats import LatencyStats

VERSION = "2.51.0"
LIBRARIES = {"libb64.so.0d": "libb64-*.so.0d", "libcudart.so.12": "libcudart-*.so.12*"}
HELP_TIMEOUT_S = 10.0


def home() -> Path:
    """Where `install()` puts it: inside this Python environment."""
    return Path(sys.prefix) / "lib" / "resnet-deploy-toolkit" / f"perf_analyzer-{VERSION}"


@dataclass(frozen=True)
class PerfAnalyzer:
    binary: Path
    libraries: Path | None  # a folder for LD_LIBRARY_PATH, or None: the binary finds its own

    def environment(self) -> dict[str, str]:
        environment = dict(os.environ)
        if self.libraries is not None:
            environment["LD_LIBRARY_PATH"] = os.pathsep.join(
                filter(None, [str(self.libraries), environment.get("LD_LIBRARY_PATH", "")])
            )
        return environment

    def runs(self) -> bool:
        """Whether the binary loads here (its libraries found, its glibc new enough)."""
        return self.problem() is None

    def problem(self) -> str | None:
        """Why the binary does not run here (missing, not executable, its libraries, a `--help`
        that does not end within 10 s), or None."""
        if not self.binary.is_file():
            return f"{self.binary} is not a file"
        if not os.access(self.binary, os.X_OK):
            return f"{self.binary} is not executable"
        try:
            done = subprocess.run(
                [str(self.binary), "--help"], capture_output=True, env=self.environment(), timeout=HELP_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            return f"{self.binary} --help did not end within {HELP_TIMEOUT_S:g} s"
        except OSError as error:
            return f"{self.binary} does not start ({error.strerror})"
        said = done.stderr.decode(errors="replace")
        if "error while loading shared libraries" in said or "GLIBC" in said:
            return f"{self.binary} does not load here: {_reason(said)}"
        return None


def find(notes: list[str] | None = None) -> PerfAnalyzer | None:
    """A perf_analyzer that runs here, or None (see the module docstring for where it looks). A
    `$PERF_ANALYZER` that does not run is passed over with a line in `notes` saying why."""
    candidates = []
    libraries = home() / "lib" if (home() / "lib").is_dir() else None
    if os.environ.get("PERF_ANALYZER"):
        candidates.append(PerfAnalyzer(Path(os.environ["PERF_ANALYZER"]), libraries))
    if (home() / "perf_analyzer").is_file():
        candidates.append(PerfAnalyzer(home() / "perf_analyzer", home() / "lib"))
    on_path = shutil.which("perf_analyzer")
    if on_path:
        candidates.append(PerfAnalyzer(Path(on_path), libraries))
    for index, candidate in enumerate(candidates):
        problem = candidate.problem()
        if problem is None:
            return candidate
        if index == 0 and os.environ.get("PERF_ANALYZER") and notes is not None:
            notes.append(f"$PERF_ANALYZER is not used: {problem}")
    return None


def install(progress=print) -> PerfAnalyzer:
    """perf_analyzer 2.51 from tritonclient's wheel, with links to nvidia-pytriton's libraries."""
    libraries = _pytriton_libraries()
    target = home()
    with tempfile.TemporaryDirectory(prefix="perf-analyzer-") as temporary:
        progress(f"downloading tritonclient {VERSION}'s wheel (pip's cache first) for its perf_analyzer")
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--platform", "manylinux1_x86_64", f"tritonclient=={VERSION}", "-d", temporary]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(temporary).glob("tritonclient-*.whl"))
        if done.returncode != 0 or not wheels:
            raise ToolkitError(f"pip could not download tritonclient {VERSION}: {_reason(done.stderr)}")
        staged = Path(temporary) / "perf_analyzer"
        extract_binary(wheels[0], staged)
        staged.chmod(0o755)
        (Path(temporary) / "lib").mkdir()
        for plain, found in libraries.items():
            (Path(temporary) / "lib" / plain).symlink_to(found)
        installed = PerfAnalyzer(staged, Path(temporary) / "lib")
        problem = installed.problem()
        if problem is not None:
            raise ToolkitError(
                f"perf_analyzer {VERSION} does not run here (it needs glibc 2.34 or later on Linux x86-64): {problem}"
            )
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(temporary, target, symlinks=True, ignore=shutil.ignore_patterns("*.whl"))
    progress(f"perf_analyzer {VERSION}: {target / 'perf_analyzer'}")
    return PerfAnalyzer(target / "perf_analyzer", target / "lib")


def extract_binary(wheel: Path, target: Path) -> None:
    """perf_analyzer's binary from tritonclient's wheel into `target`, or one sentence."""
    member = f"tritonclient-{VERSION}.data/data/bin/perf_analyzer"
    try:
        with zipfile.ZipFile(wheel) as archive:
            target.write_bytes(archive.read(member))
    except (KeyError, zipfile.BadZipFile, OSError):
        raise ToolkitError(f"{wheel.name} holds no {member}: not NVIDIA's wheel of tritonclient {VERSION}") from None


def _pytriton_libraries() -> dict[str, Path]:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "perf_analyzer needs libb64 and libcudart, which nvidia-pytriton carries: pip install '.[serve]'"
        )
    folder = Path(list(spec.submodule_search_locations)[0]).parent / "nvidia_pytriton.libs"
    found = {}
    for plain, pattern in LIBRARIES.items():
        matches = sorted(folder.glob(pattern))
        if not matches:
            raise MissingDependencyError(f"nvidia-pytriton's libraries lack {plain} ({folder}); reinstall it")
        found[plain] = matches[0]
    return found


# ---------------------------------------------------------------------------------- measuring

SUMMARY = {
    "count": r"Request count: (\d+)",
    "mean_us": r"Avg latency: (\d+) usec",
    "throughput": r"Throughput: ([\d.]+) infer/sec",
    "std_us": r"standard deviation (\d+) usec",
    "inferences": r"Inference count: (\d+)",
    "executions": r"Execution count: (\d+)",
    "success": r"Successful request count: (\d+)",
}


def command(analyzer: PerfAnalyzer, served, concurrency: int, batch: int, settings, folder: Path) -> list[str]:
    """perf_analyzer's command line for one concurrency, with the builtin generator's settings."""
    args = [
        str(analyzer.binary),
        "-m", served.model,
        "-u", served.url,
        "-i", served.protocol,
        "-b", str(batch),
        "--concurrency-range", f"{concurrency}:{concurrency}",
        "--measurement-interval", str(max(1, round(settings.window_seconds * 1000))),
        "--stability-percentage", f"{settings.tolerance * 100:g}",
        "--max-trials", str(settings.windows * 3),
        "-f", str(folder / "report.csv"),
    ]  # fmt: skip
    return args


def run(
    analyzer: PerfAnalyzer, served, concurrency: int, batch: int, settings, *, input_data: Path | None = None
) -> dict:
    """One perf_analyzer run: its CSV row and its summary's numbers. When it finds no stable
    windows it writes no report: it then measures its last windows again, stable or not (the
    builtin generator's way), and the result says it was not stable."""
    result = _run_once(analyzer, served, concurrency, batch, settings, input_data, any_windows=False)
    if result["row"] is None:
        result = _run_once(analyzer, served, concurrency, batch, settings, input_data, any_windows=True)
        result["stable"] = False
    return result


def _run_once(analyzer, served, concurrency, batch, settings, input_data, *, any_windows: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="perf-analyzer-run-") as temporary:
        folder = Path(temporary)
        args = command(analyzer, served, concurrency, batch, settings, folder)
        if any_windows:  # `windows` windows, stable or not: a stability of 100% of their mean
            args[args.index("--stability-percentage") + 1] = "100"
            args[args.index("--max-trials") + 1] = str(settings.windows)
        if input_data is not None:
            args += ["--input-data", str(input_data)]
        timeout = 120 + settings.window_seconds * settings.windows * 3 * 4
        try:
            done = subprocess.run(args, capture_output=True, env=analyzer.environment(), timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ToolkitError(
                f"perf_analyzer did not finish within {timeout:g} s at concurrency {concurrency}"
            ) from None
        except OSError as error:
            raise ToolkitError(f"perf_analyzer does not start ({error.strerror})") from None
        report = folder / "report.csv"
        rows = list(csv.DictReader(io.StringIO(report.read_text(errors="replace")))) if report.is_file() else []
    stdout = done.stdout.decode(errors="replace")
    said = stdout + done.stderr.decode(errors="replace")
    if not rows and (any_windows or "Failed to obtain stable measurement" not in said):
        raise ToolkitError(f"perf_analyzer failed at concurrency {concurrency}: {_reason(said)}")
    summary = {key: float(m.group(1)) for key, pattern in SUMMARY.items() if (m := re.search(pattern, stdout))}
    return {"row": rows[0] if rows else None, "summary": summary, "stable": bool(rows)}


def _reason(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "failed" in line.lower()]
    return (errors or lines or ["it said nothing"])[-1][:300]


def to_measurement(result: dict, served, concurrency: int, batch: int):
    """The builtin generator's `Measurement`, from perf_analyzer's report (microseconds to ms).
    A report that is no measurement (a column missing or not a number; a throughput or latency
    that is NaN, infinite, negative, or all zero) is one sentence, never a row of figures."""
    from .harness import Measurement

    row, summary = result["row"], result["summary"]
    rate, count = _column(row, "Inferences/Second"), int(summary.get("count", 0))
    server = {f"{part}_ms": _column(row, column) / 1000 for part, column in SERVER_COLUMNS.items()} | {
        "inferences": int(summary.get("inferences", 0)),
        "executions": int(summary.get("executions", 0)),
    }
    latency = _latency(row, summary)
    percentiles = [latency.median, latency.p90, latency.p95, latency.p99]
    if rate <= 0 or not any(percentiles) or min(percentiles) < 0 or min(server.values()) < 0:
        raise ToolkitError(
            f"perf_analyzer reported {rate:g} infer/s, p50 {latency.median:g} ms and p99 {latency.p99:g} ms at "
            f"concurrency {concurrency}: no measurement (its report is broken); nothing was recorded"
        )
    seconds = count * batch / rate
    return Measurement(
        label=f"{served.label} c{concurrency}",
        backend="triton",
        device=f"server {served.url}",
        description=f"Triton at {served.url}, model {served.model} over {served.protocol}: perf_analyzer {VERSION}, "
        f"{concurrency} concurrent requests, batch {batch} per request",
        batch=batch,
        iterations=count,
        warmup_iterations=0,
        seconds=seconds,
        latency=latency,
        images_per_second=rate,
        batches_per_second=rate / batch,
        extra={
            "concurrency": concurrency,
            "failed": 0,  # perf_analyzer stops at a failed request (the run is then an error)
            "failures": [],
            "stable": result["stable"],
            "server": server,
            "generator": f"perf_analyzer {VERSION}",
            "series": served.label,
            "point": f"c{concurrency}",
        },
    )


def _column(row: dict, column: str) -> float:
    """A finite number of perf_analyzer's CSV row, or one sentence."""
    if column not in row:
        raise ToolkitError(f"perf_analyzer's report has no column {column!r}; was it another release than {VERSION}?")
    try:
        value = float(row[column])
    except (TypeError, ValueError):
        raise ToolkitError(
            f"perf_analyzer's report gives {str(row[column])[:30]!r} for {column!r}, not a number"
        ) from None
    if not math.isfinite(value):
        raise ToolkitError(f"perf_analyzer's report gives {value} for {column!r}: no measurement")
    return value


SERVER_COLUMNS = {
    "queue": "Server Queue",
    "compute_input": "Server Compute Input",
    "compute_infer": "Server Compute Infer",
    "compute_output": "Server Compute Output",
}


def _latency(row: dict, summary: dict) -> LatencyStats:
    """Its client latencies (no minimum or maximum: NaN); the mean is in the CSV only with --verbose-csv."""
    ms = {name: _column(row, f"{name} latency") / 1000 for name in ("p50", "p90", "p95", "p99")}
    return LatencyStats(
        count=int(summary.get("count", 0)),
        min=math.nan,
        mean=summary.get("mean_us", math.nan) / 1000,
        median=ms["p50"],
        p90=ms["p90"],
        p95=ms["p95"],
        p99=ms["p99"],
        max=math.nan,
        std=summary.get("std_us", math.nan) / 1000,
    )


USAGE = "usage: python -m benchmark.perf_analyzer install | where"


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if args == ["install"]:
        try:
            install()
        except ToolkitError as error:
            print(f"perf_analyzer: {error}", file=sys.stderr)
            return 2
        return 0
    if args == ["where"]:
        found = find()
        print(found.binary if found else "none")
        return 0 if found else 1
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
