"""Engine creation with the settings each backend needs, and explicit write transactions.

SQLite: WAL, synchronous=FULL, busy_timeout, foreign keys on. The driver's own implicit
transactions are turned off so that we emit BEGIN ourselves: write transactions use
`BEGIN IMMEDIATE` (take the write lock up front, so two processes never deadlock upgrading a read
lock), read transactions a plain deferred BEGIN.
PostgreSQL (psycopg 3): pre-ping, bounded pool used last-in first-out, short connect timeout.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

WRITE_OPTION = "cpnode_write"


class DatabaseError(RuntimeError):
    """The database cannot be reached or used; the message says which and why."""


def _sqlite_path(url: sa.URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _install_sqlite_events(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        # Straight to the driver: going through exec_driver_sql costs tens of µs per transaction.
        driver = connection.connection.driver_connection
        if driver is None:
            raise DatabaseError("SQLite connection is closed")
        driver.execute("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engine(url: str, *, busy_timeout_ms: int = 10_000, pool_size: int = 5) -> Engine:
    """Create an engine for a `sqlite:///` or `postgresql+psycopg://` URL (creating SQLite's folder)."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = _sqlite_path(parsed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            parsed,
            connect_args={"timeout": busy_timeout_ms / 1000, "check_same_thread": False},
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        _install_sqlite_events(engine, busy_timeout_ms)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return sa.create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            # The most recently used connection first: a steady writer (the ledger's group committer)
            # keeps one warm connection, whose statements psycopg has prepared after five uses; in
            # turn (FIFO) no connection reaches five when the pool holds more than a few.
            pool_use_lifo=True,
            connect_args={"connect_timeout": 5},
        )
    raise DatabaseError(f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside a write transaction (SQLite `BEGIN IMMEDIATE`), committed on success."""
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn, conn.begin():
        yield conn


def check_database(engine: Engine) -> None:
    """Run `SELECT 1`, raising DatabaseError with a readable reason if the database is unreachable."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        where = engine.url.render_as_string(hide_password=True)
        reason = str(exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig else exc).strip()
        raise DatabaseError(f"database {where} is not reachable: {reason.splitlines()[0]}") from None
