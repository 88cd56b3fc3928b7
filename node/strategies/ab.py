"""A/B splits and their report, with no I/O.

Split: an operator gives a strategy's versions percentages (integers summing to 100). A consumer's
demands all go to one version, chosen by a stable hash: bucket = first 8 bytes of
SHA-256(`name` NUL `consumer`) mod 100, and the versions own consecutive ranges of buckets in
version order. The same consumer keeps its version as long as the split does not change.

Report: for each of two strategies, from its real orders: price paid (minor units), time to running
(s), latency to the users (ms), each as mean with a 95 % confidence interval (Student's t on the
sample's standard deviation); task success as a rate with a 95 % Wilson interval. A measure with
fewer than two observations has no interval.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from node.market.errors import StrategyError

# Student's t, two-sided 95 %, by degrees of freedom 1..30; above 30 the normal 1.96 is close enough.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042)  # fmt: skip
_Z95 = 1.96


def check_split(split: Mapping[str, Any], versions: Sequence[int]) -> dict[int, int]:
    """{version: percent} of a split; StrategyError unless they are known versions with integer
    percentages 0..100 summing to 100, at least two of them."""
    if not isinstance(split, Mapping) or len(split) < 2:
        raise StrategyError("split", "needs at least two versions with their percentages")
    checked: dict[int, int] = {}
    for key, percent in split.items():
        try:
            version = int(key)
        except (TypeError, ValueError):
            raise StrategyError(f"split.{key}", "is not a version number") from None
        if version not in versions:
            raise StrategyError(
                f"split.{key}", f"version {version} is not an active version (active: {list(versions)})"
            )
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise StrategyError(f"split.{key}", f"must be an integer percentage 0..100, got {percent!r}")
        checked[version] = percent
    total = sum(checked.values())
    if total != 100:
        raise StrategyError("split", f"percentages sum to {total}, not 100")
    return dict(sorted(checked.items()))


def bucket(name: str, consumer: str) -> int:
    """The consumer's stable bucket 0..99 for strategy `name`."""
    digest = hashlib.sha256(f"{name}\0{consumer}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def version_for(name: str, consumer: str, split: Mapping[int, int]) -> int:
    """The version of `name` a consumer's demands go to under `split`."""
    at, edge = bucket(name, consumer), 0
    for version, percent in sorted(split.items()):
        edge += percent
        if at < edge:
            return version
    return max(split)


@dataclass(frozen=True)
class Interval:
    """A mean (or rate) with its 95 % confidence interval and the number of observations."""

    n: int
    mean: float | None
    low: float | None
    high: float | None

    def view(self) -> dict[str, Any]:
        """As the API shows it (rounded to 4 decimals)."""

        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 4)

        return {"n": self.n, "mean": r(self.mean), "low": r(self.low), "high": r(self.high)}


def mean_interval(values: Sequence[float]) -> Interval:
    """Mean and Student's-t 95 % interval of `values`."""
    n = len(values)
    if n == 0:
        return Interval(0, None, None, None)
    mean = statistics.fmean(values)
    if n == 1:
        return Interval(1, mean, None, None)
    t = _T95[n - 2] if n - 1 <= len(_T95) else _Z95
    half = t * statistics.stdev(values) / math.sqrt(n)
    return Interval(n, mean, mean - half, mean + half)


def rate_interval(successes: int, n: int) -> Interval:
    """Success rate and its 95 % Wilson interval."""
    if n == 0:
        return Interval(0, None, None, None)
    p = successes / n
    z2 = _Z95 * _Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Interval(n, p, max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Outcome:
    """One order a strategy chose, and how it went (None where not known yet or not applicable)."""

    order_id: str
    price_paid: int | None
    running_s: float | None
    succeeded: bool | None
    latency_ms: float | None


def summarise(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The report's figures for one strategy's orders."""
    ended = [o.succeeded for o in outcomes if o.succeeded is not None]
    return {
        "orders": len(outcomes),
        "price_paid": mean_interval([o.price_paid for o in outcomes if o.price_paid is not None]).view(),
        "time_to_running_s": mean_interval([o.running_s for o in outcomes if o.running_s is not None]).view(),
        "task_success": rate_interval(sum(ended), len(ended)).view(),
        "latency_ms": mean_interval([o.latency_ms for o in outcomes if o.latency_ms is not None]).view(),
    }
