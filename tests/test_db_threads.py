"""The database layer's threads and commits: each engine's own threads sized to its pool, and lazy
commits (a write a durable one always follows) on both backends."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from node.config import DatabaseSection
from node.db import in_thread, make_engine, write_transaction
from node.db.threads import threads_of


def _where(_engine: Engine, gate: threading.Barrier | None = None) -> str:
    if gate is not None:
        gate.wait(timeout=30)
    return threading.current_thread().name


async def test_blocking_calls_run_on_the_engines_own_threads(tmp_path: Path) -> None:
    """Calls run on the engine's threads, one per pooled connection unless configured, never more
    at once; they end when the engine is disposed, and start again if it is used after that."""
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}", pool_size=2)
    other = make_engine(f"sqlite:///{tmp_path / 'b.db'}", threads=3)
    try:
        threads = threads_of(engine)
        assert threads is not None
        assert (threads.size, threads_of(other).size) == (4, 3)  # type: ignore[union-attr]
        assert DatabaseSection().threads == 0  # the default: sized to the pool
        # Four calls that wait for each other can only finish if four threads run them at once.
        gate = threading.Barrier(4)
        names = await asyncio.gather(*(in_thread(engine, _where, gate) for _ in range(4)))
        assert len(set(names)) == 4
        assert all(name.startswith("cpnode-db") for name in names)
        many = await asyncio.gather(*(in_thread(engine, _where) for _ in range(40)))
        assert len(set(many)) <= 4
        assert all(name.startswith("cpnode-db") for name in many)
        first = threads.executor()
        engine.dispose()
        assert threads.executor() is not first  # ended with the engine; new ones on next use
        assert (await in_thread(engine, _where)).startswith("cpnode-db")
    finally:
        engine.dispose()
        other.dispose()


def _synchronous(engine: Engine, lazy: bool) -> str:
    """The durability setting inside a write transaction, as the backend reports it."""
    with write_transaction(engine, lazy=lazy) as conn:
        if engine.dialect.name == "sqlite":
            return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[
                conn.execute(sa.text("PRAGMA synchronous")).scalar_one()
            ]
        return str(conn.execute(sa.text("SHOW synchronous_commit")).scalar_one())


def test_lazy_commits_are_per_transaction(engine: Engine) -> None:
    """A lazy write transaction commits without waiting for the disk (SQLite synchronous=NORMAL,
    PostgreSQL synchronous_commit=off); the next write transaction on the same connection is
    durable again, as is every one by default."""
    sqlite = engine.dialect.name == "sqlite"
    durable, lazy = ("FULL", "NORMAL") if sqlite else ("on", "off")
    # pool_size 5: the same pooled connection is handed out again (last in, first out on PostgreSQL,
    # and SQLite's queue pool), so a setting left behind would show.
    assert _synchronous(engine, lazy=False) == durable
    assert _synchronous(engine, lazy=True) == lazy
    assert _synchronous(engine, lazy=False) == durable
    assert _synchronous(engine, lazy=True) == lazy
    # A transaction begun some other way after a lazy one is durable too (never left NORMAL).
    assert _synchronous(engine, lazy=True) == lazy
    with engine.begin() as conn:
        setting = conn.execute(sa.text("PRAGMA synchronous" if sqlite else "SHOW synchronous_commit"))
        assert str(setting.scalar_one()) == ("2" if sqlite else "on")
    with write_transaction(engine, lazy=True) as conn:
        conn.execute(sa.text("INSERT INTO scheduler_leases VALUES ('lazy', 'h', 1, 2)"))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM scheduler_leases")).scalar_one() == 1
