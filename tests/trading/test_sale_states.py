"""The seller's sale machine on real nodes: holds that expire while settling, and cancels of trades
the seller never saw (validated before anything is stored)."""

from __future__ import annotations

import time
from pathlib import Path

import ledger
from federation import canonical
from node.trading import documents, reservations
from node.trading import store as trading_store
from tests.support.federation import service_of
from tests.support.trading import buyer_of, engine_of, market, seller_of, send, signed_post

FAR_FUTURE_MS = (int(time.time()) + 400 * 24 * 3600) * 1000


async def test_holds_expired_while_settling_end_the_sale_expired(
    tmp_path: Path, db_urls: tuple[str | None, str | None]
) -> None:
    """A sale whose holds lapsed in the seller's ledger before its settlement posted them ends
    `expired` with a signed hold_expired refusal, and upkeep leaves it alone from then on."""
    async with market(tmp_path, db_urls) as m:
        status, order = await m.order(1, 2)
        assert status == 201, order
        trade = order["id"]
        lapsed = ledger.sweep_job(engine_of(m.seller), now=FAR_FUTURE_MS)
        assert sorted(str(t.pending_id) for t in lapsed) == [f"{trade}:sale:fee", f"{trade}:sale:provider"]
        status, settled = await m.post(f"/api/v1/orders/{trade}/settle", {"used_hours": 1})
        assert (status, settled["state"]) == (200, "cancelled"), settled
        assert settled["reason"].startswith("hold_expired:"), settled["reason"]
        sale = trading_store.get_sale(engine_of(m.seller), "beijing", trade)
        assert sale is not None
        assert (sale.state, sale.settlement_sha256 is not None) == ("expired", True)
        # The same settlement again gets the signed refusal, not a retry of the posting.
        stored = await buyer_of(m.buyer).get(trade)
        assert stored.settlement is not None
        path = f"/fed/v1/trades/{trade}/settlement"
        headers, url = await signed_post(m, path, stored.settlement)
        status, refusal = await send(url, stored.settlement, headers)
        assert (status, refusal["type"], refusal["error"]) == (409, documents.REFUSAL_TYPE, "hold_expired")
        assert refusal["signatures"]["shanghai"]
        seller = seller_of(m.seller)
        real_clock = seller.trading.clock
        seller.trading.clock = lambda: real_clock() + 3600
        assert await seller.upkeep() == 0
        sale = trading_store.get_sale(engine_of(m.seller), "beijing", trade)
        assert sale is not None
        assert sale.state == "expired"
        assert (await m.consumer())["available"] == 500_000
        assert reservations.reserved_units(engine_of(m.seller), int(time.time())) == {}


async def test_cancels_of_unseen_trades_are_checked_before_anything_is_stored(
    tmp_path: Path, db_urls: tuple[str | None, str | None]
) -> None:
    """A cancel (0 hours) of a trade the seller never saw is refused with a signed 422 unless its id
    is the partner's own and its currency the seller's, and then nothing is stored; a good one is
    recorded once and answered with a `cancelled` receipt."""
    async with market(tmp_path, db_urls) as m:
        identity = service_of(m.buyer).identity()
        cases = [
            ("beijing." + "x" * 3_000, "beijing." + "x" * 3_000, "CNY", "bad_request"),
            ("shanghai.abcdefgh12", "shanghai.abcdefgh12", "CNY", "foreign_trade_id"),
            ("..%2F..%2Fetc", "../../etc", "CNY", "bad_request"),
            ("beijing.abcdefgh12", "beijing.abcdefgh12", "ZZZ", "bad_cancel"),
        ]
        for in_path, trade_id, currency, code in cases:
            doc = documents.settlement(identity, "shanghai", trade_id, 0, 0, currency, None, int(time.time()))
            body = canonical.encode(doc)
            headers, url = await signed_post(m, f"/fed/v1/trades/{in_path}/settlement", body)
            status, refusal = await send(url, body, headers)
            assert (status, refusal.get("type"), refusal["error"]) == (422, documents.REFUSAL_TYPE, code), (
                trade_id[:40],
                refusal,
            )
            assert refusal["signatures"]["shanghai"]
        assert (await m.get("/api/v1/sales", "seller"))[1]["sales"] == []
        doc = documents.settlement(
            identity, "shanghai", "beijing.abcdefgh12", 0, 0, "CNY", None, int(time.time())
        )
        body = canonical.encode(doc)
        headers, url = await signed_post(m, "/fed/v1/trades/beijing.abcdefgh12/settlement", body)
        status, receipt = await send(url, body, headers)
        assert (status, receipt["state"], receipt["amount"]) == (200, "cancelled", 0)
        [stored] = (await m.get("/api/v1/sales", "seller"))[1]["sales"]
        assert (stored["trade_id"], stored["state"], stored["currency"]) == (
            "beijing.abcdefgh12",
            "cancelled",
            "CNY",
        )
