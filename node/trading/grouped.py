"""Writes of concurrent orders grouped into shared transactions, like a group commit: a write goes to
a database thread at once when none of its kind is being written; the ones that arrive meanwhile
share the next transaction (up to `MAX_GROUP`).

Used where many concurrent orders write at the same moment: placing new partner orders (their
insert, hold and moves to `requested`, one durable transaction for the group: `placing.place_group`)
and the moves to `accepted` of the answers one trade batch brings back together, each with the
hold of what the order owes its partner (one durable transaction, the ledger's head locked first:
`store.move_orders_holding`). Each order's write is still its own (a compare-and-set on its order,
a savepoint of its own when placing) and answered on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Engine

from ledger import TransferRequest, TransferResult
from node.trading import store
from node.trading.core import Trading
from node.trading.machine import OrderEvent
from node.trading.records import Order

C = TypeVar("C")
R = TypeVar("R")
MAX_GROUP = 64  # writes per transaction at most


@dataclass
class _Waiting(Generic[C, R]):
    call: C
    done: asyncio.Future[R]


class GroupWriter(Generic[C, R]):
    """Calls of `write_group(engine, calls)` (one result or error per call, in one transaction)
    grouped as described above."""

    def __init__(
        self, trading: Trading, write_group: Callable[[Engine, Sequence[C]], Sequence[R | Exception]]
    ) -> None:
        self.trading = trading
        self.write_group = write_group
        self._waiting: list[_Waiting[C, R]] = []
        self._writer: asyncio.Task[None] | None = None
        self.transactions = 0
        self.calls = 0

    async def submit(self, call: C) -> R:
        """Write `call` with the calls waiting with it; its result (or its error, raised)."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(call, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await done

    async def _write(self) -> None:
        while self._waiting:
            group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
            self.transactions += 1
            self.calls += len(group)
            try:
                results = await self.trading.db(self.write_group, [w.call for w in group])
            except Exception as exc:  # the whole transaction failed: each caller hears it
                for waiting in group:
                    if not waiting.done.done():
                        waiting.done.set_exception(exc)
                continue
            for waiting, result in zip(group, results, strict=True):
                if waiting.done.done():
                    continue
                if isinstance(result, Exception):
                    waiting.done.set_exception(result)
                else:
                    waiting.done.set_result(result)


_MoveCall = tuple[str, Any, OrderEvent, dict[str, Any]]
Held = tuple[Order | None, TransferResult | None]


class GroupedMoves:
    """Order moves, each with the ledger transfer `hold_of` makes of the moved order, grouped in
    durable transactions (see the module docstring)."""

    def __init__(self, trading: Trading, hold_of: Callable[[Order], TransferRequest | None]) -> None:
        def write(engine: Engine, moves: Sequence[_MoveCall]) -> list[Held | Exception]:
            written = store.move_orders_holding(engine, moves, hold_of, trading.clock())
            return [moved if isinstance(moved, Exception) else (moved, held) for moved, held in written]

        self.writer: GroupWriter[_MoveCall, Held] = GroupWriter(trading, write)

    async def move_holding(self, order: Order, event: OrderEvent, **values: Any) -> Held:
        """Move `order` from its state by `event`, writing `values`, and write the ledger transfer
        `hold_of` makes of the moved order with it, in a durable transaction shared with the moves
        waiting with it: the moved order (None if it moved meanwhile) and its transfer's result
        (None when it made none)."""
        return await self.writer.submit((order.id, order.state, event, values))
