"""Choosing where a migration goes (算网决策), with no I/O: the destination pool and the network path,
from fresh offers and the network topology, or as given.

Each candidate offer is checked against the source in the order of `REASONS`; the first rule it
breaks is why it is left out. The others are estimated:

- transfer time = the route's latency + state bytes at the path's bandwidth (ms, rounded up);
- transfer cost = state bytes × the route's cost per GB (minor units, rounded up);
- run cost = the destination's price per hour × the hours asked for;

and ranked: `cost` (the default) by transfer cost + run cost, then transfer time; `time` by
transfer time, then cost; ties go to the higher metric score, then the offer id. A destination at
the source's own site, or any destination when no network plugin is configured, needs no path
(latency 0, cost 0, the bandwidth asked for). Money is integer minor units.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from connectors.errors import NoPath, NotFound
from connectors.network.contract import PathRequest, Topology
from connectors.network.routing import compute_route, hops_of
from connectors.offers import Offer

Objective = Literal["cost", "time"]
REASONS: tuple[str, ...] = (
    "not_requested",
    "same_place",
    "chip_mismatch",
    "too_small",
    "no_free_units",
    "no_site",
    "no_path",
)
BYTES_PER_GB = 10**9


@dataclass(frozen=True)
class Route:
    """The path a transfer would take: sites crossed, links, latency and cost per GB."""

    hops: list[str]
    links: list[str]
    latency_us: int
    cost_minor_per_gb: int


@dataclass(frozen=True)
class Candidate:
    """A destination offer that fits, with its estimates."""

    offer_id: str
    pool: str
    region: str
    flavor: str
    site: str | None
    price_per_hour: int
    currency: str
    metric_score: int
    route: Route | None
    transfer_ms: int
    transfer_cost: int
    run_cost: int

    @property
    def total_cost(self) -> int:
        """Transfer cost plus run cost (minor units)."""
        return self.transfer_cost + self.run_cost

    def view(self) -> dict[str, Any]:
        """The candidate as the API shows it."""
        return {**asdict(self), "total_cost": self.total_cost}


@dataclass(frozen=True)
class Excluded:
    """An offer left out, and why (a code of `REASONS` and a message)."""

    offer_id: str
    reason: str
    message: str


@dataclass(frozen=True)
class Request:
    """What the decision needs: the source, what is asked, and the state's size."""

    source_pool: str
    source_region: str
    source_flavor: str
    state_bytes: int
    bandwidth_mbps: int
    hours: int = 1
    objective: Objective = "cost"
    to_pool: str | None = None
    offer_id: str | None = None


@dataclass(frozen=True)
class Decision:
    """The ranked candidates (best first) and the offers left out."""

    candidates: list[Candidate]
    excluded: list[Excluded]

    @property
    def chosen(self) -> Candidate | None:
        """The best candidate, if any."""
        return self.candidates[0] if self.candidates else None

    def view(self) -> dict[str, Any]:
        """The decision as the API shows it."""
        return {
            "chosen": None if self.chosen is None else self.chosen.view(),
            "candidates": [c.view() for c in self.candidates],
            "excluded": [asdict(e) for e in self.excluded],
        }


def transfer_ms(state_bytes: int, bandwidth_mbps: int, latency_us: int) -> int:
    """Milliseconds to move `state_bytes` at `bandwidth_mbps` over a route of `latency_us` (rounded up)."""
    return -(-latency_us // 1000) + -(-state_bytes * 8 // (bandwidth_mbps * 1000))


def transfer_cost(state_bytes: int, cost_minor_per_gb: int) -> int:
    """Minor units to move `state_bytes` at `cost_minor_per_gb` (rounded up)."""
    return -(-state_bytes * cost_minor_per_gb // BYTES_PER_GB)


def _route(
    topology: Topology | None, source_site: str | None, site: str | None, bandwidth_mbps: int
) -> Route | None:
    """The route between two sites (None when no path is needed); NoPath/NotFound if there is none."""
    if topology is None or source_site is None or site is None or source_site == site:
        return None
    links = compute_route(
        topology.sites, topology.links, PathRequest(src=source_site, dst=site, bandwidth_mbps=bandwidth_mbps)
    )
    return Route(
        hops=hops_of(source_site, links),
        links=[link.id for link in links],
        latency_us=sum(link.latency_us for link in links),
        cost_minor_per_gb=sum(link.cost_minor_per_gb for link in links),
    )


def _misfit(source: Offer | None, offer: Offer, request: Request) -> tuple[str, str] | None:
    if request.offer_id is not None and offer.offer_id != request.offer_id:
        return "not_requested", f"the request names offer {request.offer_id}"
    if request.to_pool is not None and offer.pool != request.to_pool:
        return "not_requested", f"the request names pool {request.to_pool}"
    if offer.pool == request.source_pool and offer.region_id == request.source_region:
        return "same_place", "the source's own pool and region"
    if source is not None:
        if offer.chip_model != source.chip_model:
            return "chip_mismatch", f"{offer.chip_model}, the source runs on {source.chip_model}"
        for name, unit in (("chips", "chips"), ("cpus", "CPUs"), ("memory_mib", "MiB of memory")):
            if getattr(offer, name) < getattr(source, name):
                return "too_small", f"{getattr(offer, name)} {unit}, the source has {getattr(source, name)}"
    if offer.free < 1:
        return "no_free_units", "no free unit"
    return None


def decide(
    request: Request,
    offers: Iterable[Offer],
    sites: Mapping[str, str],
    topology: Topology | None,
) -> Decision:
    """Rank the offers that can take the source's state, best first; say why the others cannot."""
    offers = sorted(offers, key=lambda o: o.offer_id)
    source_id = f"{request.source_pool}/{request.source_region}/{request.source_flavor}"
    source = next((o for o in offers if o.offer_id == source_id), None)
    source_site = sites.get(request.source_pool)
    candidates: list[Candidate] = []
    excluded: list[Excluded] = []
    for offer in offers:
        misfit = _misfit(source, offer, request)
        site = sites.get(offer.pool)
        if misfit is None and topology is not None and (source_site is None or site is None):
            missing = request.source_pool if source_site is None else offer.pool
            misfit = "no_site", f"pool {missing} has no network site ([[pools]] site or [migration] sites)"
        route: Route | None = None
        if misfit is None:
            try:
                route = _route(topology, source_site, site, request.bandwidth_mbps)
            except (NoPath, NotFound) as exc:
                misfit = "no_path", str(exc)
        if misfit is not None:
            excluded.append(Excluded(offer.offer_id, *misfit))
            continue
        latency = route.latency_us if route else 0
        candidates.append(
            Candidate(
                offer_id=offer.offer_id,
                pool=offer.pool,
                region=offer.region_id,
                flavor=offer.flavor_id,
                site=site,
                price_per_hour=offer.price_minor_per_hour,
                currency=offer.currency,
                metric_score=offer.score_composite_milli,
                route=route,
                transfer_ms=transfer_ms(request.state_bytes, request.bandwidth_mbps, latency),
                transfer_cost=transfer_cost(request.state_bytes, route.cost_minor_per_gb if route else 0),
                run_cost=offer.price_minor_per_hour * request.hours,
            )
        )
    if request.objective == "time":
        candidates.sort(key=lambda c: (c.transfer_ms, c.total_cost, -c.metric_score, c.offer_id))
    else:
        candidates.sort(key=lambda c: (c.total_cost, c.transfer_ms, -c.metric_score, c.offer_id))
    return Decision(candidates, excluded)
