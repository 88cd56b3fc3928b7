"""Pure tests of the network view: merging plugins' topologies, best paths (latency, then cost),
free bandwidth as the narrowest link, links down or too narrow skipped, unknown sites named."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.errors import NoPath
from connectors.network.contract import Link, PathRequest, Topology
from connectors.network.routing import compute_route
from node.network.view import (
    LOCAL_MBPS,
    UnknownSite,
    from_view,
    measured_links,
    merge,
    partner_site,
)
from tests.support.examples import examples


def link(
    link_id: str, a: str, b: str, latency_ms: int, free: int = 1000, cost: int = 1, up: bool = True
) -> Link:
    """A link with `free` Mbit/s free of 10 Gbit/s."""
    return Link(
        id=link_id,
        a=a,
        b=b,
        bandwidth_mbps=10_000,
        free_mbps=free,
        latency_us=latency_ms * 1000,
        cost_minor_per_gb=cost,
        up=up,
    )


def backbone() -> Topology:
    """a–b–c in a line (5 + 5 ms), and a direct a–c link of 12 ms."""
    return Topology(
        sites=["a", "b", "c"],
        links=[
            link("ab", "a", "b", 5, free=800),
            link("bc", "b", "c", 5, free=300),
            link("ac", "a", "c", 12),
        ],
    )


def test_best_path_is_lowest_latency_with_narrowest_free_bandwidth_and_summed_cost() -> None:
    """a→c goes through b (10 ms < 12 ms); free bandwidth is the narrower link's, cost the sum."""
    route = merge({"bb": backbone()}).path("a", "c")
    assert route is not None
    assert route.hops == ("a", "b", "c")
    assert route.links == ("ab", "bc")
    assert (route.latency_us, route.free_mbps, route.cost_minor_per_gb) == (10_000, 300, 2)
    assert route.latency_ms == 10.0


def test_bandwidth_floor_and_down_links_change_the_path() -> None:
    """Asking for more than bc has free takes the direct link; with it down there is no path."""
    view = merge({"bb": backbone()})
    wide = view.path("a", "c", min_mbps=500)
    assert wide is not None
    assert wide.links == ("ac",)
    assert wide.free_mbps == 1000
    down = Topology(
        sites=["a", "b", "c"], links=[link("ab", "a", "b", 5), link("ac", "a", "c", 12, up=False)]
    )
    assert merge({"bb": down}).path("a", "c") is None
    assert merge({"bb": down}).latency_ms("a", "c") is None


def test_ties_in_latency_go_to_the_cheaper_path() -> None:
    """Two 10 ms routes: the one costing less per GB wins."""
    topology = Topology(
        sites=["a", "x", "y", "b"],
        links=[
            link("ax", "a", "x", 5, cost=4),
            link("xb", "b", "x", 5, cost=4),
            link("ay", "a", "y", 5, cost=1),
            link("yb", "y", "b", 5, cost=1),
        ],
    )
    route = merge({"n": topology}).path("a", "b")
    assert route is not None
    assert route.hops == ("a", "y", "b")
    assert route.cost_minor_per_gb == 2


def test_plugins_merge_and_a_site_to_itself_crosses_nothing() -> None:
    """Two plugins' topologies join at a shared site; a site's path to itself is free and unlimited."""
    east = Topology(sites=["a", "b"], links=[link("ab", "a", "b", 3)])
    west = Topology(sites=["b", "w"], links=[link("bw", "b", "w", 4)])
    view = merge({"east": east, "west": west})
    assert view.sites == ("a", "b", "w")
    assert view.latency_ms("a", "w") == 7.0
    assert {link.network for link in view.links} == {"east", "west"}
    same = view.path("w", "w")
    assert same is not None
    assert (same.latency_us, same.free_mbps, same.links) == (0, LOCAL_MBPS, ())


def test_unknown_site_is_named() -> None:
    """Asking for a path from or to a site no plugin declares raises UnknownSite naming it; its
    latency is simply unknown (None)."""
    with pytest.raises(UnknownSite, match="'mars'"):
        merge({"bb": backbone()}).path("a", "mars")
    with pytest.raises(UnknownSite):
        merge({}).latencies_us("a")
    assert merge({"bb": backbone()}).latency_ms("a", "mars") is None


def test_measured_round_trips_reach_partner_pseudo_sites() -> None:
    """A partner measured at 8 ms round trip is 4 ms one way from the home site, bandwidth unknown."""
    view = merge({"bb": backbone()}, measured_links("a", {"p1": 8000}))
    route = view.path("c", partner_site("p1"))
    assert route is not None
    assert route.latency_us == 14_000
    assert route.free_mbps == 0
    assert view.path("c", partner_site("p1"), min_mbps=1) is None


def test_view_round_trips_through_its_json() -> None:
    """What the API shows (and the store keeps) builds the same view back."""
    view = merge({"bb": backbone()}, refreshed_ts=1_700_000_000, errors=[("west", "timeout")])
    again = from_view(view.view())
    assert again == view
    assert again.latencies_us("a") == {"a": 0, "b": 5000, "c": 10_000}


@settings(max_examples=examples(200), deadline=None)
@given(
    edges=st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(1, 30), st.integers(0, 9), st.booleans()),
        max_size=14,
    ),
    src=st.integers(0, 5),
    dst=st.integers(0, 5),
    floor=st.sampled_from([1, 500, 900]),
)
def test_best_path_agrees_with_the_network_plugins_routing(
    edges: list[tuple[int, int, int, int, bool]], src: int, dst: int, floor: int
) -> None:
    """On generated topologies the view's best path has the latency and cost of the route the
    network plugins compute (connectors.network.routing), and exists exactly when that one does."""
    sites = [f"s{n}" for n in range(6)]
    links = [
        link(f"l{n}", sites[a], sites[b], ms, free=400 + 300 * (n % 3), cost=cost, up=up)
        for n, (a, b, ms, cost, up) in enumerate(edges)
        if a != b
    ]
    view = merge({"n": Topology(sites=sites, links=links)})
    request = PathRequest(src=sites[src], dst=sites[dst], bandwidth_mbps=floor)
    if src == dst:
        return
    try:
        route = compute_route(sites, links, request)
    except NoPath:
        assert view.path(sites[src], sites[dst], floor) is None
        return
    found = view.path(sites[src], sites[dst], floor)
    assert found is not None
    assert found.latency_us == sum(x.latency_us for x in route)
    assert found.cost_minor_per_gb == sum(x.cost_minor_per_gb for x in route)
    assert found.free_mbps == min(x.free_mbps for x in route)
