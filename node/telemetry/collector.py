"""Business metrics served from a cache: one reading of the database, rendered once, serves every
scrape for `cache_s`.

A scrape awaits `refresh()` (the /metrics handler does) and then appends `text()` to the registry's
exposition. The database is read, and the reading rendered as Prometheus text, in a worker thread,
not on the event loop, and at most once per `cache_s` however many scrapes arrive: concurrent
scrapes share the reading in progress. A reading that fails or takes longer than `READ_TIMEOUT_S`
leaves the previous one in place (its age shows it) and is counted.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy.engine import Engine

from node.db import in_thread
from node.telemetry.families import families
from node.telemetry.readings import Readings

READ_TIMEOUT_S = 5.0
log = logging.getLogger("cpnode.telemetry")

Reader = Callable[[float], Readings]


class _Fixed:
    """A collector of families built beforehand (what `render` hands prometheus_client)."""

    def __init__(self, built: Iterable[Metric]) -> None:
        self._built = list(built)

    def collect(self) -> Iterator[Metric]:
        return iter(self._built)


def render(built: Iterable[Metric]) -> bytes:
    """Metric families in Prometheus text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(built))
    return generate_latest(registry)


class BusinessMetrics:
    """The node's business metrics, read from the database at most every `cache_s`."""

    def __init__(
        self,
        read: Reader,
        cache_s: float,
        clock: Callable[[], float] = time.time,
        timeout_s: float = READ_TIMEOUT_S,
        engine: Engine | None = None,
    ) -> None:
        self._read = read
        self._engine = engine  # whose threads read (the loop's default executor when None)
        self._cache_s = cache_s
        self._clock = clock
        self._timeout_s = timeout_s
        self._readings: Readings | None = None
        self._text = render(families(Readings(taken_ts=0.0)))  # every name, no samples, until a reading
        self._attempted: float | None = None  # when the last reading started (clock), failed or not
        self._pending: asyncio.Future[None] | None = None
        self.reads = 0
        self.errors = 0
        self.read_s = 0.0

    def fresh(self) -> bool:
        """Whether the last reading (or failed attempt) is younger than `cache_s`."""
        return self._attempted is not None and self._clock() - self._attempted < self._cache_s

    async def refresh(self) -> None:
        """Read the database again unless the last reading is fresh; wait at most `timeout_s` for it."""
        if self.fresh():
            return
        if self._pending is None or self._pending.done():
            self._attempted = self._clock()
            self._pending = asyncio.ensure_future(self._read_once())
        await asyncio.wait({self._pending}, timeout=self._timeout_s)

    def _read_and_render(self, now: float) -> tuple[Readings, bytes]:
        readings = self._read(now)
        return readings, render(families(readings))

    async def _read_once(self) -> None:
        started = time.monotonic()
        try:
            work = functools.partial(self._read_and_render, self._clock())
            if self._engine is None:
                readings, text = await asyncio.to_thread(work)
            else:
                readings, text = await in_thread(self._engine, lambda _engine: work())
        except Exception:  # a broken database must not take the HTTP metrics down with it
            self.errors += 1
            log.warning("business metrics: reading the database failed", exc_info=True)
            return
        finally:
            self.read_s = time.monotonic() - started
        self._readings, self._text = readings, text
        self.reads += 1

    def text(self) -> bytes:
        """The latest reading's metrics and this cache's own (age, read time, reads, errors)."""
        return self._text + render(self._own())

    def _own(self) -> list[Metric]:
        age = GaugeMetricFamily(
            "cpnode_business_metrics_age_seconds", "Age of the database reading the business metrics show."
        )
        if self._readings is not None:
            age.add_metric([], max(0.0, self._clock() - self._readings.taken_ts))
        took = GaugeMetricFamily(
            "cpnode_business_metrics_read_seconds", "How long the last reading (and its rendering) took."
        )
        took.add_metric([], self.read_s)
        reads = CounterMetricFamily(
            "cpnode_business_metrics_reads", "Database readings of the business metrics."
        )
        reads.add_metric([], self.reads)
        errors = CounterMetricFamily(
            "cpnode_business_metrics_errors", "Database readings of the business metrics that failed."
        )
        errors.add_metric([], self.errors)
        return [age, took, reads, errors]
