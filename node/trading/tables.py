"""Trading tables (migrations node_0002 to node_0004, node_0006, node_0008): orders placed here, sales to partners,
capacity reservations and consumers' API tokens, and their rows as records (node.trading.records)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import sqlalchemy as sa

from dbprep import columns
from node.trading.machine import ORDER_STATES, SALE_STATES
from node.trading.records import Order, Sale

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
    sa.Column("used_s", _BIG),
    sa.Column("settled_amount", _BIG),
    sa.Column("settlement", _BYTES),
    sa.Column("settlement_record", _BYTES),
    sa.Column("settlement_sha256", sa.String(64)),
    sa.Column("notify_partner", sa.Boolean),
    sa.Column("task", _BYTES),
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
    sa.Column("used_s", _BIG),
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
    # The pool region whose shared capacity the offer draws on, and how much of it (node_0004).
    sa.Column("capacity_group", sa.String(200)),
    sa.Column("group_units", _BIG),
)
# A consumer's API tokens: only the SHA-256 of each secret is stored. Times are UTC milliseconds.
consumer_tokens_t = sa.Table(
    "trading_consumer_tokens",
    _md,
    sa.Column("token_id", sa.String(16), primary_key=True),
    sa.Column("consumer", sa.String(63)),
    sa.Column("secret_sha256", sa.String(64)),
    sa.Column("created_ts", _BIG),
    sa.Column("revoked_ts", _BIG),
)


ORDER_FIELDS = tuple(f.name for f in fields(Order))
_SALE_FIELDS = tuple(f.name for f in fields(Sale))


def row_values(row: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The named columns of a row (a SQLAlchemy row, or a dict from `dbprep`)."""
    m = columns(row)
    # psycopg returns bytea as memoryview; documents are kept as bytes.
    return {name: bytes(m[name]) if isinstance(m[name], memoryview) else m[name] for name in names}


def order_from_row(row: Any) -> Order:
    """An order from a `trading_orders` row (ValueError for a state the order machine lacks)."""
    values = row_values(row, ORDER_FIELDS)
    if values["state"] not in ORDER_STATES:
        raise ValueError(f"order {values['id']} has unknown state {values['state']!r}")
    return Order(**values)


def sale_from_row(row: Any) -> Sale:
    """A sale from a `trading_sales` row (ValueError for a state the sale machine lacks)."""
    values = row_values(row, _SALE_FIELDS)
    if values["state"] not in SALE_STATES:
        raise ValueError(f"sale {values['trade_id']} has unknown state {values['state']!r}")
    return Sale(**values)
