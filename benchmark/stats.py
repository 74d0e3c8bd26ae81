"""Latency statistics, computed the way numpy does (linear interpolation between order statistics)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

PERCENTILES = (50, 90, 95, 99)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of ascending values, as `numpy.percentile(..., method="linear")`."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be between 0 and 100, got {q}")
    position = (len(sorted_values) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-iteration times, in milliseconds."""

    count: int
    min: float
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    max: float
    std: float

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float]) -> LatencyStats:
        values = sorted(float(v) for v in samples_ms)
        if not values:
            raise ValueError("no samples")
        mean = sum(values) / len(values)
        variance = sum((v - mean) ** 2 for v in values) / len(values)
        return cls(
            count=len(values),
            min=values[0],
            mean=mean,
            median=percentile(values, 50),
            p90=percentile(values, 90),
            p95=percentile(values, 95),
            p99=percentile(values, 99),
            max=values[-1],
            std=math.sqrt(variance),
        )

    def to_dict(self) -> dict:
        """JSON's form: a figure not measured (NaN: perf_analyzer reports no minimum or maximum) is null."""
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(self).items()}
