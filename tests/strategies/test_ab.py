"""Pure tests of A/B splits and the report's statistics: splits that do not validate are named, a
consumer's bucket is stable and the shares follow the percentages, intervals match known values."""

from __future__ import annotations

import math
from typing import Any

import pytest

from node.market.errors import StrategyError
from node.strategies.ab import (
    Outcome,
    bucket,
    check_split,
    mean_interval,
    rate_interval,
    summarise,
    version_for,
)


@pytest.mark.parametrize(
    ("split", "field", "words"),
    [
        ({"1": 60, "2": 30}, "split", "sum to 90, not 100"),
        ({"1": 100}, "split", "at least two"),
        ({"1": 50, "3": 50}, "split.3", "not an active version"),
        ({"1": 150, "2": -50}, "split.1", "percentage"),
        ({"1": 50.5, "2": 49.5}, "split.1", "integer"),
        ({"x": 50, "2": 50}, "split.x", "not a version number"),
    ],
)
def test_bad_splits_are_named(split: dict[str, Any], field: str, words: str) -> None:
    """Percentages must be integers of active versions summing to 100, for two versions or more."""
    with pytest.raises(StrategyError, match=words) as caught:
        check_split(split, [1, 2])
    assert caught.value.field == field


def test_a_consumer_keeps_its_version_and_shares_follow_the_split() -> None:
    """The bucket is a stable function of name and consumer; over 4,000 consumers a 70/30 split
    sends close to 70 % to the first version, and 0/100 sends none."""
    assert bucket("edge", "alice") == bucket("edge", "alice")
    assert {version_for("edge", "alice", {1: 50, 2: 50}) for _ in range(5)} in ({1}, {2})
    chosen = [version_for("edge", f"c{n}", {1: 70, 2: 30}) for n in range(4000)]
    assert 0.67 < chosen.count(1) / 4000 < 0.73
    assert {version_for("edge", f"c{n}", {1: 0, 2: 100}) for n in range(200)} == {2}


def test_intervals_match_known_values() -> None:
    """Student's t with 4 degrees of freedom (2.776), the normal beyond 30, Wilson for rates."""
    five = mean_interval([10.0, 12.0, 14.0, 16.0, 18.0])  # mean 14, sd √10
    assert five.mean == 14.0
    assert five.high is not None
    assert math.isclose(five.high - 14.0, 2.776 * math.sqrt(10) / math.sqrt(5), rel_tol=1e-9)
    many = mean_interval([float(n % 2) for n in range(100)])
    assert many.high is not None
    assert many.mean is not None
    assert math.isclose(many.high - many.mean, 1.96 * 0.50251890762 / 10, rel_tol=1e-6)
    assert mean_interval([3.0]).low is None
    rate = rate_interval(8, 10)
    assert rate.mean == 0.8
    assert rate.low is not None
    assert rate.high is not None
    assert math.isclose(rate.low, 0.4902, abs_tol=1e-4)
    assert math.isclose(rate.high, 0.9433, abs_tol=1e-4)
    assert rate_interval(0, 0).mean is None


def test_summary_counts_only_what_is_known() -> None:
    """Orders without a task count for price and latency, not for time to running or success."""
    figures = summarise(
        [
            Outcome("a", 100, 2.0, True, 5.0),
            Outcome("b", 300, None, None, None),
            Outcome("c", None, 4.0, False, 7.0),
        ]
    )
    assert figures["orders"] == 3
    assert figures["price_paid"]["mean"] == 200
    assert figures["time_to_running_s"]["n"] == 2
    assert figures["task_success"]["mean"] == 0.5
    assert figures["latency_ms"]["mean"] == 6.0
