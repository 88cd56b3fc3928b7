"""The network view (算网感知), with no I/O: every network plugin's topology merged into one graph of
sites and links, asked for the latency and the best path between two sites.

Rules:
- Sites are the union of every plugin's sites; links keep the plugin (`network`) they come from.
  Links measured by this node (round trips to partner nodes, `measured_links`) join the node's own
  site to a partner's pseudo-site `node:<partner>`, one way = half the round trip; their bandwidth
  is unknown (0 free).
- The best path from `a` to `b` is the lowest-latency route over links that are up and have at
  least `min_mbps` free; ties go to the lower cost per GB, then to site and link names, so answers
  are reproducible. Its free bandwidth is the smallest free bandwidth of its links, its cost the
  sum of their costs per GB.
- A site's path to itself crosses no link: latency 0, cost 0, free bandwidth `LOCAL_MBPS`.
- Paths from one source are computed once per view (a view is immutable; a refresh builds a new one).
- Asked for a path or latencies from a site it does not know, the view raises `UnknownSite` naming
  it (`latency_ms` answers None instead, as for no route); no route returns None.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.network.contract import Topology

LOCAL_MBPS = 10**8  # a site to itself: no network link limits it (the contract's largest bandwidth)
PSEUDO_PREFIX = "node:"


class UnknownSite(LookupError):
    """A site the network view does not know."""

    def __init__(self, site: str) -> None:
        super().__init__(f"site {site!r} is not in the network view")
        self.site = site


@dataclass(frozen=True)
class ViewLink:
    """A link of the merged view (usable both ways): latency, free and total bandwidth, cost per GB."""

    network: str  # the plugin it comes from, or "measured"
    id: str
    a: str
    b: str
    latency_us: int
    free_mbps: int
    bandwidth_mbps: int
    cost_minor_per_gb: int
    up: bool = True

    def view(self) -> dict[str, Any]:
        """The link as the API shows it."""
        return {
            "network": self.network,
            "id": self.id,
            "a": self.a,
            "b": self.b,
            "latency_us": self.latency_us,
            "free_mbps": self.free_mbps,
            "bandwidth_mbps": self.bandwidth_mbps,
            "cost_minor_per_gb": self.cost_minor_per_gb,
            "up": self.up,
        }


@dataclass(frozen=True)
class Route:
    """The best path between two sites: the sites crossed, its links, latency, free bandwidth, cost."""

    src: str
    dst: str
    hops: tuple[str, ...]
    links: tuple[str, ...]
    latency_us: int
    free_mbps: int
    cost_minor_per_gb: int

    @property
    def latency_ms(self) -> float:
        """One-way latency in milliseconds."""
        return self.latency_us / 1000

    def view(self) -> dict[str, Any]:
        """The route as the API shows it."""
        return {
            "src": self.src,
            "dst": self.dst,
            "hops": list(self.hops),
            "links": list(self.links),
            "latency_us": self.latency_us,
            "free_mbps": self.free_mbps,
            "cost_minor_per_gb": self.cost_minor_per_gb,
        }


# Per source site and bandwidth floor: the best (latency, cost) to each site and the link reaching it.
_Tree = dict[str, tuple[int, int, str, ViewLink | None]]


@dataclass(frozen=True)
class NetworkView:
    """Sites and links of every network plugin merged; `refreshed_ts` when it was read (UTC epoch s);
    `errors` names plugins whose topology could not be read then."""

    sites: tuple[str, ...] = ()
    links: tuple[ViewLink, ...] = ()
    refreshed_ts: int = 0
    errors: tuple[tuple[str, str], ...] = ()
    _trees: dict[tuple[str, int], _Tree] = field(default_factory=dict, compare=False, repr=False)
    _adjacent: dict[str, list[tuple[str, ViewLink]]] = field(default_factory=dict, compare=False, repr=False)

    def knows(self, site: str) -> bool:
        """Whether `site` is in the view."""
        return site in self._site_set()

    def _site_set(self) -> dict[str, list[tuple[str, ViewLink]]]:
        if not self._adjacent and self.sites:
            adjacent: dict[str, list[tuple[str, ViewLink]]] = {site: [] for site in self.sites}
            for link in self.links:
                if link.up and link.a in adjacent and link.b in adjacent:
                    adjacent[link.a].append((link.b, link))
                    adjacent[link.b].append((link.a, link))
            for edges in adjacent.values():
                edges.sort(key=lambda pair: (pair[0], pair[1].network, pair[1].id))
            self._adjacent.update(adjacent)
        return self._adjacent

    def _tree(self, src: str, min_mbps: int) -> _Tree:
        key = (src, min_mbps)
        tree = self._trees.get(key)
        if tree is not None:
            return tree
        adjacent = self._site_set()
        tree = {src: (0, 0, src, None)}
        queue: list[tuple[int, int, str]] = [(0, 0, src)]
        done: set[str] = set()
        while queue:
            latency, cost, site = heapq.heappop(queue)
            if site in done:
                continue
            done.add(site)
            for neighbour, link in adjacent[site]:
                if link.free_mbps < min_mbps or neighbour in done:
                    continue
                candidate = (latency + link.latency_us, cost + link.cost_minor_per_gb)
                known = tree.get(neighbour)
                if known is None or candidate < known[:2]:
                    tree[neighbour] = (*candidate, site, link)
                    heapq.heappush(queue, (*candidate, neighbour))
        self._trees[key] = tree
        return tree

    def _check(self, *sites: str) -> None:
        known = self._site_set()
        for site in sites:
            if site not in known:
                raise UnknownSite(site)

    def path(self, a: str, b: str, min_mbps: int = 0) -> Route | None:
        """The best path from `a` to `b` over links with `min_mbps` free (None if there is none)."""
        self._check(a, b)
        if a == b:
            return Route(a, b, (a,), (), 0, LOCAL_MBPS, 0)
        tree = self._tree(a, min_mbps)
        if b not in tree:
            return None
        hops, links = [b], []
        free = LOCAL_MBPS
        site = b
        while site != a:
            _, _, previous, link = tree[site]
            assert link is not None
            links.append(link.id)
            free = min(free, link.free_mbps)
            hops.append(previous)
            site = previous
        latency, cost = tree[b][:2]
        return Route(a, b, tuple(reversed(hops)), tuple(reversed(links)), latency, free, cost)

    def latency_ms(self, a: str, b: str) -> float | None:
        """One-way latency of the best path from `a` to `b` in ms; None when there is no path or the
        view does not know a site (what a steering `Latencies` source answers)."""
        known = self._site_set()
        if a not in known or b not in known:
            return None
        if a == b:
            return 0.0
        reached = self._tree(a, 0).get(b)
        return None if reached is None else reached[0] / 1000

    def latencies_us(self, src: str) -> dict[str, int]:
        """One-way latency (µs) from `src` to every site it reaches (itself at 0)."""
        self._check(src)
        return {site: entry[0] for site, entry in self._tree(src, 0).items()}

    def view(self) -> dict[str, Any]:
        """The view as `GET /api/v1/network` shows it (and as it is stored)."""
        return {
            "sites": list(self.sites),
            "links": [link.view() for link in self.links],
            "refreshed_ts": self.refreshed_ts,
            "errors": [{"network": name, "message": message} for name, message in self.errors],
        }


def from_view(data: Mapping[str, Any]) -> NetworkView:
    """A view back from what `NetworkView.view()` produced."""
    return NetworkView(
        sites=tuple(data.get("sites", ())),
        links=tuple(ViewLink(**link) for link in data.get("links", ())),
        refreshed_ts=int(data.get("refreshed_ts", 0)),
        errors=tuple((e["network"], e["message"]) for e in data.get("errors", ())),
    )


def merge(
    topologies: Mapping[str, Topology],
    measured: Iterable[ViewLink] = (),
    refreshed_ts: int = 0,
    errors: Iterable[tuple[str, str]] = (),
) -> NetworkView:
    """One view from each network plugin's topology (by plugin name) and further links (measured
    ones, or those kept from an earlier view), whose sites join the view."""
    sites: dict[str, None] = {}
    links: list[ViewLink] = []
    for network in sorted(topologies):
        topology = topologies[network]
        sites.update(dict.fromkeys(topology.sites))
        links.extend(
            ViewLink(
                network,
                link.id,
                link.a,
                link.b,
                link.latency_us,
                link.free_mbps,
                link.bandwidth_mbps,
                link.cost_minor_per_gb,
                link.up,
            )
            for link in topology.links
        )
    for link in measured:
        sites.update(dict.fromkeys((link.a, link.b)))
        links.append(link)
    return NetworkView(tuple(sites), tuple(links), refreshed_ts, tuple(errors))


def partner_site(partner: str) -> str:
    """The pseudo-site of a partner node whose catalog declares no site."""
    return f"{PSEUDO_PREFIX}{partner}"


def measured_links(home_site: str, round_trips_us: Mapping[str, int]) -> list[ViewLink]:
    """Links from this node's site to each partner's pseudo-site, one way = half the round trip."""
    return [
        ViewLink("measured", f"rtt-{partner}", home_site, partner_site(partner), rtt // 2, 0, 0, 0)
        for partner, rtt in sorted(round_trips_us.items())
    ]
