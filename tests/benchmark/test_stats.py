import numpy as np
import pytest

from benchmark.stats import LatencyStats, percentile


@pytest.mark.parametrize(
    "samples", [[5.0], [3.0, 1.0], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], list(np.random.default_rng(0).exponential(3, 997))]
)
@pytest.mark.parametrize("q", [0, 1, 50, 90, 95, 99, 99.9, 100])
def test_percentiles_match_numpy(samples, q):
    assert percentile(sorted(samples), q) == pytest.approx(np.percentile(samples, q), rel=1e-12, abs=1e-12)


def test_latency_stats_of_known_samples():
    stats = LatencyStats.from_samples([10, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert (stats.count, stats.min, stats.max, stats.mean, stats.median) == (10, 1, 10, 5.5, 5.5)
    assert stats.p90 == pytest.approx(9.1) and stats.p99 == pytest.approx(9.91)
    assert stats.std == pytest.approx(np.std(np.arange(1, 11)))


def test_no_samples_and_bad_percentiles():
    with pytest.raises(ValueError):
        LatencyStats.from_samples([])
    with pytest.raises(ValueError):
        percentile([1.0], 101)
