"""Each strategy on constructed cases whose right answer is known: nearest (weighted latency, bound,
misses, no_site / no_path), co-schedule (time, cost, weighted sum), composite (weights), the
market's objectives unchanged, and bad input named."""

from __future__ import annotations

import random
from typing import Any

import pytest

from connectors.network.contract import Link, Topology
from node.market import DemandError, match
from node.market.columns import build_columns
from node.market.errors import StrategyError
from node.market.matching import _plan
from node.market.placement import Placement, _match, place
from node.market.strategy_spec import Strategy, builtin, check_params
from node.network.view import NetworkView, merge
from node.offers import OfferRow
from tests.market.test_matching import CNY, demand, offer


def link(link_id: str, a: str, b: str, latency_ms: int, free_mbps: int = 1000, cost: int = 0) -> Link:
    """A link of 10 Gbit/s with `free_mbps` free."""
    return Link(
        id=link_id,
        a=a,
        b=b,
        bandwidth_mbps=10_000,
        free_mbps=free_mbps,
        latency_us=latency_ms * 1000,
        cost_minor_per_gb=cost,
    )


def china() -> NetworkView:
    """beijing–guangzhou 25 ms direct (or 26 via shanghai); guangzhou–guiyang–chengdu 9 + 6 ms;
    beijing–chengdu 18 ms; and a site `island` with no link."""
    return merge(
        {
            "backbone": Topology(
                sites=["beijing", "shanghai", "guangzhou", "chengdu", "guiyang", "island"],
                links=[
                    link("bj-sh", "beijing", "shanghai", 12),
                    link("sh-gz", "shanghai", "guangzhou", 14),
                    link("bj-gz", "beijing", "guangzhou", 25),
                    link("bj-cd", "beijing", "chengdu", 18),
                    link("cd-gy", "chengdu", "guiyang", 6),
                    link("gy-gz", "guiyang", "guangzhou", 9),
                ],
            )
        }
    )


def at(offer_id: str, site: str | None, **fields: Any) -> OfferRow:
    """An offer whose catalog declares `site` (none when None)."""
    return offer(offer_id, networks=[site] if site else [], **fields)


def ids(placement: Placement) -> list[str]:
    """The candidates' offer ids in the strategy's order."""
    return [c.match.offer_id for c in placement.candidates]


def excluded(placement: Placement) -> dict[str, str]:
    """offer id → reason, for every exclusion shown."""
    return {e.offer_id: e.reason for e in placement.excluded}


USERS = [{"site": "guangzhou", "weight": 3}, {"site": "beijing", "weight": 1}]
SITES = [
    at("gz", "guangzhou", price_per_unit_hour=3000),
    at("cd", "chengdu", price_per_unit_hour=1000),
    at("bj", "beijing", price_per_unit_hour=500),
    at("nowhere", None, price_per_unit_hour=10),
    at("mars", "mars", price_per_unit_hour=10),
    at("island", "island", price_per_unit_hour=10),
]


def test_nearest_ranks_by_traffic_weighted_latency() -> None:
    """Users 3:1 in guangzhou and beijing: gz (25/4 = 6.25 ms) before cd ((45+18)/4 = 15.75 ms)
    before bj (75/4 = 18.75 ms), whatever the prices; unknown sites and islands are excluded."""
    result = place(builtin("nearest"), demand(user_sites=USERS), build_columns(SITES), china(), CNY)
    assert ids(result) == ["gz", "cd", "bj"]
    assert [c.terms["latency_ms"] for c in result.candidates] == [6.25, 15.75, 18.75]
    assert result.candidates[1].terms["latency_by_user_site_ms"] == {"guangzhou": 15.0, "beijing": 18.0}
    assert excluded(result) == {"nowhere": "no_site", "mars": "no_site", "island": "no_path"}


def test_nearest_bound_excludes_too_far_and_shows_the_nearest_misses() -> None:
    """With a 16 ms bound bj (18.75 ms) is too far, and it is shown as the nearest miss."""
    result = place(
        builtin("nearest"), demand(user_sites=USERS, max_latency_ms=16), build_columns(SITES), china(), CNY
    )
    assert ids(result) == ["gz", "cd"]
    assert excluded(result)["bj"] == "too_far"
    assert [m.match.offer_id for m in result.misses] == ["bj"]
    assert "18.8 ms" in next(e.message for e in result.excluded if e.offer_id == "bj")
    tight = place(
        Strategy("edge", 1, "nearest", {"max_latency_ms": 5}),
        demand(user_sites=USERS),
        build_columns(SITES),
        china(),
        CNY,
    )
    assert ids(tight) == []
    assert [m.match.offer_id for m in tight.misses] == ["gz", "cd", "bj"]


def coschedule_case() -> tuple[NetworkView, list[OfferRow]]:
    """Data at a; b is 10 ms away at 1000 Mbit/s free (10 per GB), c 5 ms at 100 Mbit/s (free)."""
    view = merge(
        {
            "n": Topology(
                sites=["a", "b", "c"],
                links=[
                    link("ab", "a", "b", 10, free_mbps=1000, cost=10),
                    link("ac", "a", "c", 5, free_mbps=100),
                ],
            )
        }
    )
    rows = [
        at("A", "a", metric_score=500, price_per_unit_hour=100),
        at("B", "b", metric_score=2000, price_per_unit_hour=300),
        at("C", "c", metric_score=4000, price_per_unit_hour=500),
        at("D", "c", price_per_unit_hour=1),
    ]
    return view, rows


CO_DEMAND = {"units": 1, "hours": 1, "data": {"site": "a", "size_mb": 1000}, "compute_s": 1000}


@pytest.mark.parametrize(
    ("params", "order"),
    [
        ({"minimise": "time"}, ["C", "B", "A"]),  # 330.005 s, 508.01 s, 2000 s
        ({"minimise": "cost"}, ["A", "B", "C"]),  # 100, 300 + 10, 500 + 0
        ({"minimise": "weighted"}, ["B", "C", "A"]),  # 1.54 + 3.1, 1 + 5, 6.06 + 1
    ],
)
def test_coschedule_minimises_time_cost_or_their_weighted_sum(
    params: dict[str, Any], order: list[str]
) -> None:
    """Transfer at the path's free bandwidth plus run time from the score; cost adds transfer."""
    view, rows = coschedule_case()
    strategy = Strategy("co", 1, "coschedule", check_params("coschedule", params))
    result = place(strategy, demand(**CO_DEMAND), build_columns(rows), view, CNY)
    assert ids(result) == order
    terms = {c.match.offer_id: c.terms for c in result.candidates}
    assert terms["B"]["transfer_s"] == 8.01
    assert terms["B"]["run_s"] == 500.0
    assert terms["B"]["transfer_cost"] == 10
    assert terms["B"]["total_cost"] == 310
    assert terms["C"]["completion_s"] == 330.005
    assert terms["A"]["transfer_s"] == 0.0
    assert excluded(result) == {"D": "no_metric_score"}


def test_coschedule_data_site_unknown_to_the_view_is_named() -> None:
    """A demand whose data lives at a site the view does not know is refused, naming the site."""
    view, rows = coschedule_case()
    with pytest.raises(DemandError, match=r"data\.site: site 'atlantis' is not in the network view"):
        place(
            builtin("coschedule"),
            demand(**{**CO_DEMAND, "data": {"site": "atlantis", "size_mb": 1}}),
            build_columns(rows),
            view,
            CNY,
        )
    with pytest.raises(DemandError, match="compute_s"):
        place(builtin("coschedule"), demand(data={"site": "a", "size_mb": 1}), build_columns(rows), view, CNY)


@pytest.mark.parametrize(
    ("weights", "first"),
    [
        ({"cost": 1}, "cheap"),
        ({"performance": 1}, "fast"),
        ({"load": 1}, "idle"),
        ({"latency": 1}, "near"),
        ({"cost": 1, "latency": 100}, "near"),
    ],
)
def test_composite_follows_its_weights(weights: dict[str, int], first: str) -> None:
    """Each term alone puts the offer best at it first; a heavy latency weight overrides price."""
    rows = [
        at("cheap", "beijing", price_per_unit_hour=100, metric_score=100, free_units=5),
        at("fast", "beijing", price_per_unit_hour=900, metric_score=9000, free_units=5),
        at("idle", "beijing", price_per_unit_hour=900, metric_score=100, free_units=40),
        at("near", "guangzhou", price_per_unit_hour=800, metric_score=100, free_units=5),
    ]
    strategy = Strategy("mix", 1, "composite", check_params("composite", {"weights": weights}))
    result = place(strategy, demand(user_sites=[{"site": "guangzhou"}]), build_columns(rows), china(), CNY)
    assert ids(result)[0] == first
    explain = result.candidates[0].terms
    assert set(explain) == {"cost", "performance", "latency", "load", "score"}


def test_objectives_keep_the_markets_order() -> None:
    """cost, performance and value rank as `match` does (the same offers, the same order)."""
    rows = [
        offer(f"o{n}", price_per_unit_hour=p, metric_score=s, age_s=n)
        for n, (p, s) in enumerate([(500, 10), (500, None), (300, 900), (800, 900), (300, 30), (1000, 2000)])
    ]
    for objective in ("cost", "performance", "value"):
        expected = [m.offer_id for m in match(demand(objective=objective), rows, CNY).matches]
        assert ids(place(builtin(objective), demand(), build_columns(rows), china(), CNY)) == expected


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("composite", {"weights": {"cost": -1}}, "params.weights.cost"),
        ("composite", {"weights": {"cost": 0, "latency": 0}}, "params.weights"),
        ("composite", {"weights": {"speed": 1}}, "params.speed"),
        ("coschedule", {"minimise": "weighted", "time_weight": 0, "cost_weight": 0}, "params"),
        ("coschedule", {"minimise": "fastest"}, "params.minimise"),
        ("nearest", {"max_latency_ms": -3}, "params.max_latency_ms"),
        ("cost", {"x": 1}, "params.x"),
        ("magic", {}, "kind"),
    ],
)
def test_bad_parameters_are_named(kind: str, params: dict[str, Any], field: str) -> None:
    """Negative weights, all-zero weights, unknown terms or kinds: StrategyError naming the field."""
    with pytest.raises(StrategyError) as caught:
        check_params(kind, params)
    assert caught.value.field == field


def test_nearest_needs_user_sites_it_knows() -> None:
    """Without users' sites, or with one the view does not know, the demand is refused."""
    with pytest.raises(DemandError, match="user_sites"):
        place(builtin("nearest"), demand(), build_columns(SITES), china(), CNY)
    with pytest.raises(DemandError, match=r"user_sites\.0\.site: site 'moon'"):
        place(builtin("nearest"), demand(user_sites=[{"site": "moon"}]), build_columns(SITES), china(), CNY)


@pytest.mark.parametrize("kind", ["cost", "performance", "value", "nearest", "coschedule", "composite"])
def test_the_first_few_are_the_first_of_the_whole_ranking(kind: str) -> None:
    """Ranking only the first `limit` (what a demand without split does) gives the first `limit`
    of the whole ranking, ties included, on 3,000 generated offers over the sites of the view."""
    from bench.bench_market import offers as generated

    rows = generated(3000, seed=11)
    for n, row in enumerate(rows):
        row["networks"] = [["beijing", "shanghai", "guangzhou", "chengdu", "guiyang"][n % 5]]
    body = {**CO_DEMAND, "data": {"site": "beijing", "size_mb": 5000}, "user_sites": USERS, "units": 2}
    columns = build_columns(rows)
    few = place(builtin(kind), demand(**body), columns, china(), CNY, limit=7)
    whole = place(builtin(kind), demand(**body), columns, china(), CNY, limit=10**6)  # sorts them all
    assert whole.candidate_count == few.candidate_count > 7
    assert ids(few) == ids(whole)[:7]


def test_split_plan_follows_the_strategys_order() -> None:
    """With split, 25 units over offers of 10 free each are taken nearest first: gz, cd, then 5 of bj."""
    result = place(
        builtin("nearest"), demand(user_sites=USERS, units=25, split=True), build_columns(SITES), china(), CNY
    )
    plan = result.result().plan
    assert plan is not None
    assert [(p.offer_id, p.units) for p in plan] == [("gz", 10), ("cd", 10), ("bj", 5)]
    assert result.view()["plan_covers"] is True


@pytest.mark.parametrize("seed", range(6))
def test_split_plan_is_the_plan_over_every_candidate(seed: int) -> None:
    """The plan made from as few candidates as it needs is the one `matching._plan` makes over the
    whole ranking: with and without an offer that takes every unit, with shared capacity groups."""
    rng = random.Random(seed)
    sites = ["gz", "cd", "bj", "sh"]
    rows = [
        at(
            f"o{n}",
            rng.choice(sites),
            free_units=rng.randint(0, 6),
            price_per_unit_hour=rng.randint(100, 900),
            **(
                {
                    "capacity_group": f"g{n % 3}",
                    "capacity_cost": rng.randint(1, 3),
                    "capacity_free": rng.randint(0, 9),
                }
                if n % 2
                else {}
            ),
        )
        for n in range(300)
    ]
    columns = build_columns(rows)
    for units in (3, 40, 200, 5_000):
        for kind in ("cost", "nearest"):
            wanted = (
                demand(user_sites=USERS, units=units, split=True)
                if kind == "nearest"
                else demand(units=units, split=True)
            )
            result = place(builtin(kind), wanted, columns, china(), CNY, limit=5)
            everyone = place(builtin(kind), wanted, columns, china(), CNY, limit=10_000)
            ranked = [_match(wanted, columns, rows.index(m.offer)) for m in everyone.result().matches]
            assert result.result().plan == _plan(wanted, ranked), (units, kind)
