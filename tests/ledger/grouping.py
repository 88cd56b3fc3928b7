"""Helpers for group-commit tests: hold the ledger's write lock so callers gather, and wait for them.

A transaction that finds the head row locked waits for it; callers that arrive meanwhile queue in
the committer. Holding the lock from another connection therefore makes the grouping deterministic
with real databases only: one writer blocked (SQLite `BEGIN IMMEDIATE`, PostgreSQL `FOR UPDATE` on
the head row) and everything after it gathered for the next transaction.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Engine

from ledger import GroupCommitter
from ledger.store.db import Cursor
from ledger.store.writer import lock_head

DEADLINE_S = 60.0


@contextmanager
def write_lock_held(engine: Engine) -> Iterator[None]:
    """Hold the ledger's write lock (head row) on another connection until the block ends; nothing is written."""
    with engine.connect().execution_options(cpnode_write=True) as conn:
        conn.begin()  # SQLite: BEGIN IMMEDIATE (the node's engines); PostgreSQL: the row lock below
        try:
            lock_head(Cursor(conn))
            yield
        finally:
            conn.rollback()


def until(condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    """Poll `condition` until it holds, failing with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not before the deadline: {what}"
        time.sleep(0.005)  # polling another thread's progress


async def until_async(condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    """`until` for a coroutine: poll without blocking the event loop."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not before the deadline: {what}"
        await asyncio.sleep(0.005)  # polling the committer thread's progress


def gathered(committer: GroupCommitter, callers: int) -> Callable[[], bool]:
    """A condition: `callers` callers are queued or inside the transaction being written."""
    return lambda: committer.waiting + committer.writing >= callers
