"""The offers a demand is matched against: the merged offer view (own offers with reservations
taken off, partners' unexpired catalogs), plus the offers of expired partner catalogs marked
`catalog_expired`, so that a demand can say why they were left out rather than just miss them."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.engine import Engine

from federation import store
from node.db import in_thread
from node.offers import CatalogOffer, OfferRow, OfferSource
from node.peering.offers import merged_view, own_offers, partner_offers


def expired_offers(engine: Engine, now_ts: int) -> list[OfferRow]:
    """Offers of partner catalogs expired at `now_ts`, as the merged view showed them just before,
    marked `catalog_expired` (their age is counted up to now)."""
    rows: list[OfferRow] = []
    for partner in store.list_partners(engine):
        head = store.received_head(engine, partner.name)
        if head is None or head.expires_ts > now_ts:
            continue
        then = head.expires_ts - 1  # the last second the catalog was valid
        for row in partner_offers(engine, then, partner.name):  # fresh rows: changed in place
            row["age_s"] += now_ts - then
            row["confirmed_age_s"] += now_ts - then
            row["catalog_expired"] = True
            rows.append(row)
    return rows


def _rows(engine: Engine, own: list[tuple[str, CatalogOffer]], now_ts: int) -> list[OfferRow]:
    return merged_view(own, engine, now_ts) + expired_offers(engine, now_ts)


async def market_offers(sources: Mapping[str, OfferSource], engine: Engine, now_ts: int) -> list[OfferRow]:
    """Every offer a demand is matched against, own ones first."""
    own = await own_offers(sources)
    return await in_thread(engine, _rows, own, now_ts)
