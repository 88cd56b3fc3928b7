"""Network: path computation over free bandwidth, and the controller simulator through its plugin."""

from __future__ import annotations

import aiohttp
import pytest

from connectors.errors import NoPath, NotFound
from connectors.network.contract import Link, PathRequest
from connectors.network.netsim_plugin import NetsimPlugin
from connectors.network.routing import compute_route, hops_of
from tests.support.sims import SimProcess

SITES = ["a", "b", "c", "d"]


def link(id_: str, a: str, b: str, bw: int, lat: int, free: int | None = None, up: bool = True) -> Link:
    return Link(
        id=id_, a=a, b=b, bandwidth_mbps=bw, free_mbps=bw if free is None else free, latency_us=lat, up=up
    )


def test_route_prefers_low_latency_among_links_with_enough_free_bandwidth() -> None:
    """The fastest route wins unless a link on it lacks free bandwidth or is down."""
    links = [
        link("ab", "a", "b", 1000, 10),
        link("bd", "b", "d", 1000, 10),
        link("ad", "a", "d", 1000, 50),
        link("ac", "a", "c", 5000, 30),
        link("cd", "c", "d", 5000, 30),
    ]
    fast = compute_route(SITES, links, PathRequest(src="a", dst="d", bandwidth_mbps=500))
    assert [x.id for x in fast] == ["ab", "bd"]
    assert hops_of("a", fast) == ["a", "b", "d"]
    wide = compute_route(SITES, links, PathRequest(src="a", dst="d", bandwidth_mbps=2000))
    assert [x.id for x in wide] == ["ac", "cd"]
    links[1] = link("bd", "b", "d", 1000, 10, up=False)
    assert [x.id for x in compute_route(SITES, links, PathRequest(src="a", dst="d", bandwidth_mbps=500))] == [
        "ad"
    ]


def test_no_route_and_unknown_sites_are_errors() -> None:
    """Too much bandwidth, a latency bound too tight, or an unknown site each fail clearly."""
    links = [link("ab", "a", "b", 1000, 10, free=100)]
    with pytest.raises(NoPath):
        compute_route(SITES, links, PathRequest(src="a", dst="b", bandwidth_mbps=200))
    with pytest.raises(NoPath, match="bound"):
        compute_route(SITES, links, PathRequest(src="a", dst="b", bandwidth_mbps=50, max_latency_us=5))
    with pytest.raises(NotFound):
        compute_route(SITES, links, PathRequest(src="a", dst="z", bandwidth_mbps=1))


async def test_reservations_link_failure_and_release(netsim: SimProcess) -> None:
    """Reservations use up bandwidth, a failed link breaks its paths, and release frees bandwidth."""
    plugin = NetsimPlugin.from_options("net", {"url": netsim.url, "token": "netsim-demo-token"})
    first = await plugin.provision(PathRequest(src="beijing", dst="guangzhou", bandwidth_mbps=8000))
    assert first.hops == ["beijing", "shanghai", "guangzhou"]
    assert first.state == "active"
    second = await plugin.provision(PathRequest(src="beijing", dst="guangzhou", bandwidth_mbps=3000))
    assert second.links == ["bj-cd", "cd-gy", "gy-gz"]  # the fast route has only 2000 Mbit/s left
    with pytest.raises(NoPath):
        await plugin.provision(PathRequest(src="beijing", dst="guangzhou", bandwidth_mbps=5000))
    headers = {"Authorization": "Bearer netsim-demo-token"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.post(f"{netsim.url}/_sim/links/sh-gz/fail") as response,
    ):
        assert response.status == 200
    assert (await plugin.status(first.id)).state == "broken"
    assert (await plugin.status(second.id)).state == "active"
    health = await plugin.health()
    assert "sh-gz" in health.detail
    assert (await plugin.release(second.id)).state == "released"
    assert (await plugin.release(second.id)).state == "released"
    free = {x.id: x.free_mbps for x in (await plugin.topology()).links}
    assert free["bj-cd"] == 4000
    await plugin.close()


async def test_bad_requests_get_4xx(netsim: SimProcess) -> None:
    """Malformed bodies and wrong tokens are refused with codes, never 500."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{netsim.url}/v1/topology") as response:
            assert response.status == 401
        headers = {"Authorization": "Bearer netsim-demo-token"}
        async with session.post(
            f"{netsim.url}/v1/paths", json={"src": "beijing"}, headers=headers
        ) as response:
            assert response.status == 400
            assert (await response.json())["error"] == "invalid_request"
        async with session.post(f"{netsim.url}/v1/paths", data=b"{", headers=headers) as response:
            assert response.status == 400
