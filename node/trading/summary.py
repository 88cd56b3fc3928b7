"""Trading since a moment, summed in the database: orders placed here and sales to partners, their
count and amounts by currency, and what of them is settled (`GET /api/v1/trading/summary`)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from node.trading.tables import orders_t, sales_t


def _sums(engine: Engine, table: sa.Table, since_ts: int) -> dict[str, Any]:
    query = (
        sa.select(
            table.c.currency,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(table.c.amount), 0),
            sa.func.coalesce(sa.func.sum(table.c.settled_amount), 0),
            sa.func.coalesce(sa.func.sum(table.c.fee), 0),
        )
        .where(table.c.created_ts >= since_ts)
        .group_by(table.c.currency)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return {
        "count": sum(int(row[1]) for row in rows),
        "amount": {row[0]: int(row[2]) for row in rows},
        "settled": {row[0]: int(row[3]) for row in rows},
        "fees": {row[0]: int(row[4]) for row in rows},
    }


def trading_summary(engine: Engine, since_ts: int) -> dict[str, Any]:
    """Orders and sales created at or after `since_ts` (UTC seconds): count, amounts, settled, fees."""
    return {
        "since_ts": since_ts,
        "orders": _sums(engine, orders_t, since_ts),
        "sales": _sums(engine, sales_t, since_ts),
    }
