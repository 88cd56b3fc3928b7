"""One reading of the node's business from its database (the SQL edge of node.telemetry).

Every query is an aggregate or has a limit, so a reading costs the same with 100 or 100,000 orders
in rows returned (the database still scans what it groups): pools and partners are at most
`MAX_SERIES` each, migrations not yet ended at most `MAX_ACTIVE_MIGRATIONS` (the newest).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from connectors.contract import DataSource
from connectors.store import PLUGINS, SNAPSHOTS
from federation.tables import partners_t, received_t, sync_t
from node.migration.machine import FINAL as MIGRATION_FINAL
from node.migration.tables import migrations_t
from node.tasks.tables import tasks_t
from node.telemetry.readings import (
    MigrationReading,
    OfferCapacity,
    PartnerReading,
    PoolReading,
    Readings,
    SharedCapacity,
    TradeGroup,
    capacity,
)
from node.trading import reservations
from node.trading.tables import orders_t, sales_t

MAX_SERIES = 1000
MAX_ACTIVE_MIGRATIONS = 100


def read(engine: Engine, declared: Sequence[OfferCapacity], now_ts: float) -> Readings:
    """Everything the business metrics show, from the database at `now_ts`; `declared` are offers
    the config declares (used when the node has no pools)."""
    pools, offers, shared = _pools(engine)
    reserved = reservations.reserved(engine, int(now_ts)).by_offer
    with engine.connect() as conn:
        return Readings(
            taken_ts=now_ts,
            pools=pools,
            offers=offers if pools else list(declared),
            shared=shared,
            reserved=reserved,
            orders=_trades(conn, orders_t, sa.func.coalesce(orders_t.c.partner, "")),
            sales=_trades(conn, sales_t, sales_t.c.partner),
            partners=partner_links(conn),
            tasks={
                (str(k), str(s)): int(n)
                for k, s, n in conn.execute(_count_by(tasks_t.c.kind, tasks_t.c.state))
            },
            migrations={str(s): int(n) for s, n in conn.execute(_count_by(migrations_t.c.state))},
            active_migrations=_active_migrations(conn),
            migration_bytes_moved=_bytes_moved(conn),
        )


def pool_capacities(engine: Engine) -> list[tuple[str, int, int, str]]:
    """Each compute pool's units in use and in all, and their unit, from its latest snapshot."""
    pools, offers, shared = _pools(engine)
    return [(p.name, *capacity(p.name, offers, shared)) for p in pools]


def _count_by(*columns: sa.ColumnElement[Any]) -> sa.Select[Any]:
    return sa.select(*columns, sa.func.count()).group_by(*columns)


def _pools(engine: Engine) -> tuple[list[PoolReading], list[OfferCapacity], list[SharedCapacity]]:
    """Compute pools with their state and latest snapshot's capacity (one query, a join)."""
    query = (
        sa.select(PLUGINS.c.name, PLUGINS.c.state, SNAPSHOTS.c.fetched_ms, SNAPSHOTS.c.data_json)
        .select_from(PLUGINS.outerjoin(SNAPSHOTS, SNAPSHOTS.c.plugin == PLUGINS.c.name))
        .where(PLUGINS.c.kind == "compute")
        .order_by(PLUGINS.c.name)
        .limit(MAX_SERIES)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    pools: list[PoolReading] = []
    offers: list[OfferCapacity] = []
    shared: list[SharedCapacity] = []
    for name, state, fetched_ms, data_json in rows:
        data = None if data_json is None else DataSource.model_validate_json(data_json)
        cpu = {u.region_id: u.cpu_utilisation_permille for u in data.usage} if data else {}
        pools.append(PoolReading(name, state, None if fetched_ms is None else int(fetched_ms), cpu))
        if data is None:
            continue
        offers.extend(
            OfferCapacity(name, c.region_id, f"{name}/{c.region_id}/{c.flavor_id}", c.free, c.total)
            for c in data.capacity
        )
        shared.extend(SharedCapacity(name, s.region_id, s.unit, s.free, s.total) for s in data.shared)
    return pools, offers, shared


def _trades(conn: Connection, table: sa.Table, partner: sa.ColumnElement[Any]) -> list[TradeGroup]:
    """Orders or sales grouped by partner, state and currency: count, amount, settled amount."""
    c = table.c
    query = sa.select(
        partner,
        c.state,
        c.currency,
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(c.amount), 0),
        sa.func.coalesce(sa.func.sum(c.settled_amount), 0),
    ).group_by(partner, c.state, c.currency)
    return [
        TradeGroup(str(p), str(s), str(cur), int(n), int(amount), int(settled))
        for p, s, cur, n, amount, settled in conn.execute(query)
    ]


def partner_links(conn: Connection) -> list[PartnerReading]:
    """Pinned partners with their sync state and the head of the catalog held from each (plain
    columns only: no partner record is parsed, so 100 partners cost one light query each)."""
    names = [
        row[0]
        for row in conn.execute(sa.select(partners_t.c.name).order_by(partners_t.c.name).limit(MAX_SERIES))
    ]
    wanted = set(names)
    states = {
        row.partner: row
        for row in conn.execute(
            sa.select(
                sync_t.c.partner,
                sync_t.c.status,
                sync_t.c.failures,
                sync_t.c.last_success_ts,
                sync_t.c.last_error,
            )
        )
        if row.partner in wanted
    }
    catalogs = {
        row.partner: row
        for row in conn.execute(
            sa.select(
                received_t.c.partner, received_t.c.received_ts, received_t.c.offer_count, received_t.c.version
            )
        )
        if row.partner in wanted
    }
    result = []
    for name in names:
        state, catalog = states.get(name), catalogs.get(name)
        result.append(
            PartnerReading(
                name=name,
                link=str(state.status) if state is not None else "never",
                failures=int(state.failures or 0) if state is not None else 0,
                catalog_received_ts=None if catalog is None else int(catalog.received_ts),
                last_success_ts=None
                if state is None or state.last_success_ts is None
                else int(state.last_success_ts),
                catalog_offers=None if catalog is None else int(catalog.offer_count),
                catalog_version=None if catalog is None else int(catalog.version),
                last_error=None if state is None else state.last_error,
            )
        )
    return result


def _json_int(conn: Connection, column: sa.ColumnElement[Any], key: str) -> sa.ColumnElement[Any]:
    """An integer field of a JSON object stored as text, extracted in SQL."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql  # loaded only where a PostgreSQL URL is used

        return sa.cast(sa.cast(column, postgresql.JSONB)[key].astext, sa.BigInteger)
    return sa.func.json_extract(column, f"$.{key}")


def _active_migrations(conn: Connection) -> list[MigrationReading]:
    """The newest migrations not yet ended, with their transfer's progress."""
    m = migrations_t.c
    fields = ("bytes_done", "bytes_total", "rate_bytes_per_s", "eta_ms")
    query = (
        sa.select(m.id, m.state, *(_json_int(conn, m.progress, key) for key in fields))
        .where(m.state.not_in(sorted(MIGRATION_FINAL)))
        .order_by(m.updated_ms.desc())
        .limit(MAX_ACTIVE_MIGRATIONS)
    )
    return [
        MigrationReading(
            str(i), str(s), int(done or 0), int(total or 0), int(rate or 0), None if eta is None else int(eta)
        )
        for i, s, done, total, rate, eta in conn.execute(query)
    ]


def _bytes_moved(conn: Connection) -> int:
    """Bytes transferred by every migration (the sum of their transfers' progress)."""
    total = conn.execute(
        sa.select(sa.func.sum(_json_int(conn, migrations_t.c.progress, "bytes_done")))
    ).scalar()
    return int(total or 0)
