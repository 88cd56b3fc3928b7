"""Order moves written together, like a group commit: a move goes to a database thread at once when
none is being written; the moves that arrive meanwhile share the next write transaction.

For the moves many concurrent orders make at the same moment (the answers of one trade batch reach
their orders together): one hop and one transaction for all of them instead of one each. Each move
is still a compare-and-set on its own order, answered on its own (`store.move_orders`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from node.trading import store
from node.trading.core import Trading
from node.trading.machine import OrderEvent, OrderState
from node.trading.records import Order

MAX_GROUP = 64  # moves per transaction at most


@dataclass
class _Move:
    order_id: str
    state: OrderState
    event: OrderEvent
    values: Mapping[str, Any]
    done: asyncio.Future[Order | None]


class GroupedMoves:
    """Lazily committed order moves (see the module docstring), for one node's orders."""

    def __init__(self, trading: Trading) -> None:
        self.trading = trading
        self._waiting: list[_Move] = []
        self._writer: asyncio.Task[None] | None = None
        self.transactions = 0

    async def move(self, order: Order, event: OrderEvent, **values: Any) -> Order | None:
        """Move `order` from its state by `event`, writing `values` (None if it moved meanwhile),
        in a lazily committed transaction shared with the moves waiting with it."""
        done: asyncio.Future[Order | None] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Move(order.id, order.state, event, values, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await done

    async def _write(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
            moves = [(m.order_id, m.state, m.event, m.values) for m in group]
            self.transactions += 1
            try:
                results = await self.trading.db(store.move_orders, moves, self.trading.clock(), lazy=True)
            except Exception as exc:  # the whole transaction failed: each move's caller hears it
                for m in group:
                    if not m.done.done():
                        m.done.set_exception(exc)
                continue
            for m, result in zip(group, results, strict=True):
                if m.done.done():
                    continue
                if isinstance(result, Exception):
                    m.done.set_exception(result)
                else:
                    m.done.set_result(result)
