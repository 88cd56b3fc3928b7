"""Migrations partners bring to this node's pools (the destination side), as stored.

A partner that moves a running program here first buys the destination as a task order whose task
document names the migration (node.tasks.sold). The sold task is then held in `ordered` while the
partner drives its migration over the peer API (node.migration.peer_routes):

    ordered    the trade arrived; nothing exists yet
    prepared   the instance is created and the program deployed; it waits, stopped
    started    the instance was started from the moved state
    committed  the partner's cutover committed: the sold task is delivered (followed, metered) as
               any other from here on
    released   the partner gave the migration up: the instance is deleted, its order cancelled

The credential window (`not_before`, `expires`, UTC epoch s) and the files are fixed when the first
credential is issued, so asking again gives the same credential.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from node.db import write_transaction
from node.migration.tables import inbound_migrations_t as t

InboundState = Literal["ordered", "prepared", "started", "committed", "released"]
# States in which the sold task waits for the partner's cutover instead of being delivered.
HOLDING = frozenset({"ordered", "prepared", "started", "released"})


@dataclass(frozen=True)
class Inbound:
    """A row of `inbound_migrations`."""

    partner: str
    id: str
    trade_id: str
    state: InboundState
    instance_id: str | None
    files: list[str] | None
    not_before: int | None
    expires: int | None
    created_ms: int
    updated_ms: int


def _from_row(row: Any) -> Inbound:
    m = dict(row._mapping)
    m["files"] = None if m["files"] is None else json.loads(m["files"])
    return Inbound(**m)


def add_inbound(engine: Engine, partner: str, migration_id: str, trade_id: str, now_ms: int) -> Inbound:
    """Record that `partner`'s trade `trade_id` brings migration `migration_id` (idempotent)."""
    with write_transaction(engine) as conn:
        row = conn.execute(sa.select(t).where(t.c.trade_id == trade_id)).first()
        if row is None:
            conn.execute(
                sa.insert(t).values(
                    partner=partner,
                    id=migration_id,
                    trade_id=trade_id,
                    state="ordered",
                    created_ms=now_ms,
                    updated_ms=now_ms,
                )
            )
            row = conn.execute(sa.select(t).where(t.c.trade_id == trade_id)).one()
    return _from_row(row)


def get_inbound(engine: Engine, partner: str, migration_id: str) -> Inbound | None:
    """One inbound migration of `partner`, or None."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(t).where(t.c.partner == partner, t.c.id == migration_id)).first()
    return None if row is None else _from_row(row)


def inbound_of_trade(engine: Engine, trade_id: str) -> Inbound | None:
    """The inbound migration a sold trade brings, or None (a trade that is no migration)."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(t).where(t.c.trade_id == trade_id)).first()
    return None if row is None else _from_row(row)


def update_inbound(engine: Engine, /, partner: str, migration_id: str, now_ms: int, **values: Any) -> Inbound:
    """Write fields of an inbound migration; the row as written."""
    if "files" in values and values["files"] is not None:
        values["files"] = json.dumps(values["files"])
    with write_transaction(engine) as conn:
        where = (t.c.partner == partner, t.c.id == migration_id)
        conn.execute(sa.update(t).where(*where).values(updated_ms=now_ms, **values))
        return _from_row(conn.execute(sa.select(t).where(*where)).one())
