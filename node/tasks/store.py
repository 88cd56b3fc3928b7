"""Tasks storage (tables in node.tasks.tables).

A task's state changes by compare-and-set on its current state (`move_task`), written together
with the history entry of the move in one transaction: of two replicas or two requests acting on a
task, exactly one moves it, and the history never misses a move. Fields that are not the state
(what the pool reported, observations, kept outputs) are written with `update_task`.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from node.db import write_transaction
from node.db.dialects import dialect_insert
from node.tasks.machine import ENDED, FINAL, INITIAL, TaskEvent, TaskState, next_state
from node.tasks.records import Task, TaskEntry, TaskKind
from node.tasks.tables import entry_from_row, task_events_t, task_from_row, tasks_t

SUBMIT_EVENT = "submit"  # the history entry of a task's creation (not an event of the machine)


def _get(conn: Connection, task_id: str) -> Task | None:
    row = conn.execute(sa.select(tasks_t).where(tasks_t.c.id == task_id)).first()
    return None if row is None else task_from_row(row)


def _log(conn: Connection, task_id: str, ts_ms: int, state: str, event: str, detail: str | None) -> None:
    conn.execute(
        sa.insert(task_events_t).values(task_id=task_id, ts_ms=ts_ms, state=state, event=event, detail=detail)
    )


def insert_task(engine: Engine, values: dict[str, Any], state: TaskState = INITIAL) -> tuple[bool, Task]:
    """Insert a new task in `state` with its first history entry; (False, the stored one) when its
    id exists.

    One atomic `INSERT … ON CONFLICT DO NOTHING`: of replicas or requests inserting the same id at
    once, exactly one inserts (and writes the history entry), and none fails on the primary key."""
    insert = dialect_insert(engine, tasks_t).values(**values, state=state)
    # RETURNING, not rowcount: drivers need not report rowcount for INSERT … ON CONFLICT.
    statement = insert.on_conflict_do_nothing(index_elements=[tasks_t.c.id]).returning(tasks_t.c.id)
    with write_transaction(engine) as conn:
        inserted = conn.execute(statement).first() is not None
        if inserted:
            _log(conn, values["id"], values["created_ms"], state, SUBMIT_EVENT, None)
        # On PostgreSQL the conflicting insert has committed by now (ON CONFLICT waits for it), and
        # this statement's snapshot (READ COMMITTED) sees it.
        task = _get(conn, values["id"])
        assert task is not None
        return inserted, task


def get_task(engine: Engine, task_id: str) -> Task | None:
    """One task, or None."""
    with engine.connect() as conn:
        return _get(conn, task_id)


def task_of_order(engine: Engine, order_id: str) -> str | None:
    """The id of the consumer's task an order of this node was placed for, if any."""
    query = sa.select(tasks_t.c.id).where(tasks_t.c.order_id == order_id, tasks_t.c.kind != "sold")
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else str(row.id)


def list_tasks(
    engine: Engine, consumer: str | None = None, kind: TaskKind | None = None, limit: int = 100
) -> list[Task]:
    """The newest tasks first (of one consumer, or of one kind, if given)."""
    query = sa.select(tasks_t).order_by(tasks_t.c.created_ms.desc(), tasks_t.c.id).limit(limit)
    if consumer is not None:
        query = query.where(tasks_t.c.consumer == consumer)
    if kind is not None:
        query = query.where(tasks_t.c.kind == kind)
    with engine.connect() as conn:
        return [task_from_row(row) for row in conn.execute(query)]


def move_task(
    engine: Engine,
    /,
    task_id: str,
    state: TaskState,
    event: TaskEvent,
    now_ms: int,
    entry: str | None = None,
    **values: Any,
) -> Task | None:
    """Move a task that is in `state` by `event` (writing `values`, and a history entry saying
    `entry`, with it);
    None if it was not in `state` any more (someone else moved it first)."""
    after = next_state(state, event)
    if after in ENDED:
        values["outcome"] = after
    with write_transaction(engine) as conn:
        moved = conn.execute(
            sa.update(tasks_t)
            .where(tasks_t.c.id == task_id, tasks_t.c.state == state)
            .values(state=after, updated_ms=now_ms, **values)
        )
        if moved.rowcount != 1:
            return None
        _log(conn, task_id, now_ms, after, event, entry)
        return _get(conn, task_id)


def update_task(engine: Engine, /, task_id: str, now_ms: int, **values: Any) -> Task | None:
    """Write fields of a task that are not its state; the task as stored afterwards."""
    with write_transaction(engine) as conn:
        conn.execute(sa.update(tasks_t).where(tasks_t.c.id == task_id).values(updated_ms=now_ms, **values))
        return _get(conn, task_id)


def note(engine: Engine, /, task_id: str, now_ms: int, detail: str | None) -> bool:
    """Set what is going on with a task now (`detail`), with a history entry when it changes;
    whether it changed."""
    with write_transaction(engine) as conn:
        task = _get(conn, task_id)
        if task is None or task.detail == detail:
            return False
        conn.execute(sa.update(tasks_t).where(tasks_t.c.id == task_id).values(detail=detail))
        _log(conn, task_id, now_ms, task.state, "note", detail or "")
        return True


def count_notes(engine: Engine, task_id: str, prefix: str) -> int:
    """How many notes in the task's history start with `prefix`."""
    query = sa.select(sa.func.count()).where(
        task_events_t.c.task_id == task_id,
        task_events_t.c.event == "note",
        task_events_t.c.detail.startswith(prefix, autoescape=True),
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def unfinished_tasks(engine: Engine, kinds: tuple[TaskKind, ...], limit: int = 1000) -> list[str]:
    """Ids of the tasks of these kinds that are not final, oldest first."""
    query = (
        sa.select(tasks_t.c.id)
        .where(tasks_t.c.state.not_in(sorted(FINAL)), tasks_t.c.kind.in_(kinds))
        .order_by(tasks_t.c.created_ms)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [str(row.id) for row in conn.execute(query)]


def entries(engine: Engine, task_id: str, after_id: int = 0, limit: int = 500) -> list[TaskEntry]:
    """The task's history after entry `after_id`, oldest first."""
    query = (
        sa.select(task_events_t)
        .where(task_events_t.c.task_id == task_id, task_events_t.c.id > after_id)
        .order_by(task_events_t.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [entry_from_row(row) for row in conn.execute(query)]


def count_by_state(engine: Engine) -> dict[str, int]:
    """How many tasks are in each state."""
    query = sa.select(tasks_t.c.state, sa.func.count()).group_by(tasks_t.c.state)
    with engine.connect() as conn:
        return {str(state): int(count) for state, count in conn.execute(query)}
