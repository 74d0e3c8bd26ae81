"""Measuring runtimes: the timing loop, statistics, sweeps, reports and plots.

The top layer (docs/design.md): it may import `toolkit`, `resnet`, `deploy` and `export`
(`benchmark.fidelity` exports the model it times when it is given none).
"""

from .harness import BatchTimer, LoopSettings, Measurement, run_timers
from .report import BenchmarkRun, Comparison, ReportFiles, format_table, to_csv, to_markdown
from .run import benchmark_models, run_benchmark
from .stats import LatencyStats, percentile
from .targets import Target, flops_per_image, open_target

__all__ = [
    "BatchTimer",
    "BenchmarkRun",
    "Comparison",
    "LatencyStats",
    "LoopSettings",
    "Measurement",
    "ReportFiles",
    "Target",
    "flops_per_image",
    "format_table",
    "benchmark_models",
    "open_target",
    "percentile",
    "run_benchmark",
    "run_timers",
    "to_csv",
    "to_markdown",
]
