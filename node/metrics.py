"""Prometheus metrics of one node, in a registry of its own (several nodes can share a process)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class ExpositionSource(Protocol):
    """Metrics rendered outside the registry, in Prometheus text format, with their own refresh."""

    async def refresh(self) -> None:
        """Bring the text up to date (as the source caches it)."""

    def text(self) -> bytes:
        """The metrics in Prometheus text format (families distinct from the registry's)."""
        ...


LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Metrics:
    """The node's registry and the metrics the foundation records; components add their own."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))
    # Parts of the exposition rendered elsewhere (business metrics read from the database render
    # their text once per reading, off the event loop): refreshed, then appended, on every scrape.
    sources: list[ExpositionSource] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.http_requests = Counter(
            "cpnode_http_requests_total",
            "HTTP requests handled, by route and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "cpnode_http_request_duration_seconds",
            "HTTP request handling time, by route.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.job_runs = Counter(
            "cpnode_scheduler_job_runs_total",
            "Scheduled job runs by outcome (ok, error, skipped when another replica holds the lease).",
            ["job", "outcome"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "cpnode_scheduler_job_duration_seconds",
            "Scheduled job run time.",
            ["job"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )

    async def refresh(self) -> None:
        """Bring collectors that read outside the process up to date (each caches as it sees fit)."""
        await asyncio.gather(*(source.refresh() for source in self.sources))

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus text format and its content type."""
        return generate_latest(self.registry) + b"".join(s.text() for s in self.sources), CONTENT_TYPE_LATEST
