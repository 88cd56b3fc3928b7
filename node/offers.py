"""Offers as they travel through the node, typed.

`CatalogOffer` is one offer of a signed catalog: exactly the fields of
`federation.catalog.OFFER_FIELDS`, required ones required (a table test keeps the two equal).
`OfferRow` is a row of the merged offer view (`GET /api/v1/offers`, matching): an offer with where
it comes from and how old it is. Partner catalogs may carry fields we do not know; they stay in
the dict (they are signed) and are simply not typed.

Shared capacity (optional, from pools whose flavors draw on one capacity, e.g. the `local` pool's
slots): `capacity_group` names the capacity (pool and region), `capacity_unit` its unit,
`capacity_cost` how many of those units one unit of the offer takes, and `capacity_free` how many
are free. Reserving units of one offer lowers the free units of every offer of its group.
"""

# No `from __future__ import annotations` here: Python 3.11 computes a TypedDict's required and
# optional keys only from evaluated annotations, and tests read them against OFFER_FIELDS.
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NotRequired, TypedDict, cast

from federation.catalog import check_offer


class CatalogOffer(TypedDict):
    """One offer as catalogs carry it (federation.catalog.OFFER_FIELDS); money in minor units."""

    id: str
    pool: str
    region: str
    chip_vendor: str
    chip_model: str
    chips_per_unit: int
    cpus: int
    memory_mib: int
    storage_gib: int
    free_units: int
    price_per_unit_hour: int
    currency: str
    networks: list[str]
    tags: list[str]
    compute_id: NotRequired[str | None]
    metric_score: NotRequired[int | None]
    capacity_group: NotRequired[str | None]
    capacity_unit: NotRequired[str | None]
    capacity_cost: NotRequired[int | None]
    capacity_free: NotRequired[int | None]


class OfferRow(CatalogOffer):
    """A row of the merged offer view: `source` is `own:NAME` or `partner:NAME` (or, shown on
    request only, `relayed:AGGREGATOR:ISSUER` with the issuer and its signing key); ages in
    seconds (since the catalog was received, and since a sync round last confirmed it)."""

    source: str
    partner: str | None
    age_s: int
    confirmed_age_s: int
    catalog_version: NotRequired[int]
    catalog_expired: NotRequired[bool]
    issuer: NotRequired[str]
    issuer_key_id: NotRequired[str]


OfferSource = Callable[[], Awaitable[list[CatalogOffer]]]
"""Something that yields the node's own offers (a pool host, the config's `[[offers]]`)."""


def as_offer(data: Mapping[str, Any]) -> CatalogOffer:
    """`data` as a catalog offer, checked as catalogs check offers (DocumentError naming the field)."""
    return cast(CatalogOffer, check_offer(dict(data)))


def offer_row(
    offer: CatalogOffer, source: str, partner: str | None, age_s: int, confirmed_age_s: int
) -> OfferRow:
    """A row of the merged view: a copy of `offer` with where it comes from and its ages."""
    row = cast(OfferRow, dict(offer))
    row["source"], row["partner"] = source, partner
    row["age_s"], row["confirmed_age_s"] = age_s, confirmed_age_s
    return row


def group_of(offer: CatalogOffer) -> tuple[str, int, int] | None:
    """(capacity group, cost per unit, free units of the group) of an offer that shares capacity."""
    group, cost, free = offer.get("capacity_group"), offer.get("capacity_cost"), offer.get("capacity_free")
    if group is None or cost is None or free is None or cost < 1:
        return None
    return group, cost, free
