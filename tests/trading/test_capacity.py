"""Capacity counted per pool region, not per offer, with real orders between two real nodes on
SQLite and PostgreSQL: the seller's `local` pool has 4 slots and sells `local-1`, `local-2` and
`local-4`, which all draw on those slots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command

from node.db import make_engine, upgrade, write_transaction
from node.db.migrate import _config
from node.offers import CatalogOffer
from node.trading import reservations
from node.trading.capacity import free_after
from tests.support.trading import Market, market

FOUR_SLOTS = """
[connectors]
heartbeat_interval_s = 0.2
refresh_interval_s = 0.2

[[pools]]
name = "cpu-1"
plugin = "local"
site = "shanghai"
options = { root = "pools/cpu-1", slots = 4 }
"""
SIZES = (1, 2, 4)


def offer_id(k: int) -> str:
    """The id of the pool's `local-<k>` offer."""
    return f"cpu-1/local/local-{k}"


async def free(m: Market, where: str) -> dict[int, tuple[int, int | None]]:
    """(free units, free slots of the group) of local-1, -2 and -4 as the seller serves its own
    offers (`seller`) or as the buyer's copy of the seller's catalog shows them (`buyer`)."""
    if where == "buyer":
        await m.sync()
        status, body = await m.get("/api/v1/offers?partner=shanghai")
    else:
        status, body = await m.get("/api/v1/offers", "seller")
    assert status == 200, body
    offers = {o["id"]: o for o in body["offers"]}
    return {k: (offers[offer_id(k)]["free_units"], offers[offer_id(k)].get("capacity_free")) for k in SIZES}


def shown(slots: int) -> dict[int, tuple[int, int | None]]:
    """What every offer shows with `slots` slots free."""
    return {k: (slots // k, slots) for k in SIZES}


async def test_flavors_of_one_pool_share_its_slots(
    tmp_path: Path, db_urls: tuple[str | None, str | None]
) -> None:
    """Partner trades and the seller's own orders on local-2, local-1 and local-1 take the 4 slots;
    after each one every flavor's free units (own view, catalog, matching) follow the slots left,
    and the next order on any flavor is refused, whether the buyer's catalog is current or not."""
    async with market(tmp_path, db_urls, seller_extra=FOUR_SLOTS) as m:
        assert await free(m, "seller") == shown(4)
        status, body = await m.get("/api/v1/offers", "seller")
        pool = next(o for o in body["offers"] if o["id"] == offer_id(4))
        assert (pool["capacity_group"], pool["capacity_unit"], pool["capacity_cost"]) == (
            "cpu-1/local",
            "slots",
            4,
        )

        status, two = await m.order(1, 1, offer_id=offer_id(2))
        assert (status, two["state"]) == (201, "accepted"), two
        assert await free(m, "seller") == await free(m, "buyer") == shown(2)
        status, body = await m.post("/api/v1/match", {"units": 1, "hours": 1}, "seller")
        assert ("cpu-1/local/local-4", "not_enough_free_units") in {
            (x["offer_id"], x["reason"]) for x in body["excluded"]
        }

        assert (await m.post("/api/v1/consumers", {"id": "bob"}, "seller"))[0] == 201
        assert (await m.post("/api/v1/consumers/bob/deposits", {"amount": 10_000}, "seller"))[0] == 201
        own = {"consumer": "bob", "offer_id": offer_id(1), "source": "own:connectors", "units": 1, "hours": 1}
        status, one = await m.post("/api/v1/orders", own, "seller")
        assert (status, one["state"]) == (201, "accepted"), one
        assert await free(m, "seller") == await free(m, "buyer") == shown(1)

        status, last = await m.order(1, 1, offer_id=offer_id(1))
        assert (status, last["state"]) == (201, "accepted"), last
        assert await free(m, "seller") == shown(0)
        # The buyer's catalog still shows one slot (not synced since): the seller refuses in its database.
        status, body = await m.order(1, 1, offer_id=offer_id(1))
        assert (status, body["error"]) == (409, "not_enough_free_units"), body
        assert body["order"]["state"] == "cancelled"
        assert await free(m, "buyer") == shown(0)
        for k in SIZES:
            status, body = await m.order(1, 1, offer_id=offer_id(k))
            assert (status, body["error"]) == (409, "not_enough_free_units"), (k, body)
            status, body = await m.post("/api/v1/orders", {**own, "offer_id": offer_id(k)}, "seller")
            assert (status, body["error"]) == (409, "not_enough_free_units"), (k, body)

        status, cancelled = await m.post(f"/api/v1/orders/{two['id']}/cancel", {})
        assert (status, cancelled["state"]) == (200, "cancelled")
        assert await free(m, "seller") == await free(m, "buyer") == shown(2)


def test_free_after_takes_group_reservations_off_every_member() -> None:
    """A reservation in a group lowers the free units of every offer of the group by what the
    slots left can pay for; offers outside the group and without reservations are untouched."""
    base: dict[str, Any] = {"free_units": 4, "capacity_group": "p/r", "capacity_cost": 1, "capacity_free": 4}
    one: CatalogOffer = {**base, "id": "one"}  # type: ignore[typeddict-item]
    four: CatalogOffer = {**base, "id": "four", "free_units": 1, "capacity_cost": 4}  # type: ignore[typeddict-item]
    alone: CatalogOffer = {"id": "alone", "free_units": 3}  # type: ignore[typeddict-item]
    reserved = reservations.Reserved({"one": 1}, {"p/r": 1})
    assert (free_after(one, reserved)["free_units"], free_after(one, reserved)["capacity_free"]) == (3, 3)
    assert (free_after(four, reserved)["free_units"], free_after(four, reserved)["capacity_free"]) == (0, 3)
    assert free_after(alone, reserved) is alone
    assert free_after(four, reservations.Reserved({}, {})) is four


def test_reservation_group_columns_migrate_up_and_down(db_url: str) -> None:
    """node_0004 adds the capacity group columns to reservations made before (left null, so they
    count per offer as they did) and its downgrade removes them."""
    engine = make_engine(db_url)
    try:
        with write_transaction(engine) as conn:
            command.upgrade(_config(conn), "node_0003")
            conn.execute(
                sa.text(
                    "INSERT INTO trading_reservations (id, offer_id, units, expires_ts, released_ts, created_ts) "
                    "VALUES ('order:x', 'o', 2, 100, NULL, 1)"
                )
            )
        upgrade(engine)
        reserved = reservations.reserved(engine, 50)
        assert (reserved.by_offer, reserved.by_group) == ({"o": 2}, {})
        with write_transaction(engine) as conn:
            command.downgrade(_config(conn), "node_0003")
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("trading_reservations")}
        assert {"capacity_group", "group_units"}.isdisjoint(columns)
        assert "offer_id" in columns
    finally:
        engine.dispose()
