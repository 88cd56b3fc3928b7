"""Trading storage: orders and sales (tables in node.trading.tables; their capacity reservations
in node.trading.reservations, written in the same transactions).

State changes are compare-and-set on the current state (`move_order`, `move_sale`), so of two
replicas or two requests acting on one order, exactly one moves it; an order or a sale leaving its
open states releases its reservation in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dbprep import Prepared
from node.db import write_transaction
from node.offers import CatalogOffer
from node.trading.machine import (
    ORDER_FINAL,
    ORDER_RESTING,
    ORDER_START,
    SALE_OPEN,
    SALE_START,
    OrderEvent,
    OrderState,
    SaleEvent,
    order_transition,
    sale_transition,
)
from node.trading.records import ORDER_DOCUMENTS, Order, Sale, order_reservation, sale_reservation
from node.trading.reservations import Wanted, release, reserve_many_in
from node.trading.tables import ORDER_FIELDS, order_from_row, orders_t, sale_from_row, sales_t

__all__ = ["ORDER_DOCUMENTS", "Order", "Sale", "order_reservation", "sale_reservation"]


# The statements of an order's and a sale's path, built once with bind parameters (`p_*`; the
# values a call writes are passed as parameters too) and run on the driver's cursor (dbprep).
_ID: sa.BindParameter[str] = sa.bindparam("p_id")
_STATE: sa.BindParameter[str] = sa.bindparam("p_state")
_PARTNER: sa.BindParameter[str] = sa.bindparam("p_partner")
_TRADE: sa.BindParameter[str] = sa.bindparam("p_trade")
_ORDER = Prepared(sa.select(orders_t).where(orders_t.c.id == _ID))
_INSERT_ORDER = Prepared(sa.insert(orders_t).returning(orders_t))
_INSERT_ORDERS = Prepared(sa.insert(orders_t))
_EMPTY_ORDER: dict[str, Any] = {**dict.fromkeys(orders_t.c.keys()), "notify_partner": False}
_MOVE_ORDER = Prepared(
    sa.update(orders_t).where(orders_t.c.id == _ID, orders_t.c.state == _STATE).returning(orders_t)
)
_SALE = Prepared(sa.select(sales_t).where(sales_t.c.partner == _PARTNER, sales_t.c.trade_id == _TRADE))
_INSERT_SALES = Prepared(sa.insert(sales_t))
# Rendered once per number of trade ids (dbprep).
_SALES_OF = Prepared(
    sa.select(sales_t).where(
        sales_t.c.partner == _PARTNER, sales_t.c.trade_id.in_(sa.bindparam("p_trades", expanding=True))
    )
)
_EMPTY_SALE: dict[str, Any] = dict.fromkeys(sales_t.c.keys())
# The listings, newest first, one statement per set of filters: `(by consumer, by state)` for
# orders, `by partner` for sales (read by consumers and the console again and again).
_LIMIT: sa.BindParameter[int] = sa.bindparam("p_limit")
_ORDERS_NEWEST = sa.select(orders_t).order_by(orders_t.c.created_ts.desc(), orders_t.c.id).limit(_LIMIT)
_LIST_ORDERS = {
    (consumer, state): Prepared(
        _ORDERS_NEWEST.where(
            *([orders_t.c.consumer == sa.bindparam("p_consumer")] if consumer else []),
            *([orders_t.c.state == _STATE] if state else []),
        )
    )
    for consumer in (False, True)
    for state in (False, True)
}
_SALES_NEWEST = sa.select(sales_t).order_by(sales_t.c.created_ts.desc(), sales_t.c.trade_id).limit(_LIMIT)
_LIST_SALES = {
    False: Prepared(_SALES_NEWEST),
    True: Prepared(_SALES_NEWEST.where(sales_t.c.partner == _PARTNER)),
}
_MOVE_SALE = Prepared(
    sa.update(sales_t)
    .where(sales_t.c.partner == _PARTNER, sales_t.c.trade_id == _TRADE, sales_t.c.state == _STATE)
    .returning(sales_t)
)


# --- orders ----------------------------------------------------------------------------------------


def insert_order(engine: Engine, values: dict[str, Any], *, lazy: bool = False) -> tuple[bool, Order]:
    """Insert a new order (state: where `place` leads); (False, the stored one) when its id exists.
    `lazy`: a commit that need not reach the disk (node.db.engine `LAZY_COMMIT_OPTION`)."""
    with write_transaction(engine, lazy=lazy) as conn:
        found = get_order_in(conn, values["id"])
        return (False, found) if found is not None else (True, insert_new_order_in(conn, values))


def insert_new_order_in(conn: Connection, values: dict[str, Any]) -> Order:
    """Insert an order whose id the caller's write transaction found free (`get_order_in`)."""
    state = order_transition(ORDER_START, "place")
    return order_from_row(_INSERT_ORDER.one(conn, {**values, "state": state}))


def insert_moved_order_in(
    conn: Connection,
    values: dict[str, Any],
    steps: Sequence[tuple[OrderEvent, Mapping[str, Any]]],
    now_ts: int,
) -> Order:
    """`insert_new_order_in` then `move_order_in` by `steps`, as one insert of the order where the
    steps lead (a step to a final state, which releases the order's reservation, as the two)."""
    after, written = _after_steps(order_transition(ORDER_START, "place"), steps)
    if after in ORDER_FINAL:
        created = insert_new_order_in(conn, values)
        moved = move_order_in(conn, created.id, created.state, steps, now_ts)
        assert moved is not None  # inserted in this transaction, in the state the steps start from
        return moved
    row = _INSERT_ORDER.one(conn, {**values, **written, "state": after, "updated_ts": now_ts})
    return order_from_row(row)


Placed = tuple[dict[str, Any], Sequence[tuple[OrderEvent, Mapping[str, Any]]], int]


def insert_moved_orders_in(conn: Connection, orders: Sequence[Placed]) -> list[Order]:
    """`insert_moved_order_in` for several orders, each (values, steps, time), their ids free and
    distinct: those whose steps stop short of a final state inserted with one statement."""
    out: list[Order] = []
    rows: list[dict[str, Any]] = []
    for values, steps, now_ts in orders:
        after, written = _after_steps(order_transition(ORDER_START, "place"), steps)
        if after in ORDER_FINAL:
            out.append(insert_moved_order_in(conn, values, steps, now_ts))
            continue
        row = {**_EMPTY_ORDER, **values, **written, "state": after, "updated_ts": now_ts}
        rows.append(row)
        out.append(order_from_row(row))
    _INSERT_ORDERS.many(conn, rows)
    return out


def draft_order(values: dict[str, Any]) -> Order:
    """The order `insert_new_order_in` stores for `values`, before it is stored (fields not given
    are empty, as the insert leaves them)."""
    fields = {**dict.fromkeys(ORDER_FIELDS), "notify_partner": False, **values}
    return Order(**{**fields, "state": order_transition(ORDER_START, "place")})


def get_order(engine: Engine, order_id: str) -> Order | None:
    """One order, or None."""
    with engine.connect() as conn:
        return get_order_in(conn, order_id)


def get_order_in(conn: Connection, order_id: str) -> Order | None:
    """`get_order` on a connection the caller holds."""
    row = _ORDER.first(conn, {"p_id": order_id})
    return None if row is None else order_from_row(row)


def list_orders(
    engine: Engine, consumer: str | None = None, limit: int = 100, state: str | None = None
) -> list[Order]:
    """The newest orders first (of one consumer, in one state, if given)."""
    params: dict[str, Any] = {"p_limit": limit}
    if consumer is not None:
        params["p_consumer"] = consumer
    if state is not None:
        params["p_state"] = state
    listing = _LIST_ORDERS[consumer is not None, state is not None]
    with engine.connect() as conn:
        return [order_from_row(row) for row in listing.rows(conn, params)]


def move_order(
    engine: Engine,
    /,
    order_id: str,
    state: OrderState,
    event: OrderEvent,
    now_ts: int,
    *,
    lazy: bool = False,
    **values: Any,
) -> Order | None:
    """Move an order that is in `state` by `event` (writing `values` with it); None if it was not in
    `state` any more (someone else moved it first). Reaching a final state releases its capacity.
    `lazy`: a commit that need not reach the disk (node.db.engine `LAZY_COMMIT_OPTION`)."""
    return move_order_steps(engine, order_id, state, [(event, values)], now_ts, lazy=lazy)


def move_order_steps(
    engine: Engine,
    /,
    order_id: str,
    state: OrderState,
    steps: Sequence[tuple[OrderEvent, Mapping[str, Any]]],
    now_ts: int,
    *,
    lazy: bool = False,
) -> Order | None:
    """Move an order that is in `state` by each event in turn (writing its values with it), all in
    one transaction; None if it was not in `state` any more. For a state whose action only computes
    what the next move writes, so running it at once is what a separate move would have done."""
    with write_transaction(engine, lazy=lazy) as conn:
        return move_order_in(conn, order_id, state, steps, now_ts)


def move_order_in(
    conn: Connection,
    order_id: str,
    state: OrderState,
    steps: Sequence[tuple[OrderEvent, Mapping[str, Any]]],
    now_ts: int,
) -> Order | None:
    """`move_order_steps` inside a write transaction the caller holds."""
    after, values = _after_steps(state, steps)
    # RETURNING (SQLite ≥ 3.35, PostgreSQL): the moved row without a second statement while the
    # write lock is held.
    params = {**values, "state": after, "updated_ts": now_ts, "p_id": order_id, "p_state": state}
    row = _MOVE_ORDER.first(conn, params)
    if row is None:
        return None
    if after in ORDER_FINAL:
        release(conn, order_reservation(order_id), now_ts)
    return order_from_row(row)


def _after_steps(
    state: OrderState, steps: Sequence[tuple[OrderEvent, Mapping[str, Any]]]
) -> tuple[OrderState, dict[str, Any]]:
    """Where `steps` lead from `state`, and the values they write together."""
    values: dict[str, Any] = {}
    for event, written in steps:
        state = order_transition(state, event)
        values.update(written)
    return state, values


def update_order(engine: Engine, /, order_id: str, now_ts: int, **values: Any) -> None:
    """Write fields of an order that are not its state."""
    with write_transaction(engine) as conn:
        conn.execute(sa.update(orders_t).where(orders_t.c.id == order_id).values(updated_ts=now_ts, **values))


def unfinished_orders(engine: Engine, untouched_since_ts: int, limit: int = 100) -> list[Order]:
    """Orders left between states (not resting) and not touched since `untouched_since_ts`."""
    query = (
        sa.select(orders_t)
        .where(orders_t.c.state.not_in(sorted(ORDER_RESTING)), orders_t.c.updated_ts <= untouched_since_ts)
        .order_by(orders_t.c.updated_ts)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [order_from_row(row) for row in conn.execute(query)]


def orders_to_notify(engine: Engine, limit: int = 100) -> list[Order]:
    """Cancelled orders whose seller has not acknowledged the cancel yet."""
    query = (
        sa.select(orders_t)
        .where(orders_t.c.notify_partner.is_(True))
        .order_by(orders_t.c.updated_ts)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [order_from_row(row) for row in conn.execute(query)]


# --- sales -----------------------------------------------------------------------------------------


def _get_sale(conn: Connection, partner: str, trade_id: str) -> Sale | None:
    row = _SALE.first(conn, {"p_partner": partner, "p_trade": trade_id})
    return None if row is None else sale_from_row(row)


def get_sale(engine: Engine, partner: str, trade_id: str) -> Sale | None:
    """One sale, or None."""
    with engine.connect() as conn:
        return _get_sale(conn, partner, trade_id)


def open_sale(
    engine: Engine, values: dict[str, Any], offer: CatalogOffer, now_ts: int, *, lazy: bool = False
) -> tuple[str, Sale]:
    """Record a new sale with its capacity reservation in one transaction (`lazy`: see `insert_order`).

    ("opened", sale) when reserved; ("exists", stored sale) when the trade id is known already;
    ("no_capacity", sale) when too few units are free (the sale is stored as refused)."""
    with write_transaction(engine, lazy=lazy) as conn:
        return open_sale_in(conn, values, offer, now_ts)


def open_sale_in(
    conn: Connection,
    values: dict[str, Any],
    offer: CatalogOffer,
    now_ts: int,
    hold: Callable[[Connection], bool] | None = None,
) -> tuple[str, Sale]:
    """`open_sale` inside a write transaction the caller holds (the trade claim's). `hold`: run once
    the capacity is reserved, before the sale is written (its ledger holds); when it returns True
    the sale is inserted already moved on by `held` (one statement, not an insert and an update)."""
    each = None if hold is None else (lambda conn, reserved: [hold(conn)] if reserved else [])
    [opened] = open_sales_in(conn, [NewSale(values, offer, now_ts)], each)
    return opened


@dataclass(frozen=True)
class NewSale:
    """A sale to open: its row's values, its offer as the pool reports it, and the time."""

    values: dict[str, Any]
    offer: CatalogOffer
    now_ts: int


def open_sales_in(
    conn: Connection,
    sales: Sequence[NewSale],
    hold: Callable[[Connection, list[int]], list[bool]] | None = None,
) -> list[tuple[str, Sale]]:
    """`open_sale_in` for several sales of one partner, exactly as one after another would open
    them, inside the caller's write transaction: one read of those already stored, their capacity
    reservations at once (`reserve_many_in`), `hold` called once with the indexes of the sales
    reserved (whether each of them is inserted moved on by `held`), and one insert.
    ("exists", sale) for a trade already stored (or opened earlier in `sales`)."""
    if not sales:
        return []
    partner = sales[0].values["partner"]
    if any(sale.values["partner"] != partner for sale in sales):
        raise ValueError("the sales opened together are one partner's")
    stored = _sales_of(conn, partner, [sale.values["trade_id"] for sale in sales])
    fresh: dict[int, NewSale] = {}  # the first sale of each trade not stored, by index
    seen = set(stored)
    for index, sale in enumerate(sales):
        if sale.values["trade_id"] not in seen:
            seen.add(sale.values["trade_id"])
            fresh[index] = sale
    wanted = [
        Wanted(
            sale_reservation(partner, sale.values["trade_id"]),
            sale.offer,
            sale.values["units"],
            sale.values["hold_expires_ts"],
            sale.now_ts,
        )
        for sale in fresh.values()
    ]
    reserved = dict(zip(fresh, reserve_many_in(conn, wanted), strict=True))
    held_ones = [index for index, ok in reserved.items() if ok]
    held = dict(zip(held_ones, hold(conn, held_ones), strict=True)) if hold and held_ones else {}
    rows = []
    for index, sale in fresh.items():
        state = sale_transition(SALE_START, "request" if reserved[index] else "no_capacity")
        if held.get(index):
            state = sale_transition(state, "held")
        reason = None if reserved[index] else "not_enough_free_units"
        row = {**_EMPTY_SALE, **sale.values, "state": state, "reason": reason}
        rows.append(row)
        stored[sale.values["trade_id"]] = sale_from_row(row)
    _INSERT_SALES.many(conn, rows)
    out = []
    for index, sale in enumerate(sales):
        opened = stored[sale.values["trade_id"]]
        if index not in fresh:
            out.append(("exists", opened))
        else:
            out.append(("opened" if reserved[index] else "no_capacity", opened))
    return out


def _sales_of(conn: Connection, partner: str, trade_ids: list[str]) -> dict[str, Sale]:
    """The stored sales of `partner` among `trade_ids`, by trade id."""
    rows = _SALES_OF.rows(conn, {"p_partner": partner, "p_trades": trade_ids})
    return {row["trade_id"]: sale_from_row(row) for row in rows}


def cancel_unknown_sale(engine: Engine, values: dict[str, Any]) -> Sale:
    """Record a cancel for a trade never seen (state `cancelled`), or return the sale if it exists."""
    with write_transaction(engine) as conn:
        stored = _get_sale(conn, values["partner"], values["trade_id"])
        if stored is None:
            state = sale_transition(SALE_START, "cancel")
            conn.execute(sa.insert(sales_t).values(**values, state=state))
            stored = _get_sale(conn, values["partner"], values["trade_id"])
            assert stored is not None
        return stored


def move_sale(
    engine: Engine, /, sale: Sale, event: SaleEvent, now_ts: int, *, lazy: bool = False, **values: Any
) -> Sale | None:
    """Move a sale from its current state by `event`; None if it moved meanwhile. Leaving the open
    states releases its capacity reservation in the same transaction (`lazy`: see `insert_order`)."""
    with write_transaction(engine, lazy=lazy) as conn:
        return move_sale_in(conn, sale, event, now_ts, **values)


def move_sale_in(
    conn: Connection, /, sale: Sale, event: SaleEvent, now_ts: int, **values: Any
) -> Sale | None:
    """`move_sale` inside a write transaction the caller holds (the one storing the trade's answer)."""
    after = sale_transition(sale.state, event)
    params = {**values, "state": after, "updated_ts": now_ts}
    keys = {"p_partner": sale.partner, "p_trade": sale.trade_id, "p_state": sale.state}
    # RETURNING: the moved row in the same statement, as `move_order_steps`.
    row = _MOVE_SALE.first(conn, {**params, **keys})
    if row is None:
        return None
    if after not in SALE_OPEN:
        release(conn, sale.reservation_id, now_ts)
    return sale_from_row(row)


def sales_past_deadline(engine: Engine, now_ts: int, limit: int = 100) -> list[Sale]:
    """Accepted sales whose holds have reached their deadline."""
    query = (
        sa.select(sales_t)
        .where(sales_t.c.state == "accepted", sales_t.c.hold_expires_ts <= now_ts)
        .order_by(sales_t.c.hold_expires_ts)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [sale_from_row(row) for row in conn.execute(query)]


def unfinished_sales(engine: Engine, untouched_since_ts: int, limit: int = 100) -> list[Sale]:
    """Sales left in `open`, `settling` or `voiding` and not touched since `untouched_since_ts`."""
    query = (
        sa.select(sales_t)
        .where(
            sales_t.c.state.in_(["open", "settling", "voiding"]), sales_t.c.updated_ts <= untouched_since_ts
        )
        .order_by(sales_t.c.updated_ts)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [sale_from_row(row) for row in conn.execute(query)]


def list_sales(engine: Engine, partner: str | None = None, limit: int = 100) -> list[Sale]:
    """The newest sales first (to one partner, if given)."""
    params: dict[str, Any] = (
        {"p_limit": limit} if partner is None else {"p_limit": limit, "p_partner": partner}
    )
    with engine.connect() as conn:
        return [sale_from_row(row) for row in _LIST_SALES[partner is not None].rows(conn, params)]
