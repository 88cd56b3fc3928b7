"""The federation store's one write transaction helper (shared by `claims` and `nonces` too)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from sqlalchemy.engine import Connection, Engine


@contextmanager
def writing(engine: Engine, *, lazy: bool = False) -> Iterator[Connection]:
    """A write transaction (SQLite BEGIN IMMEDIATE), committed when the block ends without error;
    first the engine's in-process write lock when it has one (`cpnode_write_lock`, set by the node).
    `lazy`: its commit need not reach the disk, as the node's engine reads `cpnode_lazy_commit`
    (node.db.engine): only for a write a durable one always follows before anyone is told."""
    with (
        engine.get_execution_options().get("cpnode_write_lock") or nullcontext(),
        engine.connect().execution_options(cpnode_write=True, cpnode_lazy_commit=lazy) as conn,
        conn.begin(),
    ):
        yield conn
