"""Pools' utilisation over time (migration node_0017_console_reads): the scheduler's job samples each compute
pool's units in use and in all every `[metrics] pool_sample_every_s` and deletes samples older than
`pool_samples_keep_h`, so the console's chart has history whether or not anyone watched, and every
replica serves the same series. Times are UTC seconds."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from node.db.dialects import dialect_insert
from node.telemetry.queries import pool_capacities

MAX_POINTS = 20_000
"""Most samples one series read returns (newest kept); 48 h at one a minute is 2,880 per pool."""

_md = sa.MetaData()
pool_samples_t = sa.Table(
    "telemetry_pool_samples",
    _md,
    sa.Column("pool", sa.String(128), primary_key=True),
    sa.Column("ts", sa.BigInteger, primary_key=True),
    sa.Column("used", sa.BigInteger, nullable=False),
    sa.Column("total", sa.BigInteger, nullable=False),
    sa.Column("unit", sa.String(32), nullable=False),
)


def take_sample(engine: Engine, now_ts: int, keep_s: int) -> int:
    """Record every compute pool's use at `now_ts` (once per pool and second) and delete samples
    older than `keep_s`; how many pools were sampled."""
    rows = [
        {"pool": name, "ts": now_ts, "used": used, "total": total, "unit": unit[:32]}
        for name, used, total, unit in pool_capacities(engine)
    ]
    with engine.begin() as conn:
        if rows:
            conn.execute(dialect_insert(conn, pool_samples_t).values(rows).on_conflict_do_nothing())
        conn.execute(sa.delete(pool_samples_t).where(pool_samples_t.c.ts < now_ts - keep_s))
    return len(rows)


def series(engine: Engine, since_ts: int, pool: str | None = None) -> dict[str, dict[str, Any]]:
    """Each pool's samples since `since_ts`, oldest first: `{pool: {"unit", "points": [[ts, used,
    total], ...]}}` (at most `MAX_POINTS` samples in all, the newest)."""
    query = (
        sa.select(pool_samples_t)
        .where(pool_samples_t.c.ts >= since_ts)
        .order_by(pool_samples_t.c.ts.desc())
        .limit(MAX_POINTS)
    )
    if pool is not None:
        query = query.where(pool_samples_t.c.pool == pool)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    found: dict[str, dict[str, Any]] = {}
    for row in reversed(rows):
        entry = found.setdefault(row.pool, {"unit": row.unit, "points": []})
        entry["points"].append([int(row.ts), int(row.used), int(row.total)])
    return found
