"""The benchmarks' shared timing helpers (bench/report.py): percentiles that agree with the median
and interpolate between samples, figures keyed `pNN_ms`, and timed sequential calls."""

from __future__ import annotations

import asyncio
import statistics

import pytest

from bench.report import latency_ms, percentile, percentile_ms, time_awaits, time_calls


def test_p50_is_the_median_and_the_ends_are_the_extremes() -> None:
    """p50 equals statistics.median (odd and even counts); p0 and p100 are the smallest and largest."""
    for samples in ([3.0, 1.0, 2.0], [4.0, 1.0, 3.0, 2.0]):
        assert percentile(samples, 0.5) == statistics.median(samples)
        assert percentile(samples, 0.0) == min(samples)
        assert percentile(samples, 1.0) == max(samples)


def test_tail_percentiles_interpolate_between_the_nearest_samples() -> None:
    """p99 of 0..100 is 99, and p99 of 0..10 lies 90% of the way from 9 to 10."""
    assert percentile([float(n) for n in range(101)], 0.99) == pytest.approx(99.0)
    assert percentile([float(n) for n in range(11)], 0.99) == pytest.approx(9.9)


def test_no_samples_or_a_bad_quantile_is_an_error() -> None:
    """An empty list, or a quantile outside 0–1, raises ValueError rather than a made-up figure."""
    with pytest.raises(ValueError, match="no samples"):
        percentile([], 0.5)
    with pytest.raises(ValueError, match="0–1"):
        percentile([1.0], 99)


def test_latency_figures_are_milliseconds_keyed_by_percentile() -> None:
    """Seconds in, rounded milliseconds out, under p50_ms / p99_ms / p99.9_ms keys."""
    samples = [0.001 * n for n in range(1, 1001)]
    assert percentile_ms(samples, 0.5) == 500.5
    figures = latency_ms(samples, (0.5, 0.9, 0.99, 0.999), digits=1)
    assert list(figures) == ["p50_ms", "p90_ms", "p99_ms", "p99.9_ms"]
    assert figures["p50_ms"] == 500.5
    assert figures["p99.9_ms"] == 999.0


def test_timed_calls_give_one_sample_per_call() -> None:
    """time_calls and time_awaits call `count` times, in order, and time each call."""
    calls: list[int] = []
    samples = time_calls(5, lambda: calls.append(len(calls)))
    assert calls == [0, 1, 2, 3, 4]
    assert len(samples) == 5
    assert all(sample >= 0 for sample in samples)

    async def one() -> None:
        calls.append(len(calls))
        await asyncio.sleep(0)

    awaited = asyncio.run(time_awaits(3, one))
    assert calls[5:] == [5, 6, 7]
    assert len(awaited) == 3
    assert all(sample >= 0 for sample in awaited)
