"""Migration storage (tables in node.migration.tables).

A state change is a compare-and-set on the current state (`move_migration`), written together with
its line in the history, so of two replicas or two requests acting on one migration exactly one
moves it. Every write bumps `version`, which event streams follow. Fields that must not be lost
whatever the state became meanwhile (what a step created: an instance, a path, a job) are written
by `update_migration` without a state guard; progress is written only while the state is still the
one the writer works in (`only_in`), which is how a long step learns that it was cancelled.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from node.db import write_transaction
from node.migration.errors import MigrationConflict
from node.migration.machine import RESTING, START, MigrationEvent, MigrationState, next_state
from node.migration.records import Migration
from node.migration.tables import encode, migration_events_t, migration_from_row, migrations_t

# What a repeated request with the same id must match to be the same migration.
REQUEST_FIELDS = ("source_pool", "source_instance", "task_id", "destination_pool", "bandwidth_mbps")


def _select(migration_id: str) -> sa.Select[Any]:
    return sa.select(migrations_t).where(migrations_t.c.id == migration_id)


def insert_migration(engine: Engine, values: dict[str, Any], now_ms: int) -> tuple[bool, Migration]:
    """Store a new migration in the start state: (True, it); (False, the stored one) when one with
    this id was asked for the same way; MigrationConflict when it was asked for differently."""
    with write_transaction(engine) as conn:
        row = conn.execute(_select(values["id"])).first()
        if row is not None:
            stored = migration_from_row(row)
            if any(getattr(stored, name) != values.get(name) for name in REQUEST_FIELDS if name in values):
                raise MigrationConflict(
                    f"migration {stored.id} exists and was asked for differently", code="migration_exists"
                )
            return False, stored
        defaults: dict[str, Any] = {
            "path_reprovisions": 0,
            "transfer_attempts": 0,
            "transfer_resumes": 0,
            "attempts": 0,
            "version": 1,
            "undo": [],
        }
        row_values = encode({**defaults, **values})
        conn.execute(
            sa.insert(migrations_t).values(**row_values, state=START, created_ms=now_ms, updated_ms=now_ms)
        )
        conn.execute(
            sa.insert(migration_events_t).values(
                migration_id=values["id"],
                at_ms=now_ms,
                from_state="",
                event="request",
                to_state=START,
                detail=values.get("reason") or "",
            )
        )
        return True, migration_from_row(conn.execute(_select(values["id"])).one())


def get_migration(engine: Engine, migration_id: str) -> Migration | None:
    """One migration, or None."""
    with engine.connect() as conn:
        row = conn.execute(_select(migration_id)).first()
    return None if row is None else migration_from_row(row)


def list_migrations(engine: Engine, limit: int = 100) -> list[Migration]:
    """The newest migrations first."""
    query = sa.select(migrations_t).order_by(migrations_t.c.created_ms.desc(), migrations_t.c.id).limit(limit)
    with engine.connect() as conn:
        return [migration_from_row(row) for row in conn.execute(query)]


def unfinished_migrations(engine: Engine, limit: int = 500) -> list[Migration]:
    """Migrations with work left (not resting), oldest change first."""
    query = (
        sa.select(migrations_t)
        .where(migrations_t.c.state.not_in(sorted(RESTING)))
        .order_by(migrations_t.c.updated_ms)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [migration_from_row(row) for row in conn.execute(query)]


def move_migration(
    engine: Engine,
    /,
    migration_id: str,
    state: MigrationState,
    event: MigrationEvent,
    now_ms: int,
    detail: str = "",
    **values: Any,
) -> Migration | None:
    """Move a migration that is in `state` by `event`, writing `values` with it and a line of history;
    None if it was not in `state` any more (someone else moved it first). A move starts the new
    state's tries afresh (`attempts` = 0)."""
    after = next_state(state, event)
    with write_transaction(engine) as conn:
        moved = conn.execute(
            sa.update(migrations_t)
            .where(migrations_t.c.id == migration_id, migrations_t.c.state == state)
            .values(
                state=after,
                updated_ms=now_ms,
                version=migrations_t.c.version + 1,
                **encode({"attempts": 0, **values}),
            )
        )
        if moved.rowcount != 1:
            return None
        conn.execute(
            sa.insert(migration_events_t).values(
                migration_id=migration_id,
                at_ms=now_ms,
                from_state=state,
                event=event,
                to_state=after,
                detail=detail[:2000],
            )
        )
        return migration_from_row(conn.execute(_select(migration_id)).one())


def update_migration(
    engine: Engine, /, migration_id: str, now_ms: int, only_in: MigrationState | None = None, **values: Any
) -> Migration | None:
    """Write fields other than the state (only while it is `only_in`, when given); the migration as
    written, or None if it is not in `only_in` (or does not exist)."""
    query = sa.update(migrations_t).where(migrations_t.c.id == migration_id)
    if only_in is not None:
        query = query.where(migrations_t.c.state == only_in)
    with write_transaction(engine) as conn:
        written = conn.execute(
            query.values(updated_ms=now_ms, version=migrations_t.c.version + 1, **encode(values))
        )
        if written.rowcount != 1:
            return None
        return migration_from_row(conn.execute(_select(migration_id)).one())


def note(engine: Engine, /, migration_id: str, state: MigrationState, now_ms: int, detail: str) -> None:
    """Add a line to a migration's history that is not a transition (a retry, a re-provisioned path)."""
    with write_transaction(engine) as conn:
        conn.execute(
            sa.insert(migration_events_t).values(
                migration_id=migration_id,
                at_ms=now_ms,
                from_state=state,
                event="note",
                to_state=state,
                detail=detail[:2000],
            )
        )


def history(engine: Engine, migration_id: str, after_seq: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
    """A migration's transitions and notes (after line `after_seq`), oldest first."""
    query = (
        sa.select(migration_events_t)
        .where(migration_events_t.c.migration_id == migration_id, migration_events_t.c.seq > after_seq)
        .order_by(migration_events_t.c.seq)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [
            {
                "seq": row.seq,
                "at_ms": row.at_ms,
                "from": row.from_state,
                "event": row.event,
                "to": row.to_state,
                "detail": row.detail or "",
            }
            for row in conn.execute(query)
        ]


def moving(engine: Engine, task_id: str) -> bool:
    """Whether a migration of the task is under way (its delivery then leaves the instance alone)."""
    query = (
        sa.select(migrations_t.c.id)
        .where(migrations_t.c.task_id == task_id, migrations_t.c.state.not_in(sorted(RESTING)))
        .limit(1)
    )
    with engine.connect() as conn:
        return conn.execute(query).first() is not None
