"""Demands without a strategy matched over the cached columns (node.market.column_match) get the
answer the market's matching gives over the merged offer view: the same matches in the same order,
the same exclusions with the same reasons and messages, the same split plan — on generated demands
and offers, and over a store with own offers, live, stale and expired catalogs."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from sqlalchemy.engine import Engine

from federation import store
from node.market import Demand, match
from node.market.column_match import match_columns
from node.market.columns import build_columns
from node.market.matching import MatchResult
from node.market.offer_cache import OfferCache
from node.market.view import market_offers
from node.offers import OfferRow, OfferSource
from node.peering.offers import config_offer_source
from tests.market.test_matching import CNY, demand, demands_st, offers_st
from tests.market.test_offer_cache import NOW, _offer, add_partner, cached, receive
from tests.support.examples import examples


def same(a: MatchResult, b: MatchResult) -> None:
    """Equal answers: what the API shows, and the rows each match stands on."""
    assert a.view() == b.view()
    assert [m.offer for m in a.matches] == [m.offer for m in b.matches]


@settings(max_examples=examples(300), deadline=None)
@given(d=demands_st, rows=offers_st)
def test_same_answer_as_matching_on_generated_offers(d: Demand, rows: list[OfferRow]) -> None:
    """Every objective, with and without split, over generated offers: the same answer both ways."""
    same(match_columns(d, build_columns(rows), CNY), match(d, rows, CNY))


def test_same_answer_over_the_cached_offer_view(engine: Engine) -> None:
    """Own offers, a live catalog, a stale one and an expired one: each demand gets from the cached
    columns what `match` gives over `market_offers` at the same moment, exclusions included."""
    for name in ("beta", "gamma", "delta"):
        add_partner(engine, name)
    receive(engine, "beta", 1, [_offer("b1", 100), _offer("b2", 300, free=1)], NOW - 50, 3600)
    receive(engine, "gamma", 1, [_offer("g1", 90)], NOW - 4000, 3600)  # expired at NOW - 400
    receive(engine, "delta", 1, [_offer("d1", 70), _offer("d2", 70)], NOW - 900, 3600)
    store.put_sync_state(engine, "beta", last_success_ts=NOW - 5)
    own = [_offer("own-1", 50), _offer("own-2", 120, free=2)]
    sources: dict[str, OfferSource] = {"config": config_offer_source(own)}
    demands = [
        demand(),
        demand(units=4),
        demand(max_price_per_unit_hour=99, objective="performance"),
        demand(max_age_s=60, objective="value"),
        demand(units=9, split=True),
        demand(sources=("partner",), regions=("nowhere",)),
    ]

    async def run() -> None:
        cache = OfferCache(engine, sources)
        for d in demands:
            expected = match(d, await market_offers(sources, engine, NOW), CNY)
            assert (expected.matches and expected.excluded) or d.regions
            same(match_columns(d, await cached(cache, NOW), CNY), expected)
        assert cache.builds == 1

    asyncio.run(run())


@settings(max_examples=examples(200), deadline=None)
@given(d=demands_st, rows=offers_st)
def test_an_answer_shows_the_first_exclusions_of_each_reason_and_counts_them_all(
    d: Demand, rows: list[OfferRow]
) -> None:
    """With `shown_per_reason` (the API's answer), the matches and plan are unchanged, the exclusions
    shown are the first two of each reason in the full answer's order, and every one is counted."""
    full = match_columns(d, build_columns(rows), CNY)
    shown = match_columns(d, build_columns(rows), CNY, shown_per_reason=2)
    assert (shown.matches, shown.plan) == (full.matches, full.plan)
    kept: dict[str, int] = {}
    expected = []
    for exclusion in full.excluded:
        kept[exclusion.reason] = kept.get(exclusion.reason, 0) + 1
        if kept[exclusion.reason] <= 2:
            expected.append(exclusion)
    assert list(shown.excluded) == expected
    assert shown.exclusion_counts == full.exclusion_counts == kept
    assert shown.view()["excluded_by_reason"] == kept
