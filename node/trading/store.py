"""Trading tables (migration node_0002): orders, sales and capacity reservations.

State changes are compare-and-set on the current state (`move_order`, `move_sale`), so of two
replicas or two requests acting on one order, exactly one moves it. Capacity is reserved under a
per-offer lock (SQLite: the write transaction's `BEGIN IMMEDIATE`; PostgreSQL: a transaction-scoped
advisory lock on the offer id), so two trades never both take the last free units.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from node.db import write_transaction
from node.trading.machine import ORDER_FINAL, ORDER_RESTING, SALE_OPEN, order_transition, sale_transition

_md = sa.MetaData()
_BIG, _TEXT, _BYTES = sa.BigInteger, sa.Text, sa.LargeBinary
orders_t = sa.Table(
    "trading_orders",
    _md,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("consumer", sa.String(63)),
    sa.Column("offer_id", sa.String(200)),
    sa.Column("source", sa.String(80)),
    sa.Column("partner", sa.String(63)),
    sa.Column("pool", sa.String(200)),
    *(sa.Column(name, _BIG) for name in ("units", "hours", "price_per_unit_hour")),
    sa.Column("currency", sa.String(16)),
    sa.Column("amount", _BIG),
    sa.Column("fee", _BIG),
    sa.Column("state", sa.String(20)),
    sa.Column("reason", _TEXT),
    sa.Column("request_sha256", sa.String(64)),
    sa.Column("trade_request", _BYTES),
    sa.Column("receipt", _BYTES),
    sa.Column("receipt_sha256", sa.String(64)),
    sa.Column("partner_hold_expires_ts", _BIG),
    sa.Column("used_hours", _BIG),
    sa.Column("settled_amount", _BIG),
    sa.Column("settlement", _BYTES),
    sa.Column("settlement_record", _BYTES),
    sa.Column("settlement_sha256", sa.String(64)),
    sa.Column("notify_partner", sa.Boolean),
    *(sa.Column(name, _BIG) for name in ("hold_expires_ts", "created_ts", "updated_ts")),
)
sales_t = sa.Table(
    "trading_sales",
    _md,
    sa.Column("partner", sa.String(63), primary_key=True),
    sa.Column("trade_id", sa.String(100), primary_key=True),
    sa.Column("offer_id", sa.String(200)),
    sa.Column("pool", sa.String(200)),
    *(sa.Column(name, _BIG) for name in ("units", "hours", "price_per_unit_hour")),
    sa.Column("currency", sa.String(16)),
    sa.Column("amount", _BIG),
    sa.Column("fee", _BIG),
    sa.Column("state", sa.String(20)),
    sa.Column("reason", _TEXT),
    sa.Column("request_sha256", sa.String(64)),
    sa.Column("acceptance", _BYTES),
    sa.Column("receipt_sha256", sa.String(64)),
    sa.Column("settlement_sha256", sa.String(64)),
    sa.Column("settlement_receipt", _BYTES),
    sa.Column("record_sha256", sa.String(64)),
    sa.Column("used_hours", _BIG),
    sa.Column("settled_amount", _BIG),
    *(sa.Column(name, _BIG) for name in ("hold_expires_ts", "created_ts", "updated_ts")),
)
reservations_t = sa.Table(
    "trading_reservations",
    _md,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("offer_id", sa.String(200)),
    sa.Column("units", _BIG),
    sa.Column("expires_ts", _BIG),
    sa.Column("released_ts", _BIG),
    sa.Column("created_ts", _BIG),
)


@dataclass(frozen=True)
class Order:
    """A row of `trading_orders`."""

    id: str
    consumer: str
    offer_id: str
    source: str
    partner: str | None
    pool: str
    units: int
    hours: int
    price_per_unit_hour: int
    currency: str
    amount: int
    fee: int
    state: str
    reason: str | None
    request_sha256: str
    trade_request: bytes | None
    receipt: bytes | None
    receipt_sha256: str | None
    partner_hold_expires_ts: int | None
    used_hours: int | None
    settled_amount: int | None
    settlement: bytes | None
    settlement_record: bytes | None
    settlement_sha256: str | None
    notify_partner: bool
    hold_expires_ts: int
    created_ts: int
    updated_ts: int

    def view(self) -> dict[str, Any]:
        """What the API shows of an order (documents by their digests only)."""
        return {k: v for k, v in asdict(self).items() if k not in ORDER_DOCUMENTS}


@dataclass(frozen=True)
class Sale:
    """A row of `trading_sales`."""

    partner: str
    trade_id: str
    offer_id: str | None
    pool: str | None
    units: int
    hours: int
    price_per_unit_hour: int
    currency: str
    amount: int
    fee: int
    state: str
    reason: str | None
    request_sha256: str | None
    acceptance: bytes | None
    receipt_sha256: str | None
    settlement_sha256: str | None
    settlement_receipt: bytes | None
    record_sha256: str | None
    used_hours: int | None
    settled_amount: int | None
    hold_expires_ts: int
    created_ts: int
    updated_ts: int

    @property
    def reservation_id(self) -> str:
        """The id of this sale's capacity reservation."""
        return sale_reservation(self.partner, self.trade_id)

    def view(self) -> dict[str, Any]:
        """What the API shows of a sale (documents by their digests only)."""
        return {k: v for k, v in asdict(self).items() if k not in ("acceptance", "settlement_receipt")}


def order_reservation(order_id: str) -> str:
    """The reservation id of a local order."""
    return f"order:{order_id}"


def sale_reservation(partner: str, trade_id: str) -> str:
    """The reservation id of a sale."""
    return f"sale:{partner}:{trade_id}"


ORDER_DOCUMENTS = ("trade_request", "receipt", "settlement", "settlement_record")
_ORDER_FIELDS = tuple(f.name for f in fields(Order))
_SALE_FIELDS = tuple(f.name for f in fields(Sale))


def _values(row: Any, names: tuple[str, ...]) -> dict[str, Any]:
    m = row._mapping
    # psycopg returns bytea as memoryview; documents are kept as bytes.
    return {name: bytes(m[name]) if isinstance(m[name], memoryview) else m[name] for name in names}


def _order(row: Any) -> Order:
    return Order(**_values(row, _ORDER_FIELDS))


def _sale(row: Any) -> Sale:
    return Sale(**_values(row, _SALE_FIELDS))


# --- orders ----------------------------------------------------------------------------------------


def insert_order(engine: Engine, values: dict[str, Any]) -> tuple[bool, Order]:
    """Insert a new order; (False, the stored one) when its id exists already."""
    with write_transaction(engine) as conn:
        row = conn.execute(sa.select(orders_t).where(orders_t.c.id == values["id"])).first()
        if row is not None:
            return False, _order(row)
        conn.execute(sa.insert(orders_t).values(**values))
        return True, _order(conn.execute(sa.select(orders_t).where(orders_t.c.id == values["id"])).one())


def get_order(engine: Engine, order_id: str) -> Order | None:
    """One order, or None."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(orders_t).where(orders_t.c.id == order_id)).first()
    return None if row is None else _order(row)


def list_orders(engine: Engine, consumer: str | None = None, limit: int = 100) -> list[Order]:
    """The newest orders first (of one consumer, if given)."""
    query = sa.select(orders_t).order_by(orders_t.c.created_ts.desc(), orders_t.c.id).limit(limit)
    if consumer is not None:
        query = query.where(orders_t.c.consumer == consumer)
    with engine.connect() as conn:
        return [_order(row) for row in conn.execute(query)]


def release(conn: Connection, reservation_id: str, now_ts: int) -> None:
    """Release a capacity reservation (no-op if it is gone or released)."""
    conn.execute(
        sa.update(reservations_t)
        .where(reservations_t.c.id == reservation_id, reservations_t.c.released_ts.is_(None))
        .values(released_ts=now_ts)
    )


def move_order(
    engine: Engine,
    order_id: str,
    state: str,
    event: str,
    now_ts: int,
    *,
    release_capacity: bool = False,
    **values: Any,
) -> Order | None:
    """Move an order that is in `state` by `event` (writing `values` with it); None if it was not in
    `state` any more (someone else moved it first)."""
    after = order_transition(state, event)
    with write_transaction(engine) as conn:
        moved = conn.execute(
            sa.update(orders_t)
            .where(orders_t.c.id == order_id, orders_t.c.state == state)
            .values(state=after, updated_ts=now_ts, **values)
        )
        if moved.rowcount != 1:
            return None
        if release_capacity or after in ORDER_FINAL:
            release(conn, order_reservation(order_id), now_ts)
        return _order(conn.execute(sa.select(orders_t).where(orders_t.c.id == order_id)).one())


def update_order(engine: Engine, order_id: str, now_ts: int, **values: Any) -> None:
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
        return [_order(row) for row in conn.execute(query)]


def orders_to_notify(engine: Engine, limit: int = 100) -> list[Order]:
    """Cancelled orders whose seller has not acknowledged the cancel yet."""
    query = (
        sa.select(orders_t)
        .where(orders_t.c.notify_partner.is_(True))
        .order_by(orders_t.c.updated_ts)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [_order(row) for row in conn.execute(query)]


# --- capacity --------------------------------------------------------------------------------------


def _lock_offer(conn: Connection, offer_id: str) -> None:
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(
            hashlib.sha256(b"cpnode-offer:" + offer_id.encode()).digest()[:8], "big", signed=True
        )
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _reserve(
    conn: Connection,
    reservation_id: str,
    offer_id: str,
    units: int,
    free_units: int,
    expires_ts: int,
    now_ts: int,
) -> bool:
    _lock_offer(conn, offer_id)
    existing = conn.execute(sa.select(reservations_t).where(reservations_t.c.id == reservation_id)).first()
    if existing is not None:
        return existing.released_ts is None
    taken = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(reservations_t.c.units), 0)).where(
            reservations_t.c.offer_id == offer_id,
            reservations_t.c.released_ts.is_(None),
            reservations_t.c.expires_ts > now_ts,
        )
    ).scalar_one()
    if int(taken) + units > free_units:
        return False
    conn.execute(
        sa.insert(reservations_t).values(
            id=reservation_id,
            offer_id=offer_id,
            units=units,
            expires_ts=expires_ts,
            released_ts=None,
            created_ts=now_ts,
        )
    )
    return True


def reserve(
    engine: Engine,
    reservation_id: str,
    offer_id: str,
    units: int,
    free_units: int,
    expires_ts: int,
    now_ts: int,
) -> bool:
    """Reserve `units` of an offer whose pools report `free_units`, unless other open reservations
    leave fewer; idempotent by `reservation_id` (True again while it is held)."""
    with write_transaction(engine) as conn:
        return _reserve(conn, reservation_id, offer_id, units, free_units, expires_ts, now_ts)


def reserved_units(engine: Engine, now_ts: int) -> dict[str, int]:
    """Units held by open, unexpired reservations, by offer id."""
    query = (
        sa.select(reservations_t.c.offer_id, sa.func.sum(reservations_t.c.units))
        .where(reservations_t.c.released_ts.is_(None), reservations_t.c.expires_ts > now_ts)
        .group_by(reservations_t.c.offer_id)
    )
    with engine.connect() as conn:
        return {offer_id: int(units) for offer_id, units in conn.execute(query)}


# --- sales -----------------------------------------------------------------------------------------


def _get_sale(conn: Connection, partner: str, trade_id: str) -> Sale | None:
    row = conn.execute(
        sa.select(sales_t).where(sales_t.c.partner == partner, sales_t.c.trade_id == trade_id)
    ).first()
    return None if row is None else _sale(row)


def get_sale(engine: Engine, partner: str, trade_id: str) -> Sale | None:
    """One sale, or None."""
    with engine.connect() as conn:
        return _get_sale(conn, partner, trade_id)


def open_sale(engine: Engine, values: dict[str, Any], free_units: int, now_ts: int) -> tuple[str, Sale]:
    """Record a new sale with its capacity reservation in one transaction.

    ("opened", sale) when reserved; ("exists", stored sale) when the trade id is known already;
    ("no_capacity", sale) when too few units are free (the sale is stored as refused)."""
    with write_transaction(engine) as conn:
        stored = _get_sale(conn, values["partner"], values["trade_id"])
        if stored is not None:
            return "exists", stored
        reserved = _reserve(
            conn,
            sale_reservation(values["partner"], values["trade_id"]),
            values["offer_id"],
            values["units"],
            free_units,
            values["hold_expires_ts"],
            now_ts,
        )
        state = "open" if reserved else "refused"
        reason = None if reserved else "not_enough_free_units"
        conn.execute(sa.insert(sales_t).values(**values, state=state, reason=reason))
        sale = _get_sale(conn, values["partner"], values["trade_id"])
        assert sale is not None
        return ("opened" if reserved else "no_capacity"), sale


def cancel_unknown_sale(engine: Engine, values: dict[str, Any]) -> Sale:
    """Record a cancel for a trade never seen (state `cancelled`), or return the sale if it exists."""
    with write_transaction(engine) as conn:
        stored = _get_sale(conn, values["partner"], values["trade_id"])
        if stored is None:
            conn.execute(sa.insert(sales_t).values(**values, state="cancelled"))
            stored = _get_sale(conn, values["partner"], values["trade_id"])
            assert stored is not None
        return stored


def move_sale(engine: Engine, sale: Sale, event: str, now_ts: int, **values: Any) -> Sale | None:
    """Move a sale from its current state by `event`; None if it moved meanwhile. Leaving the open
    states releases its capacity reservation in the same transaction."""
    after = sale_transition(sale.state, event)
    with write_transaction(engine) as conn:
        moved = conn.execute(
            sa.update(sales_t)
            .where(
                sales_t.c.partner == sale.partner,
                sales_t.c.trade_id == sale.trade_id,
                sales_t.c.state == sale.state,
            )
            .values(state=after, updated_ts=now_ts, **values)
        )
        if moved.rowcount != 1:
            return None
        if after not in SALE_OPEN:
            release(conn, sale.reservation_id, now_ts)
        return _get_sale(conn, sale.partner, sale.trade_id)


def sales_past_deadline(engine: Engine, now_ts: int, limit: int = 100) -> list[Sale]:
    """Accepted sales whose holds have reached their deadline."""
    query = (
        sa.select(sales_t)
        .where(sales_t.c.state == "accepted", sales_t.c.hold_expires_ts <= now_ts)
        .order_by(sales_t.c.hold_expires_ts)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [_sale(row) for row in conn.execute(query)]


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
        return [_sale(row) for row in conn.execute(query)]


def list_sales(engine: Engine, partner: str | None = None, limit: int = 100) -> list[Sale]:
    """The newest sales first (to one partner, if given)."""
    query = sa.select(sales_t).order_by(sales_t.c.created_ts.desc(), sales_t.c.trade_id).limit(limit)
    if partner is not None:
        query = query.where(sales_t.c.partner == partner)
    with engine.connect() as conn:
        return [_sale(row) for row in conn.execute(query)]
