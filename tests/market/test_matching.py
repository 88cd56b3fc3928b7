"""Pure tests of demand parsing and `match`: every exclusion reason, each objective's ranking with
its ties, splitting, integer money, and a property: matches satisfy the demand, exclusions do not."""

from __future__ import annotations

from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.records import MAX_AMOUNT
from node.http.statuses import status_for
from node.market import Demand, DemandError, match, parse_demand
from node.offers import OfferRow
from tests.support.examples import examples
from tests.support.samples import catalog_offer

CNY = "CNY"


def offer(offer_id: str, source: str = "own:config", **fields: Any) -> OfferRow:
    """A merged-view row: an A100 ×8 offer with 10 free units at 1,000 per unit-hour, unless overridden."""
    row: dict[str, Any] = {
        **catalog_offer(
            id=offer_id,
            region="beijing",
            memory_mib=524_288,
            storage_gib=2_000,
            free_units=10,
            price_per_unit_hour=1_000,
            currency=CNY,
            tags=["gpu"],
        ),
        "source": source,
        "partner": source.removeprefix("partner:") if source.startswith("partner:") else None,
        "age_s": 0,
        "confirmed_age_s": 0,
    }
    row.update(fields)
    return cast(OfferRow, row)  # bad values on purpose too: matching must refuse them


def demand(**fields: Any) -> Demand:
    """A demand of 2 units for 3 hours, plus `fields`."""
    return parse_demand({"units": 2, "hours": 3, **fields})


def ids(result: Any) -> list[str]:
    """The offer ids of a result's matches, in rank order."""
    return [m.offer_id for m in result.matches]


@pytest.mark.parametrize(
    ("fields", "row", "reason"),
    [
        ({"chip_model": "H100"}, {}, "chip_mismatch"),
        ({"chip_vendor": "huawei"}, {}, "chip_mismatch"),
        ({"min_chips_per_unit": 16}, {}, "too_small"),
        ({"min_cpus": 65}, {}, "too_small"),
        ({"min_memory_mib": 600_000}, {}, "too_small"),
        ({"min_storage_gib": 2_001}, {}, "too_small"),
        ({"regions": ["shanghai"]}, {}, "region"),
        ({"tags": ["gpu", "rdma"]}, {}, "tags"),
        ({"max_price_per_unit_hour": 999}, {}, "price_above_max"),
        ({}, {"currency": "USD"}, "currency"),
        ({"currency": "USD"}, {}, "currency"),
        ({}, {"free_units": 1}, "not_enough_free_units"),
        ({"min_metric_score": 1}, {}, "no_metric_score"),
        ({"min_metric_score": 1001}, {"metric_score": 1000}, "metric_below_min"),
        ({"sources": ["partner"]}, {}, "source_excluded"),
        ({}, {"catalog_expired": True}, "catalog_expired"),
        ({"max_age_s": 60}, {"confirmed_age_s": 61, "age_s": 5000}, "catalog_stale"),
        ({}, {"price_per_unit_hour": 0}, "bad_amount"),
        ({}, {"price_per_unit_hour": MAX_AMOUNT}, "bad_amount"),
        ({}, {"free_units": "many"}, "bad_offer"),
    ],
)
def test_each_exclusion_reason(fields: dict[str, Any], row: dict[str, Any], reason: str) -> None:
    """An offer breaking exactly one rule is excluded with that rule's code and a message."""
    result = match(demand(**fields), [offer("o1", **row)], CNY)
    assert result.matches == ()
    [excluded] = result.excluded
    assert (excluded.source, excluded.offer_id, excluded.reason) == ("own:config", "o1", reason)
    assert excluded.message


def test_max_age_counts_from_the_last_confirmation() -> None:
    """max_age_s compares with when a sync round last found the catalog current, not when it was
    first received: an unchanged catalog confirmed a minute ago is fresh, however old its body."""
    offers = [
        offer("fresh", "partner:x", age_s=86_000, confirmed_age_s=60),
        offer("stale", "partner:y", age_s=300, confirmed_age_s=300),
        offer("own", "own:config"),
    ]
    result = match(demand(max_age_s=60), offers, CNY)
    assert sorted(ids(result)) == ["fresh", "own"]
    assert [(e.offer_id, e.reason) for e in result.excluded] == [("stale", "catalog_stale")]
    assert "300 s ago, more than 60 s" in result.excluded[0].message


def test_satisfying_offer_matches_with_integer_total() -> None:
    """A satisfying offer matches; its total is units × hours × price in integer minor units."""
    result = match(demand(chip_model="a100", tags=["gpu"], regions=["beijing"]), [offer("o1")], CNY)
    [found] = result.matches
    assert (found.offer_id, found.total) == ("o1", 2 * 3 * 1_000)
    assert type(found.total) is int
    assert result.plan is None
    assert result.view()["matches"][0]["total"] == 6_000


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("own", ["a"]),
        ("partner", ["b", "c"]),
        ("own:config", ["a"]),
        ("partner:x", ["b"]),
        ("y", ["c"]),
    ],
)
def test_sources_select_own_partners_or_one_partner(entry: str, expected: list[str]) -> None:
    """`sources` takes `own`, `partner`, an exact source, or a partner's bare name."""
    rows = [offer("a"), offer("b", "partner:x"), offer("c", "partner:y")]
    assert sorted(ids(match(demand(sources=[entry]), rows, CNY))) == expected


def test_cost_ranks_by_price_then_age_then_source_and_id() -> None:
    """`cost`: cheapest first; equal prices fall to the younger catalog, then source, then offer id."""
    rows = [
        offer("dear", price_per_unit_hour=2_000),
        offer("old", "partner:x", age_s=50),
        offer("young-b", "partner:y", age_s=5),
        offer("young-a", "partner:y", age_s=5),
        offer("own", age_s=5),
    ]
    assert ids(match(demand(), rows, CNY)) == ["own", "young-a", "young-b", "old", "dear"]


def test_performance_ranks_by_score_then_price_unscored_last() -> None:
    """`performance`: highest metric score, ties by price; offers without a score come last."""
    rows = [
        offer("none-cheap", price_per_unit_hour=10),
        offer("fast-dear", metric_score=2_000, price_per_unit_hour=5_000),
        offer("fast-cheap", metric_score=2_000, price_per_unit_hour=4_000),
        offer("slow", metric_score=500, price_per_unit_hour=100),
    ]
    assert ids(match(demand(objective="performance"), rows, CNY)) == [
        "fast-cheap",
        "fast-dear",
        "slow",
        "none-cheap",
    ]


def test_value_ranks_by_score_per_price_exactly() -> None:
    """`value`: highest score per price as exact fractions (equal ratios tie to price); unscored last."""
    rows = [
        offer("none", price_per_unit_hour=1),
        offer("half", metric_score=1_000, price_per_unit_hour=2_000),  # 1/2
        offer("third", metric_score=1_000, price_per_unit_hour=3_000),  # 1/3
        offer("half-big", metric_score=2_000, price_per_unit_hour=4_000),  # 1/2, dearer
        offer("one", metric_score=3_000, price_per_unit_hour=3_000),  # 1
    ]
    assert ids(match(demand(objective="value"), rows, CNY)) == ["one", "half", "half-big", "third", "none"]


def test_without_split_small_offers_are_not_enough() -> None:
    """Without `split`, offers with fewer free units than the demand are excluded and no plan is made."""
    rows = [offer("a", free_units=3), offer("b", free_units=4)]
    result = match(demand(units=6), rows, CNY)
    assert result.matches == ()
    assert {e.reason for e in result.excluded} == {"not_enough_free_units"}
    assert result.plan is None


def test_split_covers_exactly_with_cheaper_parts_first() -> None:
    """With `split` and no offer large enough, the cheapest offers are taken first, covering exactly."""
    rows = [
        offer("dear", free_units=4, price_per_unit_hour=3_000),
        offer("cheap", free_units=3, price_per_unit_hour=1_000),
        offer("mid", free_units=2, price_per_unit_hour=2_000),
        offer("empty", free_units=0, price_per_unit_hour=1),
    ]
    result = match(demand(units=7, hours=2, split=True), rows, CNY)
    assert result.plan is not None
    assert [(p.offer_id, p.units) for p in result.plan] == [("cheap", 3), ("mid", 2), ("dear", 2)]
    assert sum(p.units for p in result.plan) == 7
    assert result.plan_total == 2 * (3 * 1_000 + 2 * 2_000 + 2 * 3_000)
    assert all(type(p.total) is int for p in result.plan)
    assert [e.offer_id for e in result.excluded] == ["empty"]
    assert result.view()["plan_covers"] is True


def test_split_takes_one_offer_when_one_is_enough() -> None:
    """With `split`, a best match that takes every unit alone is the whole plan (no needless split)."""
    rows = [offer("small", free_units=1, price_per_unit_hour=1), offer("big", price_per_unit_hour=500)]
    result = match(demand(units=5, split=True), rows, CNY)
    assert result.plan is not None
    assert [(p.offer_id, p.units) for p in result.plan] == [("big", 5)]


def test_split_that_cannot_cover_gives_an_empty_plan() -> None:
    """With `split` and too few free units over every offer, the plan is empty and says it does not cover."""
    result = match(demand(units=9, split=True), [offer("a", free_units=3), offer("b", free_units=4)], CNY)
    assert result.plan == ()
    assert result.view()["plan_covers"] is False


def test_split_parts_share_their_pools_capacity() -> None:
    """Offers of one source sharing a capacity group draw on one budget: a split never plans more
    of a pool's slots than it has free, while the same group name from another source is another pool."""
    group: dict[str, Any] = {"capacity_group": "cpu-1/local", "capacity_unit": "slots", "capacity_free": 4}
    rows = [
        offer("local-1", free_units=4, price_per_unit_hour=100, capacity_cost=1, **group),
        offer("local-2", free_units=2, price_per_unit_hour=200, capacity_cost=2, **group),
        offer("other-1", "partner:shanghai", free_units=4, price_per_unit_hour=150, capacity_cost=1, **group),
        offer("dear", free_units=10, price_per_unit_hour=900),
    ]
    result = match(demand(units=11, hours=1, split=True), rows, CNY)
    assert result.plan is not None
    assert [(p.offer_id, p.units) for p in result.plan] == [("local-1", 4), ("other-1", 4), ("dear", 3)]
    assert result.view()["plan_covers"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"hours": 1}, "units"),
        ({"units": 0, "hours": 1}, "units"),
        ({"units": 1, "hours": 1.5}, "hours"),
        ({"units": "2", "hours": 1}, "units"),
        ({"units": 1, "hours": 1, "objective": "speed"}, "objective"),
        ({"units": 1, "hours": 1, "regions": ["bj", ""]}, "regions.1"),
        ({"units": 1, "hours": 1, "sources": ["partner:"]}, "sources.0"),
        ({"units": 1, "hours": 1, "max_price_per_unit_hour": 10.5}, "max_price_per_unit_hour"),
        ({"units": 1, "hours": 1, "colour": "red"}, "colour"),
        ({"units": 1, "hours": 1, "split": "yes"}, "split"),
    ],
)
def test_bad_demand_names_the_field(body: dict[str, Any], field: str) -> None:
    """A bad demand is refused with the field named (a 422 at the API)."""
    with pytest.raises(DemandError) as caught:
        parse_demand(body)
    assert caught.value.field == field
    assert status_for(caught.value) == 422


def satisfies(d: Demand, row: OfferRow) -> bool:
    """The demand's constraints stated independently of the matcher."""
    score = row.get("metric_score")
    partner = row["partner"]
    return (
        (
            d.sources is None
            or any(s in (row["source"].split(":")[0], row["source"], partner) for s in d.sources)
        )
        and not row.get("catalog_expired")
        and (d.max_age_s is None or row["confirmed_age_s"] <= d.max_age_s)
        and row["currency"] == CNY
        and (d.currency in (None, CNY))
        and (d.chip_vendor is None or row["chip_vendor"].lower() == d.chip_vendor.lower())
        and (d.chip_model is None or row["chip_model"].lower() == d.chip_model.lower())
        and row["chips_per_unit"] >= (d.min_chips_per_unit or 0)
        and row["cpus"] >= (d.min_cpus or 0)
        and row["memory_mib"] >= (d.min_memory_mib or 0)
        and row["storage_gib"] >= (d.min_storage_gib or 0)
        and (d.regions is None or row["region"] in d.regions)
        and set(d.tags) <= set(row["tags"])
        and (d.max_price_per_unit_hour is None or row["price_per_unit_hour"] <= d.max_price_per_unit_hour)
        and (d.min_metric_score is None or (score is not None and score >= d.min_metric_score))
        and 1 <= d.units * d.hours * row["price_per_unit_hour"] <= MAX_AMOUNT
        and row["free_units"] >= (1 if d.split else d.units)
    )


small = st.integers(min_value=0, max_value=6)
offers_st = st.lists(
    st.builds(
        lambda src, vendor, model, chips, free, price, region, tags, score, currency, expired, age: offer(
            "o",
            src,
            chip_vendor=vendor,
            chip_model=model,
            chips_per_unit=chips,
            free_units=free,
            price_per_unit_hour=price,
            region=region,
            tags=tags,
            metric_score=score,
            currency=currency,
            catalog_expired=expired,
            confirmed_age_s=age,
        ),
        st.sampled_from(["own:config", "own:connectors", "partner:x", "partner:y"]),
        st.sampled_from(["nvidia", "huawei"]),
        st.sampled_from(["A100", "910B"]),
        small,
        small,
        st.integers(0, 5),
        st.sampled_from(["bj", "sh"]),
        st.lists(st.sampled_from(["gpu", "rdma", "infer"]), max_size=3, unique=True),
        st.none() | st.integers(0, 3),
        st.sampled_from([CNY, CNY, "USD"]),
        st.booleans(),
        st.sampled_from([0, 30, 90]),
    ),
    max_size=12,
).map(lambda rows: [{**row, "id": f"o{n}"} for n, row in enumerate(rows)])
demands_st = st.builds(
    Demand,
    units=st.integers(1, 6),
    hours=st.integers(1, 3),
    chip_vendor=st.none() | st.sampled_from(["nvidia", "NVIDIA", "huawei"]),
    chip_model=st.none() | st.sampled_from(["A100", "910b"]),
    min_chips_per_unit=st.none() | small,
    min_cpus=st.none() | st.integers(0, 100),
    min_memory_mib=st.none() | st.integers(0, 600_000),
    min_storage_gib=st.none() | st.integers(0, 3_000),
    regions=st.none() | st.lists(st.sampled_from(["bj", "sh"]), min_size=1, max_size=2).map(tuple),
    tags=st.lists(st.sampled_from(["gpu", "rdma"]), max_size=2).map(tuple),
    max_price_per_unit_hour=st.none() | st.integers(1, 5),
    currency=st.none() | st.sampled_from([CNY, "USD"]),
    min_metric_score=st.none() | st.integers(0, 3),
    max_age_s=st.none() | st.sampled_from([0, 60]),
    sources=st.none()
    | st.lists(
        st.sampled_from(["own", "partner", "own:config", "partner:x", "y"]), min_size=1, max_size=2
    ).map(tuple),
    objective=st.sampled_from(["cost", "performance", "value"]),
    split=st.booleans(),
)


@settings(max_examples=examples(300), deadline=None)
@given(d=demands_st, rows=offers_st)
def test_matches_satisfy_every_constraint_and_exclusions_none(d: Demand, rows: list[OfferRow]) -> None:
    """Every match satisfies every constraint of the demand; no excluded offer would have; a plan
    covers exactly the units within each offer's free units, or is empty when they cannot be covered."""
    result = match(d, rows, CNY)
    by_key = {(r["source"], r["id"]): r for r in rows}
    assert len(result.matches) + len(result.excluded) == len(rows)
    assert all(satisfies(d, by_key[(m.source, m.offer_id)]) for m in result.matches)
    assert not any(satisfies(d, by_key[(e.source, e.offer_id)]) for e in result.excluded)
    assert all(
        type(m.total) is int and m.total == d.units * d.hours * m.price_per_unit_hour for m in result.matches
    )
    if d.split:
        assert result.plan is not None
        free = sum(m.free_units for m in result.matches)
        if free >= d.units:
            assert sum(p.units for p in result.plan) == d.units
            assert all(0 < p.units <= by_key[(p.source, p.offer_id)]["free_units"] for p in result.plan)
        else:
            assert result.plan == ()


def test_value_tells_apart_ratios_that_differ_in_the_last_unit() -> None:
    """`value` compares score per price exactly, even at prices near the ledger's largest amount."""
    top = MAX_AMOUNT
    rows = [
        offer("a", metric_score=1, price_per_unit_hour=top),
        offer("b", metric_score=1, price_per_unit_hour=top - 1),
    ]
    assert ids(match(parse_demand({"units": 1, "hours": 1, "objective": "value"}), rows, CNY)) == ["b", "a"]
