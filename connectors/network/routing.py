"""Path computation (pure): the lowest-latency route whose every link is up and has the bandwidth free.

Dijkstra over sites with link latency as weight, skipping links that are down or have less free
bandwidth than requested; ties broken by cost then by site name so results are reproducible.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from connectors.errors import NoPath, NotFound
from connectors.network.contract import Link, PathRequest


def compute_route(sites: Iterable[str], links: Iterable[Link], request: PathRequest) -> list[Link]:
    """The links of the best usable route from `request.src` to `request.dst`, in order."""
    known = set(sites)
    for site in (request.src, request.dst):
        if site not in known:
            raise NotFound(f"no site {site!r}")
    if request.src == request.dst:
        raise NoPath("source and destination are the same site")
    adjacent: dict[str, list[tuple[str, Link]]] = {site: [] for site in known}
    for link in links:
        if link.up and link.free_mbps >= request.bandwidth_mbps:
            adjacent[link.a].append((link.b, link))
            adjacent[link.b].append((link.a, link))
    best: dict[str, tuple[int, int]] = {request.src: (0, 0)}
    previous: dict[str, tuple[str, Link]] = {}
    queue: list[tuple[int, int, str]] = [(0, 0, request.src)]
    while queue:
        latency, cost, site = heapq.heappop(queue)
        if (latency, cost) > best.get(site, (latency, cost)):
            continue
        if site == request.dst:
            break
        for neighbour, link in sorted(adjacent[site], key=lambda pair: (pair[0], pair[1].id)):
            candidate = (latency + link.latency_us, cost + link.cost_minor_per_gb)
            if candidate < best.get(neighbour, (2**63, 2**63)):
                best[neighbour] = candidate
                previous[neighbour] = (site, link)
                heapq.heappush(queue, (*candidate, neighbour))
    if request.dst not in previous:
        raise NoPath(
            f"no route from {request.src} to {request.dst} with {request.bandwidth_mbps} Mbit/s free"
        )
    route: list[Link] = []
    site = request.dst
    while site != request.src:
        site, link = previous[site]
        route.append(link)
    route.reverse()
    total_latency = sum(link.latency_us for link in route)
    if request.max_latency_us is not None and total_latency > request.max_latency_us:
        raise NoPath(f"best route takes {total_latency} µs, over the bound of {request.max_latency_us} µs")
    return route


def hops_of(src: str, route: list[Link]) -> list[str]:
    """The sites a route visits, starting at `src`."""
    hops = [src]
    for link in route:
        hops.append(link.b if link.a == hops[-1] else link.a)
    return hops
