"""The migration decision as plain maths: estimates rounded up in integers, ranking by cost or time,
and every reason an offer is left out."""

from __future__ import annotations

from typing import Any

from connectors.network.contract import Link, Topology
from connectors.offers import Offer
from node.migration.decision import Request, decide, transfer_cost, transfer_ms

SITES = {"src": "a", "near": "b", "far": "c", "lonely": "d"}


def offer(pool: str, region: str = "r1", flavor: str = "f", **changes: Any) -> Offer:
    """An offer of `pool` with the source's shape unless changed."""
    values: dict[str, Any] = {
        "offer_id": f"{pool}/{region}/{flavor}",
        "pool": pool,
        "region_id": region,
        "city": "110000",
        "flavor_id": flavor,
        "chip_model": "nvidia-a100",
        "chip_vendor": "nvidia",
        "chips": 8,
        "cpus": 64,
        "memory_mib": 65536,
        "storage_gib": 100,
        "network_gbps": 10,
        "currency": "CNY",
        "price_minor_per_hour": 1000,
        "free": 3,
        "total": 4,
        "identifier": None,
        "score_static_milli": 1000,
        "score_dynamic_milli": 1000,
        "score_composite_milli": 1000,
        "fetched_ms": 0,
    }
    values.update(changes)
    return Offer.model_validate(values)


def link(name: str, a: str, b: str, latency_us: int, cost: int, free: int = 1000) -> Link:
    """A link that is up."""
    return Link(
        id=name, a=a, b=b, bandwidth_mbps=1000, free_mbps=free, latency_us=latency_us, cost_minor_per_gb=cost
    )


TOPOLOGY = Topology(
    sites=["a", "b", "c", "d"], links=[link("ab", "a", "b", 2000, 10), link("ac", "a", "c", 30_000, 1)]
)
REQUEST = Request("src", "r1", "f", state_bytes=4 * 10**9, bandwidth_mbps=500, hours=3)


def test_estimates_round_up_in_integers() -> None:
    """Transfer time counts latency and bits at the path's bandwidth; cost counts every started unit."""
    assert transfer_ms(0, 1000, 0) == 0
    assert transfer_ms(1, 1000, 1) == 2  # 1 µs of latency and 8 bits are each a started millisecond
    assert transfer_ms(125_000_000, 1000, 0) == 1000  # 1 Gbit at 1000 Mbit/s
    assert transfer_cost(10**9, 7) == 7
    assert transfer_cost(10**9 + 1, 7) == 8
    assert transfer_cost(5, 0) == 0


def test_cost_ranks_by_transfer_and_run_cost_time_by_transfer_time() -> None:
    """By cost the far, cheap link wins when the run costs the same; by time the near one wins."""
    offers = [offer("src"), offer("near"), offer("far")]
    by_cost = decide(REQUEST, offers, SITES, TOPOLOGY)
    assert [c.pool for c in by_cost.candidates] == ["far", "near"]
    far, near = by_cost.candidates
    assert (far.transfer_cost, near.transfer_cost) == (4, 40)
    assert (far.transfer_ms, near.transfer_ms) == (30 + 64_000, 2 + 64_000)
    assert far.run_cost == 3 * 1000
    assert far.route is not None
    assert far.route.hops == ["a", "c"]
    by_time = decide(Request(**{**REQUEST.__dict__, "objective": "time"}), offers, SITES, TOPOLOGY)
    assert [c.pool for c in by_time.candidates] == ["near", "far"]
    pricier_far = [offer("src"), offer("near"), offer("far", price_minor_per_hour=1100)]
    assert decide(REQUEST, pricier_far, SITES, TOPOLOGY).chosen.pool == "near"  # type: ignore[union-attr]


def test_every_reason_to_leave_an_offer_out() -> None:
    """Same place, not the one asked for, another chip, too small, full, no site, no path: each named."""
    offers = [
        offer("src"),
        offer("near", "r2", chip_model="nvidia-h100"),
        offer("near", "r3", cpus=8),
        offer("near", "r4", free=0),
        offer("nosite"),
        offer("lonely"),
        offer("near", "r5"),
    ]
    decision = decide(REQUEST, offers, SITES, TOPOLOGY)
    reasons = {e.offer_id: e.reason for e in decision.excluded}
    assert reasons == {
        "src/r1/f": "same_place",
        "near/r2/f": "chip_mismatch",
        "near/r3/f": "too_small",
        "near/r4/f": "no_free_units",
        "nosite/r1/f": "no_site",
        "lonely/r1/f": "no_path",
    }
    assert [c.offer_id for c in decision.candidates] == ["near/r5/f"]
    named = decide(Request(**{**REQUEST.__dict__, "offer_id": "near/r2/f"}), offers, SITES, TOPOLOGY)
    assert named.chosen is None
    assert [e.reason for e in named.excluded if e.offer_id == "near/r2/f"] == ["chip_mismatch"]


def test_no_network_plugin_or_same_site_needs_no_path() -> None:
    """Without a topology every destination fits at the asked bandwidth, with no route and no cost."""
    decision = decide(REQUEST, [offer("src"), offer("lonely"), offer("nosite")], SITES, None)
    assert [(c.pool, c.route, c.transfer_cost) for c in decision.candidates] == [
        ("lonely", None, 0),
        ("nosite", None, 0),
    ]
    same_site = decide(REQUEST, [offer("src"), offer("src", "r2")], SITES, TOPOLOGY)
    assert same_site.chosen is not None
    assert same_site.chosen.route is None
