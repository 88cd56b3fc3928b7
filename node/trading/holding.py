"""Order moves written with ledger transfers in one durable transaction, the ledger's head locked
first (every writer's first lock): one order's hold and its moves, or a group of orders' moves each
with the hold of what it owes its partner (node.trading.grouped shares those with placing)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection, Engine

import ledger
from ledger import TransferRequest, TransferResult
from node.db import write_transaction
from node.trading.errors import StateError
from node.trading.machine import OrderEvent, OrderState, order_transition
from node.trading.records import Order
from node.trading.store import move_order_in


def move_order_holding(
    engine: Engine,
    /,
    order_id: str,
    state: OrderState,
    transfers: Sequence[TransferRequest],
    steps: Sequence[tuple[OrderEvent, Mapping[str, Any]]],
    now_ts: int,
) -> tuple[list[TransferResult], Order | None]:
    """Write `transfers` to the ledger and move the order by `steps` in one durable transaction, the
    ledger's first (its head is every writer's first lock): the transfers' results and the moved
    order (None when it was not in `state` any more, or when a transfer was not stored: the
    transfers' outcome, a refusal included, is committed alone then)."""
    with write_transaction(engine) as conn:
        batch = ledger.submit_in(conn, transfers)
        moved = move_order_in(conn, order_id, state, steps, now_ts) if batch.ok else None
    batch.committed()
    return batch.results, moved


def move_orders_holding(
    engine: Engine,
    /,
    moves: Sequence[tuple[str, OrderState, OrderEvent, Mapping[str, Any]]],
    hold_of: Callable[[Order], TransferRequest | None],
    now_ts: int,
) -> list[tuple[Order | StateError | None, TransferResult | None]]:
    """Several orders' moves (`move_order` each: order id, state, event, values) and, for each order
    moved, the ledger transfer `hold_of` makes of the moved order, in one durable transaction (the
    ledger's head locked first, as every writer does). Per move: the moved order, None if it was
    not in its state any more, or the StateError refusing its event (checked before any statement,
    so the others go on); and its transfer's result (None when it made none)."""
    with write_transaction(engine) as conn:
        written, batch = move_orders_holding_in(conn, moves, hold_of, now_ts)
    batch.committed()
    return written


def move_orders_holding_in(
    conn: Connection,
    moves: Sequence[tuple[str, OrderState, OrderEvent, Mapping[str, Any]]],
    hold_of: Callable[[Order], TransferRequest | None],
    now_ts: int,
) -> tuple[list[tuple[Order | StateError | None, TransferResult | None]], ledger.JoinedBatch]:
    """`move_orders_holding` inside the caller's write transaction (the ledger's head locked first):
    its results, and the ledger batch to mark committed once the transaction has committed."""
    ledger.lock_in(conn)
    moved = _move_each_in(conn, moves, now_ts)
    holds = [(i, hold) for i, m in enumerate(moved) if isinstance(m, Order) and (hold := hold_of(m))]
    batch = ledger.submit_in(conn, [hold for _, hold in holds])
    results: list[TransferResult | None] = [None] * len(moved)
    for (i, _), result in zip(holds, batch.results, strict=True):
        results[i] = result
    return list(zip(moved, results, strict=True)), batch


def _move_each_in(
    conn: Connection, moves: Sequence[tuple[str, OrderState, OrderEvent, Mapping[str, Any]]], now_ts: int
) -> list[Order | StateError | None]:
    """`move_orders_holding`'s moves inside the caller's write transaction."""
    out: list[Order | StateError | None] = []
    for order_id, state, event, values in moves:
        try:
            order_transition(state, event)
        except StateError as exc:
            out.append(exc)
            continue
        out.append(move_order_in(conn, order_id, state, [(event, values)], now_ts))
    return out
