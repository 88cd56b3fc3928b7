"""Concurrent partner orders share the buyer's placing transaction and their moves to `accepted`
(node.trading.grouped), on each backend: each order is placed, held and accepted once, and one
order refused in a group leaves the others untouched."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from node.trading import grouped
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


async def test_answered_and_new_orders_share_transactions(
    tmp_path: Path, db_urls: tuple[str | None, str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Orders placed while others' answers come back: the moves to `accepted` and the new orders
    share the buyer's transactions (each write slowed a little, so both kinds wait together), and
    every order is accepted once with its own hold."""
    slow, alone = grouped.write_groups, grouped._alone
    kinds: list[int] = []  # kinds per write
    alone_writes: list[int] = []

    def slowed(engine: Any, groups: Any) -> Any:
        time.sleep(0.03)
        kinds.append(len(groups))
        return slow(engine, groups)

    def counted(kind: Any, engine: Any, calls: Any) -> Any:
        alone_writes.append(len(calls))
        return alone(kind, engine, calls)

    monkeypatch.setattr(grouped, "write_groups", slowed)
    monkeypatch.setattr(grouped, "_alone", counted)
    async with market(tmp_path, db_urls, seller_free=100, trades_in_flight=32, deposit=10**8) as m:
        buyer = buyer_of(m.buyer)
        await buyer.place("alice", "shanghai-gpu", "partner:shanghai", 1, 1, None)  # warm-up
        balances = await m.consumer()
        writes, moves = buyer.steps.writes, buyer.steps.grouped.lane
        before = writes.transactions, buyer.placings.transactions + moves.transactions

        async def one(delay_s: float) -> Any:
            await asyncio.sleep(delay_s)
            return await buyer.place("alice", "shanghai-gpu", "partner:shanghai", 1, 1, None)

        orders = await asyncio.gather(*(one(0.01 * index) for index in range(16)))
        assert {order.state for order in orders} == {"accepted"}
        assert len({order.id for order in orders}) == 16
        shared = writes.transactions - before[0]
        by_lane = buyer.placings.transactions + moves.transactions - before[1]
        assert shared < by_lane, (shared, by_lane)  # some transactions carried both kinds
        assert 2 in kinds
        assert len(alone_writes) == kinds.count(1)  # no shared transaction fell back to writing alone
        after = await m.consumer()
        assert balances["available"] - after["available"] == 16 * PRICE
