"""Engine creation with the settings each backend needs, and explicit write transactions.

SQLite: WAL, synchronous=FULL, busy_timeout, foreign keys on. The driver's own implicit
transactions are turned off so that we emit BEGIN ourselves: write transactions use
`BEGIN IMMEDIATE` (take the write lock up front, so two processes never deadlock upgrading a read
lock), read transactions a plain deferred BEGIN. Within a process, write transactions first take
the engine's write lock (`WRITE_LOCK_OPTION`), so writers queue on a lock instead of polling.
PostgreSQL (psycopg 3): pre-ping, bounded pool used last-in first-out, short connect timeout, and
sessions idle inside a transaction ended by the server after a while (a hung process's locks).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from dbprep import driver_error
from node.db.threads import attach_threads

WRITE_OPTION = "cpnode_write"
# A lock every write transaction of the process takes first on SQLite (an execution option, so the
# ledger and federation packages find it by name without importing node). SQLite admits one writer
# at a time; a thread that finds the file locked sleeps in SQLite's busy handler (1, 2, 5 ... 100 ms)
# however soon the lock frees, while one waiting on this lock is woken the moment it does.
WRITE_LOCK_OPTION = "cpnode_write_lock"
# A write transaction that need not be on disk when it commits (an execution option, found by name
# like the write lock): SQLite commits it with synchronous=NORMAL, PostgreSQL with
# synchronous_commit=off. It survives the process dying at once; a crash of the machine (or the
# database server) may undo it, never partly, and never once a later durable commit of the same
# database has returned, since both write their log in order and a durable commit flushes all of
# it. Callers use it only for writes that a durable one always follows before anyone is told.
LAZY_COMMIT_OPTION = "cpnode_lazy_commit"


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
        # Per connection, set only when it changes, before BEGIN (where SQLite allows it); every
        # transaction that is not a lazy write, whoever begins it and however, gets FULL back.
        lazy = write and connection.get_execution_options().get(LAZY_COMMIT_OPTION, False)
        wanted = "NORMAL" if lazy else "FULL"
        info = connection.connection.info
        if info.get(LAZY_COMMIT_OPTION, "FULL") != wanted:
            _driver_execute(connection, f"PRAGMA synchronous = {wanted}")
            info[LAZY_COMMIT_OPTION] = wanted
        _driver_execute(connection, "BEGIN IMMEDIATE" if write else "BEGIN")


def _driver_execute(connection: Connection, statement: str) -> None:
    """Run `statement` straight on the driver's connection from a `begin` hook (exec_driver_sql costs
    tens of µs per transaction), its errors raised as SQLAlchemy's (as a statement's would be), so a
    connection cut here reads as the database being unavailable, never as an unexpected error."""
    driver = connection.connection.driver_connection
    if driver is None:
        raise DatabaseError(f"{connection.dialect.name} connection is closed")
    try:
        driver.execute(statement)
    except connection.dialect.loaded_dbapi.Error as exc:
        raise driver_error(connection, statement, exc) from exc


def _install_postgres_events(engine: Engine, idle_in_transaction_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # A session hung inside a transaction (its process stopped) would hold its locks against
        # every other replica until it resumed; the server ends it after this long instead.
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET idle_in_transaction_session_timeout = {int(idle_in_transaction_timeout_ms)}")
        dbapi_connection.commit()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(LAZY_COMMIT_OPTION):
            _driver_execute(connection, "SET LOCAL synchronous_commit = off")  # this transaction only


def make_engine(
    url: str,
    *,
    busy_timeout_ms: int = 10_000,
    pool_size: int = 5,
    idle_in_transaction_timeout_ms: int = 30_000,
    threads: int = 0,
) -> Engine:
    """Create an engine for a `sqlite:///` or `postgresql+psycopg://` URL (creating SQLite's folder);
    PostgreSQL sessions idle inside a transaction end after `idle_in_transaction_timeout_ms` (0: never).
    Its blocking calls from the event loop run on `threads` threads of its own (0: one per pooled
    connection, `pool_size` + overflow; see node.db.threads)."""
    engine = _make_engine(url, busy_timeout_ms, pool_size, idle_in_transaction_timeout_ms)
    attach_threads(engine, threads or 2 * pool_size)
    return engine


def _make_engine(
    url: str, busy_timeout_ms: int, pool_size: int, idle_in_transaction_timeout_ms: int
) -> Engine:
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
        engine.update_execution_options(**{WRITE_LOCK_OPTION: threading.RLock()})
        return engine
    if parsed.get_backend_name() == "postgresql":
        engine = sa.create_engine(
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
        _install_postgres_events(engine, idle_in_transaction_timeout_ms)
        return engine
    raise DatabaseError(f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}")


async def dispose_when_idle(engine: Engine, timeout_s: float) -> None:
    """Dispose `engine` once no pooled connection is checked out, waiting `timeout_s` at most.

    A call still running on a thread when its caller was cancelled (a component stopped mid-round)
    holds a connection; disposed under it, the connection would go back to the discarded pool and be
    closed by the garbage collector alone (psycopg: "was deleted while still open")."""
    checked_out = getattr(engine.pool, "checkedout", lambda: 0)
    deadline = time.monotonic() + timeout_s
    # Polled: connections come back on other threads, and the pool's checkin event fires before the
    # connection is back in the count; a stop waits here for a few milliseconds at most, as a rule.
    while checked_out() > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    engine.dispose()


@contextmanager
def write_transaction(engine: Engine, *, lazy: bool = False) -> Iterator[Connection]:
    """A connection inside a write transaction (SQLite `BEGIN IMMEDIATE`, after the process's write
    lock), committed on success; `lazy`: a commit that need not reach the disk (`LAZY_COMMIT_OPTION`)."""
    options = {WRITE_OPTION: True, LAZY_COMMIT_OPTION: lazy}
    with (
        engine.get_execution_options().get(WRITE_LOCK_OPTION) or nullcontext(),
        engine.connect().execution_options(**options) as conn,
        conn.begin(),
    ):
        yield conn


def _connection_errors() -> tuple[type[BaseException], ...]:
    """PostgreSQL driver errors that mean the server is unreachable or the connection is gone, once
    psycopg is loaded (SQLAlchemy's dialect imports it for a first PostgreSQL engine; before that
    nothing raises them, and SQLite nodes never import it)."""
    psycopg = sys.modules.get("psycopg")
    return () if psycopg is None else (psycopg.OperationalError, psycopg.InterfaceError)


_SQLITE_BUSY = ("locked", "busy", "unable to open", "disk i/o")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def database_unavailable(exc: BaseException) -> str | None:
    """The reason's first line when `exc`, or an error it was raised from, says the database cannot
    be used right now (unreachable, connection dropped, locked, no pooled connection free); else None.

    Such a failure is the database's, not the request's: callers answer 503 and log one line."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa.exc.DBAPIError) and current.connection_invalidated:
            return _first_line(current.orig or current)
        if isinstance(current, (sa.exc.TimeoutError, *_connection_errors())):
            return _first_line(current)
        if isinstance(current, sqlite3.OperationalError) and any(
            word in str(current).lower() for word in _SQLITE_BUSY
        ):
            return _first_line(current)
        current = current.__cause__ or current.__context__
    return None


def log_failure(logger: logging.Logger, exc: BaseException, message: str, *args: object) -> None:
    """Log a failure of background work: one warning line naming the reason when the database is
    unavailable (it will be retried; a traceback says nothing more), else the traceback."""
    reason = database_unavailable(exc)
    if reason is None:
        logger.error(message, *args, exc_info=exc)
    else:
        logger.warning(message + ": the database is unavailable: %s", *args, reason)


def check_database(engine: Engine) -> None:
    """Run `SELECT 1`, raising DatabaseError with a readable reason if the database is unreachable."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        where = engine.url.render_as_string(hide_password=True)
        reason = str(exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig else exc).strip()
        raise DatabaseError(f"database {where} is not reachable: {reason.splitlines()[0]}") from None
