"""The offers a demand is matched against: the merged offer view (own offers with reservations
taken off, partners' unexpired catalogs), plus the offers of expired partner catalogs marked
`catalog_expired`, so that a demand can say why they were left out rather than just miss them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Engine

from federation import store
from node.peering.offers import OfferSource, merged_view, own_offers, partner_offers


def expired_offers(engine: Engine, now_ts: int) -> list[dict[str, Any]]:
    """Offers of partner catalogs expired at `now_ts`, as the merged view showed them just before,
    marked `catalog_expired` (their age is counted up to now)."""
    rows: list[dict[str, Any]] = []
    for partner in store.list_partners(engine):
        head = store.received_head(engine, partner.name)
        if head is None or head.expires_ts > now_ts:
            continue
        then = head.expires_ts - 1  # the last second the catalog was valid
        rows.extend(
            {
                **offer,
                "age_s": offer["age_s"] + now_ts - then,
                "confirmed_age_s": offer["confirmed_age_s"] + now_ts - then,
                "catalog_expired": True,
            }
            for offer in partner_offers(engine, then, partner.name)
        )
    return rows


def _rows(own: list[tuple[str, dict[str, Any]]], engine: Engine, now_ts: int) -> list[dict[str, Any]]:
    return merged_view(own, engine, now_ts) + expired_offers(engine, now_ts)


async def market_offers(
    sources: Mapping[str, OfferSource], engine: Engine, now_ts: int
) -> list[dict[str, Any]]:
    """Every offer a demand is matched against, own ones first."""
    own = await own_offers(sources)
    return await asyncio.to_thread(_rows, own, engine, now_ts)
