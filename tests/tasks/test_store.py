"""Tasks storage: inserting a task is atomic, so replicas inserting the same id at once neither fail
nor write it twice (on SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from node.db import make_engine
from node.tasks import store
from node.tasks.records import Task
from node.tasks.tables import task_events_t

WRITERS = 8
ROUNDS = 10


def _values(task_id: str, created_ms: int = 1_000) -> dict[str, Any]:
    return {
        "id": task_id,
        "kind": "own",
        "consumer": "alice",
        "name": "job",
        "spec": '{"program":{"command":["true"]}}',
        "order_round": 0,
        "created_ms": created_ms,
        "updated_ms": created_ms,
    }


def _history(engine: Engine, task_id: str) -> list[str]:
    query = sa.select(task_events_t.c.event).where(task_events_t.c.task_id == task_id)
    with engine.connect() as conn:
        return [str(row.event) for row in conn.execute(query)]


def test_insert_then_insert_again_finds_the_stored_task(engine: Engine) -> None:
    """A second insert of the same id inserts nothing and answers the task as first stored."""
    created, first = store.insert_task(engine, _values("t-1", 1_000))
    again, second = store.insert_task(engine, _values("t-1", 2_000))
    assert (created, again) == (True, False)
    assert first == second
    assert second.created_ms == 1_000
    assert second.state == "submitted"
    assert _history(engine, "t-1") == [store.SUBMIT_EVENT]


def test_insert_in_another_state(engine: Engine) -> None:
    """A task inserted in a given state (a sold task is `ordered`) is stored in it, with its entry."""
    created, task = store.insert_task(engine, {**_values("t-2"), "kind": "sold"}, "ordered")
    assert created
    assert task.state == "ordered"
    assert _history(engine, "t-2") == [store.SUBMIT_EVENT]


@pytest.mark.parametrize("engines", [1, 2], ids=["one-engine", "two-replicas"])
def test_concurrent_inserts_of_one_id_insert_it_once(engine: Engine, db_url: str, engines: int) -> None:
    """WRITERS threads (on one engine, or split over two engines as two replicas would be) insert
    the same id at once, ROUNDS times: each round exactly one inserts, none raises, every writer
    gets the same stored task, and the history has one submit entry."""
    others = [make_engine(db_url) for _ in range(engines - 1)]
    binds = [engine, *others]
    try:
        with ThreadPoolExecutor(max_workers=WRITERS) as pool:
            for round_ in range(ROUNDS):
                task_id = f"race-{round_}"
                start = threading.Barrier(WRITERS)

                def insert(
                    writer: int, task_id: str = task_id, start: threading.Barrier = start
                ) -> tuple[bool, Task]:
                    start.wait(timeout=60)
                    return store.insert_task(binds[writer % len(binds)], _values(task_id, 1_000 + writer))

                results = list(pool.map(insert, range(WRITERS)))
                assert sum(created for created, _ in results) == 1, results
                tasks = {task for _, task in results}
                assert len(tasks) == 1
                assert _history(engine, task_id) == [store.SUBMIT_EVENT]
    finally:
        for other in others:
            other.dispose()
