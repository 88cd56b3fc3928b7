"""The trade flow between two real nodes on 127.0.0.1, on SQLite and PostgreSQL: an order for a
partner's offer is held, accepted with a co-signed receipt, settled with partial usage in both
ledgers under one trade id; local orders settle inside the buyer alone; cancels void both sides."""

from __future__ import annotations

from pathlib import Path

from federation import canonical
from federation.issuing import source_version
from node.trading import documents, store
from tests.support.federation import service_of
from tests.support.trading import PRICE, balances, legs, market, seller_of

UNITS, HOURS = 2, 3
AMOUNT = UNITS * HOURS * PRICE  # 60,000
FEE = AMOUNT * 500 // 10_000  # 3,000 held for shanghai's platform fee


async def test_partner_order_held_accepted_and_settled_in_both_ledgers(  # noqa: PLR0915 (one scenario, in order)
    tmp_path: Path, db_urls: tuple[str | None, str | None]
) -> None:
    """Both ledgers hold, then settle, the same trade id with the same amounts, states and digests."""
    async with market(tmp_path, db_urls) as m:
        versions_before = source_version(service_of(m.seller).offer_sources["config"])
        status, order = await m.order(UNITS, HOURS)
        assert status == 201, order
        assert (order["state"], order["amount"], order["partner"]) == ("accepted", AMOUNT, "shanghai")
        trade = order["id"]
        assert trade.startswith("beijing.")
        alice = await m.consumer()
        assert (alice["balance"], alice["held"], alice["available"]) == (500_000, AMOUNT, 500_000 - AMOUNT)
        assert legs(m.buyer, trade) == [(":hold", "pending", AMOUNT), (":escrow", "pending", AMOUNT)]
        assert legs(m.seller, trade) == [
            (":sale:provider", "pending", AMOUNT - FEE),
            (":sale:fee", "pending", FEE),
        ]
        # The receipt the buyer keeps is the buyer's request and the seller's acceptance, hash-linked;
        # both ledgers carry its digest.
        status, shown = await m.get(f"/api/v1/orders/{trade}")
        receipt = shown["receipt"]
        assert receipt["acceptance"]["request_sha256"] == documents.sha256_of(receipt["request"])
        assert documents.digest(receipt) == order["receipt_sha256"]
        sale = next(s for s in (await m.get("/api/v1/sales", "seller"))[1]["sales"] if s["trade_id"] == trade)
        assert sale["receipt_sha256"] == order["receipt_sha256"]
        assert sale["state"] == "accepted"
        # Capacity: the seller's own view and its catalog for the buyer show 2 of 4 units left. The
        # config's offers keep a content version (so unchanged head polls stay cheap); it changed.
        config_source = service_of(m.seller).offer_sources["config"]
        assert source_version(config_source) is not None
        assert source_version(config_source) != versions_before
        status, offers = await m.get("/api/v1/offers", "seller")
        assert next(o for o in offers["offers"] if o["id"] == "shanghai-gpu")["free_units"] == 2
        await m.sync()
        status, offers = await m.get("/api/v1/offers?partner=shanghai")
        assert next(o for o in offers["offers"] if o["id"] == "shanghai-gpu")["free_units"] == 2

        status, settled = await m.post(f"/api/v1/orders/{trade}/settle", {"used_hours": 2})
        assert status == 200, settled
        used = UNITS * 2 * PRICE  # 40,000
        assert (settled["state"], settled["settled_amount"]) == ("settled", used)
        fee_used = FEE * used // AMOUNT
        buyer, seller = balances(m.buyer), balances(m.seller)
        assert buyer["consumer:alice"] == (0, used, 0, 500_000)
        assert buyer["partner:shanghai"] == (0, 0, 0, used)
        assert buyer["escrow:orders"] == (0, used, 0, used)
        assert seller["partner:beijing"] == (0, used, 0, 1_000_000)
        assert seller["provider:pool-a"] == (0, 0, 0, used - fee_used)
        assert seller["fees:platform"] == (0, 0, 0, fee_used)
        assert [leg[:2] for leg in legs(m.seller, trade)][2:] == [
            (":sale:provider:post", "post"),
            (":sale:fee:post", "post"),
        ]
        # The settlement record (the buyer's settlement and the seller's receipt) is kept on both
        # sides and linked from the posts of both ledgers.
        status, shown = await m.get(f"/api/v1/orders/{trade}")
        record = shown["settlement_record"]
        assert documents.digest(record) == settled["settlement_sha256"]
        sale = await seller_of(m.seller).trading.db(store.get_sale, "beijing", trade)
        assert sale is not None
        assert sale.record_sha256 == settled["settlement_sha256"]
        assert canonical.decode(sale.settlement_receipt or b"") == record["receipt"]
        # The reservation is gone once settled.
        status, offers = await m.get("/api/v1/offers", "seller")
        assert next(o for o in offers["offers"] if o["id"] == "shanghai-gpu")["free_units"] == 4
        # Settling again with the same hours is a no-op; other hours are refused.
        assert (await m.post(f"/api/v1/orders/{trade}/settle", {"used_hours": 2}))[0] == 200
        status, body = await m.post(f"/api/v1/orders/{trade}/settle", {"used_hours": 1})
        assert (status, body["error"]) == (409, "bad_order_state")
        assert balances(m.buyer) == buyer
        assert balances(m.seller) == seller


async def test_local_order_settles_inside_the_buyer(
    tmp_path: Path, db_urls: tuple[str | None, str | None]
) -> None:
    """An order for the node's own offer holds provider and fee legs, reserves capacity and posts
    only the used part; the partner never hears of it."""
    async with market(tmp_path, db_urls) as m:
        status, order = await m.order(1, 4, offer_id="beijing-local", source="own:config")
        assert status == 201, order
        assert (order["state"], order["partner"], order["amount"]) == ("accepted", None, 8_000)
        fee = 8_000 * 500 // 10_000
        assert legs(m.buyer, order["id"]) == [
            (":sale:provider", "pending", 8_000 - fee),
            (":sale:fee", "pending", fee),
        ]
        status, offers = await m.get("/api/v1/offers")
        assert next(o for o in offers["offers"] if o["id"] == "beijing-local")["free_units"] == 2
        status, settled = await m.post(f"/api/v1/orders/{order['id']}/settle", {"used_hours": 1})
        assert (status, settled["state"], settled["settled_amount"]) == (200, "settled", 2_000)
        buyer = balances(m.buyer)
        assert buyer["consumer:alice"] == (0, 2_000, 0, 500_000)
        assert buyer["provider:local-a"] == (0, 0, 0, 2_000 - 2_000 * fee // 8_000)
        assert buyer["fees:platform"] == (0, 0, 0, 2_000 * fee // 8_000)
        assert (await m.get("/api/v1/sales", "seller"))[1]["sales"] == []
        status, offers = await m.get("/api/v1/offers")
        assert next(o for o in offers["offers"] if o["id"] == "beijing-local")["free_units"] == 3


async def test_cancel_voids_both_sides(tmp_path: Path) -> None:
    """Cancelling an accepted order voids the seller's holds and then the buyer's; nothing is charged
    and the trade is voided in both ledgers."""
    async with market(tmp_path) as m:
        status, order = await m.order(1, 1)
        assert status == 201, order
        status, cancelled = await m.post(f"/api/v1/orders/{order['id']}/cancel", {})
        assert (status, cancelled["state"]) == (200, "cancelled")
        assert (await m.consumer())["available"] == 500_000
        assert [kind for _, kind, _ in legs(m.buyer, order["id"])] == ["pending", "pending", "void", "void"]
        assert [kind for _, kind, _ in legs(m.seller, order["id"])] == ["pending", "pending", "void", "void"]
        assert balances(m.seller)["partner:beijing"] == (0, 0, 0, 1_000_000)
        status, body = await m.post(f"/api/v1/orders/{order['id']}/settle", {"used_hours": 1})
        assert (status, body["error"]) == (409, "bad_order_state")


LOCAL_POOL = """
[connectors]
heartbeat_interval_s = 0.2
refresh_interval_s = 0.2

[[pools]]
name = "cpu-1"
plugin = "local"
site = "shanghai"
options = { root = "pools/cpu-1", slots = 2 }
"""


async def test_partner_offer_from_a_connectors_pool(tmp_path: Path) -> None:
    """A seller whose offers come from a local pool checks the pool's own free units: two units are
    sold and reserved, a third is refused, and the pool's provider account is paid on settlement."""
    async with market(tmp_path, seller_extra=LOCAL_POOL) as m:
        offer_id = "cpu-1/local/local-1"
        status, offers = await m.get("/api/v1/offers?partner=shanghai")
        pool_offer = next(o for o in offers["offers"] if o["id"] == offer_id)
        assert (pool_offer["free_units"], pool_offer["price_per_unit_hour"]) == (2, 100)
        status, order = await m.order(2, 1, offer_id=offer_id)
        assert (status, order["state"], order["amount"]) == (201, "accepted", 200)
        status, body = await m.order(1, 1, offer_id=offer_id)
        assert (status, body["error"]) == (409, "not_enough_free_units")
        status, offers = await m.get("/api/v1/offers", "seller")
        assert next(o for o in offers["offers"] if o["id"] == offer_id)["free_units"] == 0
        status, settled = await m.post(f"/api/v1/orders/{order['id']}/settle", {"used_hours": 1})
        assert (status, settled["settled_amount"]) == (200, 200)
        assert balances(m.seller)["provider:cpu-1"] == (0, 0, 0, 200 - 200 * 500 // 10_000)
