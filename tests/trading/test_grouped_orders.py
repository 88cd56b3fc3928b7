"""Concurrent partner orders share the buyer's placing transaction and their moves to `accepted`
(node.trading.grouped), on each backend: each order is placed, held and accepted once, and one
order refused in a group leaves the others untouched."""

from __future__ import annotations

import asyncio
from pathlib import Path

from node.trading.errors import RefusedError
from tests.support.trading import PRICE, buyer_of, market


async def test_orders_placed_together_share_transactions(
    tmp_path: Path, db_urls: tuple[str | None, str | None]
) -> None:
    """Seven orders placed at once, one asking for more units than the offer has: the six are
    accepted, each with its own hold and receipt; the seventh is refused and holds nothing; the
    group took fewer placing transactions than orders."""
    async with market(tmp_path, db_urls, seller_free=20, trades_in_flight=32, deposit=10**8) as m:
        buyer = buyer_of(m.buyer)
        await buyer.place("alice", "shanghai-gpu", "partner:shanghai", 1, 1, None)  # warm-up
        before = m.consumer
        balances = await before()
        placings = buyer.placings.transactions, buyer.placings.calls
        asks = [1, 1, 1, 50, 1, 1, 1]  # 50 is more than the catalog's free units

        async def one(units: int) -> object:
            try:
                return await buyer.place("alice", "shanghai-gpu", "partner:shanghai", units, 1, None)
            except RefusedError as exc:
                return exc

        results = await asyncio.gather(*(one(units) for units in asks))
        refused = [r for r in results if isinstance(r, RefusedError)]
        orders = [r for r in results if not isinstance(r, RefusedError)]
        assert len(refused) == 1
        assert refused[0].code == "not_enough_free_units"
        assert {getattr(o, "state", None) for o in orders} == {"accepted"}
        assert len({getattr(o, "id", None) for o in orders}) == 6
        assert all(getattr(o, "receipt_sha256", None) for o in orders)
        transactions = buyer.placings.transactions - placings[0]
        assert buyer.placings.calls - placings[1] == 7
        assert transactions < 7  # the first alone, the six others together
        after = await m.consumer()
        assert balances["available"] - after["available"] == 6 * PRICE
