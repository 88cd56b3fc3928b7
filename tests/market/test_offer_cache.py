"""The offer cache (node.market.offer_cache) on both backends: the columns are built once per offer
set and rebuilt at the first demand after any change (a partner's new catalog, an expired one, own
offers, open reservations, the network view); ages move with the clock without a rebuild; two
caches over one database (two API processes) agree after every change; and what the cache gives
is what a build from `market_offers` gives at the same moment."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import numpy as np
from nacl.signing import SigningKey
from sqlalchemy.engine import Engine

from federation import canonical, store
from federation.catalog import CatalogHead, ReceivedCatalog, build_catalog, sha256_hex
from federation.httpsig import Identity
from federation.keys import public_key_text
from federation.partners import Agreement, Partner
from node.market.columns import OfferColumns, build_columns, site_of
from node.market.offer_cache import OfferCache
from node.market.view import market_offers
from node.network.view import NetworkView
from node.offers import CatalogOffer, OfferSource
from node.peering.offers import catalog_offers, config_offer_source
from node.trading import reservations
from node.trading.capacity import Capacity
from tests.market.test_matching import offer

NOW = 1_900_000_000
KEY = SigningKey.generate()


def _offer(offer_id: str, price: int, free: int = 8) -> dict[str, Any]:
    row = dict(offer(offer_id, price_per_unit_hour=price, free_units=free))
    for gone in ("source", "partner", "age_s", "confirmed_age_s"):
        row.pop(gone, None)
    row["networks"] = ["beijing"]
    return row


def add_partner(engine: Engine, name: str) -> None:
    """Pin partner `name` (its key is KEY)."""
    agreement = Agreement(pools=("p",), markup_bp=0, credit_limit=10_000)
    partner = Partner(name, ("http://127.0.0.1:9",), public_key_text(KEY.verify_key), agreement, "cli")
    store.add_partner(engine, partner, NOW)


def receive(
    engine: Engine, name: str, version: int, offers: list[dict[str, Any]], at: int, valid_s: int
) -> None:
    """Store a catalog signed by partner `name`, received at `at`, as a sync round would."""
    document = build_catalog(Identity(name, KEY), "alpha", offers, version, at, valid_s, None)
    body = canonical.encode(document)
    head = CatalogHead(version, sha256_hex(body), at, at + valid_s)
    assert store.store_received(engine, name, ReceivedCatalog(head, offers, "k"), body, at)


def prices(columns: OfferColumns) -> dict[str, int]:
    """Offer id → price in the columns."""
    return {
        str(row["id"]): int(p)
        for row, p in zip(columns.rows, columns.numbers["price_per_unit_hour"].tolist(), strict=True)
    }


async def cached(cache: OfferCache, at: int, view: NetworkView | None = None) -> OfferColumns:
    """The cache's columns at `at`."""
    return await cache.columns(view or VIEW, at, site_of)


VIEW = NetworkView()


def test_built_once_and_rebuilt_after_each_change(engine: Engine) -> None:
    """Unchanged: no rebuild; a new catalog, an expiry, own offers and the network view each rebuild."""
    add_partner(engine, "beta")
    receive(engine, "beta", 1, [_offer("b1", 100), _offer("b2", 200)], NOW, 3600)
    own = config_offer_source([_offer("own-1", 50)])
    cache = OfferCache(engine, {"config": own})

    async def run() -> None:
        first = await cached(cache, NOW + 10)
        assert prices(first) == {"own-1": 50, "b1": 100, "b2": 200}
        assert cache.builds == 1
        again = await cached(cache, NOW + 20)
        assert cache.builds == 1  # same offer set: the same columns, older
        assert again.age_s.tolist() == [0, 20, 20]
        assert again.rows[1]["age_s"] == 20
        assert first.rows[1]["age_s"] == 10

        receive(engine, "beta", 2, [_offer("b1", 120), _offer("b2", 200)], NOW + 30, 3600)
        changed = await cached(cache, NOW + 31)
        assert cache.builds == 2
        assert prices(changed)["b1"] == 120
        assert changed.age_s.tolist() == [0, 1, 1]

        own.replace([_offer("own-1", 55), _offer("own-2", 60)])
        assert prices(await cached(cache, NOW + 32)) == {"own-1": 55, "own-2": 60, "b1": 120, "b2": 200}
        assert cache.builds == 3

        expired = await cached(cache, NOW + 30 + 3600)  # beta's catalog expires: shown, marked
        assert cache.builds == 4
        assert [bool(e) for e in expired.expired.tolist()] == [False, False, True, True]
        assert expired.rows[2]["catalog_expired"] is True

        other = NetworkView(sites=("beijing",))
        await cached(cache, NOW + 30 + 3600, other)
        assert cache.builds == 5  # another network view: sites may be placed otherwise

    asyncio.run(run())


def test_confirmed_age_follows_sync_rounds_without_rebuild(engine: Engine) -> None:
    """A sync round that finds the catalog current lowers its confirmed age at the next demand."""
    add_partner(engine, "beta")
    receive(engine, "beta", 1, [_offer("b1", 100)], NOW, 3600)
    cache = OfferCache(engine, {})

    async def run() -> None:
        assert (await cached(cache, NOW + 100)).age.tolist() == [100]
        store.put_sync_state(engine, "beta", last_success_ts=NOW + 90)
        columns = await cached(cache, NOW + 100)
        assert columns.age.tolist() == [10]
        assert columns.age_s.tolist() == [100]
        assert columns.rows[0]["confirmed_age_s"] == 10
        assert cache.builds == 1

    asyncio.run(run())


def test_reservations_made_elsewhere_are_seen_at_once(engine: Engine) -> None:
    """Own offers wrapped by capacity: a reservation written by another process (straight into the
    database here) shows in the next demand's free units, without waiting for a refresh."""
    own = _offer("own-1", 50, free=8)
    sources: dict[str, OfferSource] = {"config": config_offer_source([own])}
    Capacity(engine, clock=lambda: NOW).wrap(sources)
    cache = OfferCache(engine, sources)

    async def run() -> None:
        assert (await cached(cache, NOW)).numbers["free_units"].tolist() == [8]
        assert reservations.reserve(engine, "r1", cast(CatalogOffer, own), 3, NOW + 600, NOW)
        assert (await cached(cache, NOW)).numbers["free_units"].tolist() == [5]
        assert cache.builds == 2
        reservations.release_reservation(engine, "r1", NOW)
        assert (await cached(cache, NOW)).numbers["free_units"].tolist() == [8]

    asyncio.run(run())


def test_two_caches_over_one_database_agree(engine: Engine) -> None:
    """Two processes' caches (here two caches) see each change at their next demand."""
    add_partner(engine, "beta")
    add_partner(engine, "gamma")
    receive(engine, "beta", 1, [_offer("b1", 100)], NOW, 3600)
    a, b = OfferCache(engine, {}), OfferCache(engine, {})

    async def run() -> None:
        assert prices(await cached(a, NOW + 1)) == prices(await cached(b, NOW + 1)) == {"b1": 100}
        receive(engine, "gamma", 1, [_offer("g1", 90)], NOW + 2, 3600)
        receive(engine, "beta", 2, [_offer("b1", 80)], NOW + 2, 3600)
        assert prices(await cached(a, NOW + 3)) == prices(await cached(b, NOW + 3)) == {"b1": 80, "g1": 90}

    asyncio.run(run())


def test_same_columns_as_a_build_from_the_merged_view(engine: Engine) -> None:
    """Own offers, live and expired catalogs, ages: equal to building from `market_offers` now."""
    for name in ("beta", "gamma"):
        add_partner(engine, name)
    receive(engine, "beta", 1, [_offer("b1", 100), _offer("b2", 300)], NOW - 50, 3600)
    receive(engine, "gamma", 1, [_offer("g1", 90)], NOW - 4000, 3600)  # expired at NOW - 400
    store.put_sync_state(engine, "beta", last_success_ts=NOW - 5)
    sources: dict[str, OfferSource] = {"config": config_offer_source([_offer("own-1", 50)])}

    async def run() -> None:
        columns = await cached(OfferCache(engine, sources), NOW)
        expected = build_columns(await market_offers(sources, engine, NOW))
        assert list(columns.rows) == list(expected.rows)
        for field in ("age", "age_s", "expired", "bad", "tie", "score", "site_codes"):
            assert np.array_equal(getattr(columns, field), getattr(expected, field)), field
        for name, column in expected.numbers.items():
            assert np.array_equal(columns.numbers[name], column), name

    asyncio.run(run())


def test_partner_rows_are_made_from_the_parsed_catalog_not_kept(engine: Engine) -> None:
    """The cache keeps no copy of the partners' rows: each is made when read, from the parsed
    catalog offer peering keeps (the same object), equal every time it is read."""
    add_partner(engine, "beta")
    receive(engine, "beta", 1, [_offer("b1", 100), _offer("b2", 300)], NOW - 50, 3600)
    sources: dict[str, OfferSource] = {"config": config_offer_source([_offer("own-1", 50)])}

    async def run() -> None:
        columns = await cached(OfferCache(engine, sources), NOW)
        head = store.received_catalogs(engine)[0]
        parsed = catalog_offers(str(head["sha256"]), bytes(head["body"]))
        first, again = columns.rows[1], columns.rows[1]
        assert first == again
        assert first is not again
        assert {k: first[k] for k in parsed[0]} == parsed[0]  # type: ignore[literal-required]
        assert (first["source"], first["age_s"], first["confirmed_age_s"]) == ("partner:beta", 50, 50)
        rows = cast(Any, columns.rows)
        assert rows._offers[0] is parsed[0]

    asyncio.run(run())
