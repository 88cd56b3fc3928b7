"""Which replica takes a user's request (业务调度), with no I/O.

Every replica gets a score in milliseconds, lower is better:

    score = latency(user site → replica site) + load_ms_per_request × in-flight requests

The latency comes from the network (a `Latencies`: the network view, or the configured table);
a replica on the user's own site is 0 ms away, and a pair the network knows no path between counts
`unknown_latency_ms`. A replica takes no request while it is unhealthy (a failed health check or
failed connection since its last good check), has announced no endpoint yet, or is drained (its
weight pinned to 0). The replicas that may take requests and score within `tolerance_ms` of the best
share the traffic in proportion to their weights (smooth weighted round robin, as nginx does), so
a far or busy replica loses its share until the near ones' load makes it competitive again.
`rank` explains every term for every replica (the resolve API shows it).
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Protocol


class Latencies(Protocol):
    """Round-trip latency between two network sites in ms (None when no path is known)."""

    def latency_ms(self, site_a: str, site_b: str) -> float | None:
        """The latency between `site_a` and `site_b`, or None."""


@dataclass(frozen=True)
class SteeringParams:
    """The terms of the score (see the module docstring)."""

    load_ms_per_request: float = 2.0
    unknown_latency_ms: float = 50.0
    tolerance_ms: float = 5.0


@dataclass(frozen=True)
class Candidate:
    """A replica as steering sees it now."""

    id: str
    endpoint: str | None
    site: str | None
    healthy: bool
    in_flight: int
    weight: int
    pinned: bool = False
    problem: str | None = None


@dataclass(frozen=True)
class Ranked:
    """A replica's place: may it take requests, its score and the reasons of each term."""

    candidate: Candidate
    eligible: bool
    score_ms: float
    latency_ms: float
    reasons: tuple[str, ...]

    def view(self) -> dict[str, object]:
        """What the resolve API shows of it."""
        c = self.candidate
        return {
            "replica": c.id,
            "endpoint": c.endpoint,
            "site": c.site,
            "eligible": self.eligible,
            "score_ms": round(self.score_ms, 3),
            "latency_ms": round(self.latency_ms, 3),
            "in_flight": c.in_flight,
            "weight": c.weight,
            "pinned": c.pinned,
            "healthy": c.healthy,
            "reasons": list(self.reasons),
        }


def latency_between(
    latencies: Latencies, user_site: str | None, site: str | None, params: SteeringParams
) -> tuple[float, str]:
    """The latency term and its reason."""
    if user_site is None or site is None:
        where = "the user's site" if user_site is None else "the replica's site"
        return (
            params.unknown_latency_ms,
            f"latency {params.unknown_latency_ms:g} ms assumed ({where} is unknown)",
        )
    if user_site == site:
        return 0.0, f"latency 0 ms (same site {site})"
    found = latencies.latency_ms(user_site, site)
    if found is None:
        return (
            params.unknown_latency_ms,
            f"latency {params.unknown_latency_ms:g} ms assumed (no path {user_site} → {site})",
        )
    return float(found), f"latency {found:g} ms ({user_site} → {site})"


def rank(
    candidates: Iterable[Candidate],
    user_site: str | None,
    latencies: Latencies,
    params: SteeringParams,
    explain: bool = True,
) -> list[Ranked]:
    """Every replica, those that may take requests first, each group by score then id; with the
    reasons of each term unless `explain` is False (the proxy's hot path needs only the scores)."""
    ranked: list[Ranked] = []
    for c in candidates:
        latency, why_latency = latency_between(latencies, user_site, c.site, params)
        load = params.load_ms_per_request * c.in_flight
        eligible = c.endpoint is not None and c.healthy and c.weight > 0
        reasons = _reasons(c, why_latency, load) if explain else ()
        ranked.append(Ranked(c, eligible, latency + load, latency, reasons))
    ranked.sort(key=lambda r: (not r.eligible, r.score_ms, r.candidate.id))
    return ranked


def _reasons(c: Candidate, why_latency: str, load: float) -> tuple[str, ...]:
    reasons = [why_latency, f"load +{load:g} ms ({c.in_flight} in flight)"]
    weight = f"weight {c.weight}" + (" (pinned)" if c.pinned else "")
    if c.endpoint is None:
        reasons.append(f"not serving yet: {c.problem or 'no endpoint announced'}")
    elif not c.healthy:
        reasons.append(f"unhealthy: {c.problem or 'health check failed'}")
    reasons.append(f"{weight}: drained" if c.weight == 0 else weight)
    return tuple(reasons)


def near_set(ranked: list[Ranked], params: SteeringParams) -> list[Ranked]:
    """The eligible replicas scored within `tolerance_ms` of the best (empty if none is eligible)."""
    eligible = [r for r in ranked if r.eligible]
    if not eligible:
        return []
    best = eligible[0].score_ms
    return [r for r in eligible if r.score_ms <= best + params.tolerance_ms]


def pick(near: list[Ranked], current: MutableMapping[str, int]) -> Candidate | None:
    """One replica of `near` by smooth weighted round robin over `current` (the running counters,
    kept by the caller between requests); None when `near` is empty."""
    if not near:
        return None
    total = 0
    best: Ranked | None = None
    for r in near:
        key = r.candidate.id
        current[key] = current.get(key, 0) + r.candidate.weight
        total += r.candidate.weight
        if best is None or current[key] > current[best.candidate.id]:
            best = r
    assert best is not None
    current[best.candidate.id] -= total
    return best.candidate


@dataclass(frozen=True)
class LatencyTable:
    """Latencies from a table of site pairs (both ways), e.g. `[services] latency_ms`."""

    pairs: dict[tuple[str, str], float]

    @classmethod
    def from_config(cls, table: dict[str, float]) -> LatencyTable:
        """From `{"a/b": ms}`."""
        pairs: dict[tuple[str, str], float] = {}
        for key, ms in table.items():
            a, b = key.split("/")
            pairs[(a, b)] = pairs[(b, a)] = float(ms)
        return cls(pairs)

    @property
    def sites(self) -> frozenset[str]:
        """Every site the table names."""
        return frozenset(site for pair in self.pairs for site in pair)

    def latency_ms(self, site_a: str, site_b: str) -> float | None:
        """The pair's latency, or None."""
        return self.pairs.get((site_a, site_b))


@dataclass(frozen=True)
class Chain:
    """The first latency any of `sources` knows."""

    sources: tuple[Latencies, ...]

    def latency_ms(self, site_a: str, site_b: str) -> float | None:
        """The first known latency, or None."""
        for source in self.sources:
            found = source.latency_ms(site_a, site_b)
            if found is not None:
                return found
        return None
