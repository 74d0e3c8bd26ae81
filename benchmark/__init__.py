"""Measuring runtimes: the timing loop, statistics, sweeps, reports and plots.

Imports `deploy` and `resnet` (DESIGN.md).
"""

from .harness import LoopSettings, Measurement, Session, run_sessions
from .report import BenchmarkRun, Comparison, format_table, to_csv, to_markdown
from .run import run_benchmark
from .stats import LatencyStats, percentile
from .targets import Target, TargetOptions, flops_per_image, open_target

__all__ = [
    "BenchmarkRun",
    "Comparison",
    "LatencyStats",
    "LoopSettings",
    "Measurement",
    "Session",
    "Target",
    "TargetOptions",
    "flops_per_image",
    "format_table",
    "open_target",
    "percentile",
    "run_benchmark",
    "run_sessions",
    "to_csv",
    "to_markdown",
]
