"""Helpers for group-commit tests: hold the ledger's write lock so callers gather, and wait for them.

A transaction that finds the head row locked waits for it; callers that arrive meanwhile queue in
the committer. Holding the lock from another connection therefore makes the grouping deterministic
with real databases only: one writer blocked (SQLite `BEGIN IMMEDIATE`, PostgreSQL `FOR UPDATE` on
the head row) and everything after it gathered for the next transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Engine

from ledger import GroupCommitter
from ledger.store.db import Cursor
from ledger.store.head import lock_head

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


def gathered(committer: GroupCommitter, callers: int) -> Callable[[], bool]:
    """A condition: `callers` callers are queued or inside the transaction being written."""
    return lambda: committer.waiting + committer.writing >= callers
