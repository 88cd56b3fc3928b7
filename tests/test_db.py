"""The database layer: engines, migrations and write transactions on both backends."""

from __future__ import annotations

import asyncio
import threading

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from node.db import dispose_when_idle, make_engine, schema_versions, upgrade, write_transaction
from node.db.engine import database_unavailable
from node.db.migrate import head_revisions


def test_upgrade_brings_every_branch_to_its_head(engine: Engine) -> None:
    """After `upgrade`, each shipped branch is at its head revision."""
    versions = schema_versions(engine)
    for branch, head in head_revisions().items():
        assert versions[branch] == head


def test_upgrade_is_idempotent(db_url: str) -> None:
    """Running migrations twice changes nothing and does not fail."""
    engine = make_engine(db_url)
    upgrade(engine)
    first = schema_versions(engine)
    upgrade(engine)
    assert schema_versions(engine) == first
    engine.dispose()


def test_write_transaction_rolls_back_on_error(engine: Engine) -> None:
    """A failed write transaction leaves nothing behind."""
    try:
        with write_transaction(engine) as conn:
            conn.execute(
                sa.text("INSERT INTO scheduler_leases VALUES ('j', 'h', 1, 2)"),
            )
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM scheduler_leases")).scalar_one() == 0


def test_a_connection_lost_as_a_transaction_begins_is_a_database_error(engine: Engine) -> None:
    """A connection found closed by the `begin` hook (a lazy write's `SET LOCAL`, SQLite's `BEGIN
    IMMEDIATE`) raises SQLAlchemy's DBAPIError, which the node reads as the database being unavailable
    (a warning and a retry), never a bare driver error that escapes as a traceback."""
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.close()
        conn.invalidate()
    failed = None
    with engine.connect().execution_options(cpnode_write=True, cpnode_lazy_commit=True) as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.close()  # cut after the pool's check, before the transaction begins
        try:
            conn.begin()
        except sa.exc.DBAPIError as exc:
            failed = exc
    assert failed is not None
    assert failed.connection_invalidated
    if engine.dialect.name == "postgresql":  # a lost server; SQLite files are not cut (theirs: busy)
        assert database_unavailable(failed) is not None
    with write_transaction(engine, lazy=True) as conn:  # the pool recovers: the next write works
        conn.execute(sa.text("INSERT INTO scheduler_leases VALUES ('j', 'h', 1, 2)"))


async def test_dispose_when_idle_waits_for_a_connection_still_checked_out(db_url: str) -> None:
    """A connection held by a thread when the engine is to be disposed is returned first, so the
    pool closes it rather than the garbage collector; with none returned, the deadline ends the wait."""
    engine = make_engine(db_url)
    held = engine.connect()
    held.execute(sa.text("SELECT 1"))
    waiting = threading.Event()
    returned = threading.Event()

    def give_back() -> None:
        waiting.wait(60)
        held.close()
        returned.set()

    thread = threading.Thread(target=give_back)
    thread.start()
    disposing = asyncio.ensure_future(dispose_when_idle(engine, 60))
    await asyncio.sleep(0)
    assert not disposing.done()  # still waiting: the connection is out
    waiting.set()
    await disposing
    thread.join(60)
    assert returned.is_set()
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]

    stuck = engine.connect()
    await dispose_when_idle(engine, 0.05)  # a connection never returned: disposed at the deadline
    stuck.invalidate()  # its pool was discarded: closing it would only return it there
    engine.dispose()
