"""Demands that name a strategy (the I/O around node.market.strategies): the strategy resolved from
the registry (A/B split by consumer), the offers and the stored network view as columns, the
placement, and each order placed noted with the strategy that chose it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from node.db import in_thread
from node.market.demand import Demand
from node.market.matching import MatchResult
from node.market.offer_cache import OfferCache
from node.market.ordering import place_best
from node.market.strategy_spec import Strategy
from node.network.store import load_view_text, view_from_text
from node.network.view import NetworkView, partner_site
from node.offers import OfferRow, OfferSource
from node.strategies import store
from node.trading.buyer import Buyer

if TYPE_CHECKING:
    # The column code (NumPy) is loaded when a demand is first placed, not by every process.
    from node.market.columns import OfferColumns
    from node.market.placement import Placement


def site_for(view: NetworkView) -> Callable[[OfferRow], str | None]:
    """Where an offer is: the site its catalog declares, else its partner's measured pseudo-site."""
    from node.market.columns import site_of

    def site(row: OfferRow) -> str | None:
        declared = site_of(row)
        if declared is not None:
            return declared
        partner = row.get("partner")
        if partner and view.knows(partner_site(partner)):
            return partner_site(partner)
        return None

    return site


def users_latency_us(demand: Demand, view: NetworkView, site: str | None) -> int | None:
    """The traffic-weighted latency (µs) from the demand's user sites to `site`, None if unknown."""
    if site is None or not demand.user_sites:
        return None
    total = weighted = 0
    for user in demand.user_sites:
        latency = view.latency_ms(user.site, site)
        if latency is None:
            return None
        weighted += user.weight * round(latency * 1000)
        total += user.weight
    return weighted // total


SHOWN = 20  # candidates explained in an answer, unless asked for more (at most MAX_SHOWN)
MAX_SHOWN = 1000


class Scheduler:
    """Places demands that name a strategy, for one node."""

    def __init__(self, engine: Engine, sources: Mapping[str, OfferSource], currency: str) -> None:
        self.engine = engine
        self.sources = sources
        self.currency = currency
        self._view: NetworkView = NetworkView()
        self._view_text: str | None = None
        self.offers = OfferCache(engine, sources)

    async def view(self) -> NetworkView:
        """The stored network view (the last one read, kept while its stored text is the same)."""
        return self._parsed(await in_thread(self.engine, load_view_text))

    def _parsed(self, text: str | None) -> NetworkView:
        if text is not None and text != self._view_text:
            stored = view_from_text(text)
            if stored != self._view:
                self._view = stored
            self._view_text = text
        return self._view

    async def placement(self, demand: Demand, consumer: str | None, limit: int = SHOWN) -> Placement:
        """Rank the merged offer view for a demand that names a strategy (the first `limit` shown),
        over the columns this process keeps while the offer set stands (node.market.offer_cache)."""
        from node.market.placement import place

        assert demand.strategy is not None
        now_ts, ref = int(time.time()), demand.strategy

        def strategy_and_view() -> tuple[Strategy, str | None]:
            return store.resolve(self.engine, ref, consumer), load_view_text(self.engine)

        # The strategy, the network view and the offer set's version: one thread hop (and the own
        # offer sources' reads beside it).
        version, (strategy, text) = await self.offers.version(now_ts, strategy_and_view)
        view = self._parsed(text)
        columns = await self.offers.columns(view, now_ts, site_for(view), version)
        return place(strategy, demand, columns, view, self.currency, limit)

    async def columns(self, now_ts: int) -> tuple[NetworkView, OfferColumns]:
        """The stored network view and the offer columns at `now_ts` (the view's text read in the
        same thread hop as the offer set's version)."""
        version, text = await self.offers.version(now_ts, lambda: load_view_text(self.engine))
        view = self._parsed(text)
        return view, await self.offers.columns(view, now_ts, site_for(view), version)

    async def matched(self, demand: Demand) -> MatchResult:
        """Match a demand without a strategy over the cached columns (node.market.column_match:
        the answer `matching.match` gives over the merged offer view, with up to SHOWN_PER_REASON
        exclusions of each reason shown and all of them counted)."""
        from node.market.column_match import match_columns
        from node.market.placement import SHOWN_PER_REASON

        _view, columns = await self.columns(int(time.time()))
        return match_columns(demand, columns, self.currency, SHOWN_PER_REASON)

    async def rank(
        self, demand: Demand, consumer: str | None, rows: list[OfferRow], limit: int = SHOWN
    ) -> Placement:
        """Rank `rows` for a demand that names a strategy (its version chosen for `consumer`)."""
        from node.market.columns import build_columns
        from node.market.placement import place

        assert demand.strategy is not None
        strategy = await in_thread(self.engine, store.resolve, demand.strategy, consumer)
        view = await self.view()
        columns = await asyncio.to_thread(build_columns, rows, site_for(view))
        return place(strategy, demand, columns, view, self.currency, limit)

    async def note(self, placement: Placement, consumer: str, answer: dict[str, Any]) -> None:
        """Note the strategy (and the latency to the users it expected) on each order placed."""
        demand = placement.demand
        sites = {(c.match.source, c.match.offer_id): c.site for c in placement.candidates}
        now_ms = int(time.time() * 1000)
        for order in answer["orders"]:
            site = sites.get((order["source"], order["offer_id"]))
            latency = users_latency_us(demand, self._view, site)
            await in_thread(
                self.engine, store.record, order["id"], consumer, placement.strategy, site, latency, now_ms
            )

    async def order(
        self, buyer: Buyer, demand: Demand, consumer: str, request_id: str | None
    ) -> dict[str, Any]:
        """Place the demand's orders on the strategy's choice and note which strategy chose each."""
        placement = await self.placement(demand, consumer)
        answer = await place_best(buyer, placement.result(), consumer, request_id)
        await self.note(placement, consumer, answer)
        answer["strategy"] = placement.strategy.view()
        return answer
