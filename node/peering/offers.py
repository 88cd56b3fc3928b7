"""The merged offer view: this node's own offers and every partner's accepted catalog, each offer
tagged with its source and age. Served at `GET /api/v1/offers` and shown by `cpnode catalog show`.
Catalogs relayed by aggregator partners (federation.relay) are listed on request only
(`relayed_offers`): they carry provenance, but no agreement of ours to trade on them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dbprep import Prepared
from federation import store
from federation.documents import load_document
from federation.issuing import content_hash
from federation.tables import received_t, sync_t
from node.offers import CatalogOffer, OfferRow, OfferSource, as_offer, offer_row

__all__ = [
    "ConfigOffers",
    "OfferSource",
    "catalog_offers",
    "config_offer_source",
    "merged_view",
    "own_offers",
    "partner_offer",
    "partner_offer_in",
    "partner_offers",
    "relayed_offers",
]
# Parsed partner catalogs by body hash: bodies never change under a hash, so parsing once is enough.
# The hash is read with every use, so a changed catalog is never served from here.
_parsed: dict[str, list[CatalogOffer]] = {}
_by_id: dict[str, dict[str, CatalogOffer]] = {}  # the same offers by id (the first of an id)
_MAX_CACHED = 256


class ConfigOffers:
    """An offer source serving the config's `[[offers]]`. They change only when the config is
    reloaded, so its `content_version()` (which lets catalog issuing skip calling it) is their hash."""

    def __init__(self, offers: Iterable[Mapping[str, Any]]) -> None:
        self.replace(offers)

    def replace(self, offers: Iterable[Mapping[str, Any]]) -> None:
        """Serve `offers` from now on (a config reload); the content version follows."""
        self._offers = [as_offer(offer) for offer in offers]
        self._version = content_hash(self._offers)

    async def __call__(self) -> list[CatalogOffer]:
        return [cast(CatalogOffer, dict(offer)) for offer in self._offers]

    def content_version(self) -> str:
        """Changes only with the offers (hash of their canonical bytes)."""
        return self._version


def config_offer_source(offers: Iterable[Mapping[str, Any]]) -> ConfigOffers:
    """An offer source serving the config's `[[offers]]`."""
    return ConfigOffers(offers)


async def own_offers(sources: Mapping[str, OfferSource]) -> list[tuple[str, CatalogOffer]]:
    """(source name, offer) for every own offer, in source order."""
    result: list[tuple[str, CatalogOffer]] = []
    for name, source in sources.items():
        result.extend((name, offer) for offer in await source())
    return result


def catalog_offers(sha256: str, body: bytes) -> list[CatalogOffer]:
    """The offers of a stored catalog body (parsed once per body hash; do not change them)."""
    offers = _parsed.get(sha256)
    if offers is None:
        document, _ = load_document(body)
        # Stored catalogs passed federation.catalog.accept_catalog, which checks every offer.
        offers = cast(list[CatalogOffer], list(document.get("offers", [])))
        if len(_parsed) >= _MAX_CACHED:
            _parsed.clear()
        _parsed[sha256] = offers
    return offers


def _indexed(sha256: str, body: bytes) -> dict[str, CatalogOffer]:
    """The offers of a stored catalog body by id (built once per body hash)."""
    found = _by_id.get(sha256)
    if found is None:
        found = {}
        for offer in catalog_offers(sha256, body):
            found.setdefault(offer["id"], offer)
        if len(_by_id) >= _MAX_CACHED:
            _by_id.clear()
        _by_id[sha256] = found
    return found


_HEAD = (received_t.c.version, received_t.c.sha256, received_t.c.received_ts, received_t.c.expires_ts)
# Read by every order for a partner's offer: built once with a bind parameter.
_PARTNER: sa.BindParameter[str] = sa.bindparam("p_partner")
_HEAD_AND_SYNC = Prepared(
    sa.select(*_HEAD, sync_t.c.last_success_ts)
    .select_from(received_t.outerjoin(sync_t, sync_t.c.partner == received_t.c.partner))
    .where(received_t.c.partner == _PARTNER)
)
_HEAD_AND_BODY = sa.select(*_HEAD, received_t.c.body).where(received_t.c.partner == _PARTNER)


def partner_offer(engine: Engine, now_ts: int, partner: str, offer_id: str) -> OfferRow | None:
    """Offer `offer_id` of `partner`'s unexpired accepted catalog as `partner_offers` gives it, or
    None. Reads that catalog's head and the partner's last sync; its body only when the offers of
    that body hash are not parsed and cached already."""
    with engine.connect() as conn:
        return partner_offer_in(conn, now_ts, partner, offer_id)


def partner_offer_in(conn: Connection, now_ts: int, partner: str, offer_id: str) -> OfferRow | None:
    """`partner_offer` on a connection the caller holds (read with other things in one trip)."""
    head = _HEAD_AND_SYNC.first(conn, {"p_partner": partner})
    if head is None or head["expires_ts"] <= now_ts:
        return None
    version, received_ts, synced = (
        int(head["version"]),
        int(head["received_ts"]),
        int(head["last_success_ts"] or 0),
    )
    by_id = _by_id.get(head["sha256"])
    if by_id is None:
        # Head and body in one statement: the catalog may have been replaced since the head.
        row = conn.execute(_HEAD_AND_BODY, {"p_partner": partner}).first()
        if row is None or row.expires_ts <= now_ts:
            return None
        version, received_ts = int(row.version), int(row.received_ts)
        by_id = _indexed(row.sha256, bytes(row.body))
    offer = by_id.get(offer_id)
    if offer is None:
        return None
    age = max(0, now_ts - received_ts)
    found = offer_row(offer, f"partner:{partner}", partner, age, max(0, now_ts - max(received_ts, synced)))
    found["catalog_version"] = version
    return found


def partner_offers(engine: Engine, now_ts: int, partner: str | None = None) -> list[OfferRow]:
    """Offers of every partner's unexpired accepted catalog, with source `partner:NAME`, age (since
    the catalog was received) and confirmed age (since a sync round last found it current)."""
    rows: list[OfferRow] = []
    states = store.sync_states(engine)
    for catalog in store.received_catalogs(engine, partner):
        if catalog["expires_ts"] <= now_ts:
            continue
        synced = states.get(catalog["partner"], {}).get("last_success_ts") or 0
        confirmed_ts = max(int(catalog["received_ts"]), int(synced))
        for offer in catalog_offers(catalog["sha256"], bytes(catalog["body"])):
            row = offer_row(
                offer,
                f"partner:{catalog['partner']}",
                catalog["partner"],
                max(0, now_ts - int(catalog["received_ts"])),
                max(0, now_ts - confirmed_ts),
            )
            row["catalog_version"] = catalog["version"]
            rows.append(row)
    return rows


def relayed_offers(engine: Engine, now_ts: int) -> list[OfferRow]:
    """Offers of the unexpired catalogs aggregator partners relayed, with source
    `relayed:AGGREGATOR:ISSUER`, the issuer and the key id its signature was checked with."""
    rows: list[OfferRow] = []
    for catalog in store.relayed_catalogs(engine):
        if catalog["expires_ts"] <= now_ts:
            continue
        age = max(0, now_ts - int(catalog["received_ts"]))
        for offer in catalog_offers(catalog["sha256"], bytes(catalog["body"])):
            row = offer_row(offer, f"relayed:{catalog['via']}:{catalog['issuer']}", catalog["via"], age, age)
            row["catalog_version"] = catalog["version"]
            row["issuer"], row["issuer_key_id"] = catalog["issuer"], catalog["key_id"]
            rows.append(row)
    return rows


def merged_view(
    own: list[tuple[str, CatalogOffer]], engine: Engine, now_ts: int, partner: str | None = None
) -> list[OfferRow]:
    """Own offers (unless one partner is asked for) followed by partner offers."""
    rows: list[OfferRow] = []
    if partner is None:
        rows.extend(offer_row(offer, f"own:{name}", None, 0, 0) for name, offer in own)
    rows.extend(partner_offers(engine, now_ts, partner))
    return rows
