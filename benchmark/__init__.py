"""Measuring runtimes: the timing loop, statistics, sweeps, reports and plots.

The top layer (docs/design.md): it may import `toolkit`, `resnet`, `deploy` and `export`
(`benchmark.fidelity` exports the model it times when it is given none).
"""

from .harness import BatchTimer, LoopSettings, Measurement, run_timers
from .report import BenchmarkRun, Comparison, format_table, to_csv, to_markdown
from .run import run_benchmark
from .stats import LatencyStats, percentile
from .targets import Target, TargetOptions, flops_per_image, open_target

__all__ = [
    "BatchTimer",
    "BenchmarkRun",
    "Comparison",
    "LatencyStats",
    "LoopSettings",
    "Measurement",
    "Target",
    "TargetOptions",
    "flops_per_image",
    "format_table",
    "open_target",
    "percentile",
    "run_benchmark",
    "run_timers",
    "to_csv",
    "to_markdown",
]
