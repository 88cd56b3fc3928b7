"""Database plumbing shared by the ledger's storage modules: write transactions, retries, rows.

Write transactions ask for `cpnode_write=True`, which makes the node's SQLite engines begin with
`BEGIN IMMEDIATE` (the write lock is taken up front, so concurrent writers queue on busy_timeout
instead of deadlocking on a lock upgrade); PostgreSQL ignores the option. Every writer then locks
the single `ledger_head` row first (`FOR UPDATE`), then accounts in id order, so writers never wait
on each other in a cycle. Transient failures (busy, serialization, a dropped connection, a unique
race) roll the whole batch back and retry it; because ids are idempotent, a retry after a commit
whose answer was lost returns `exists`.

The write path speaks to the driver's cursor directly (`Cursor`: qmark for sqlite3, format for
psycopg) rather than building SQLAlchemy statements per batch; the transaction stays the SQLAlchemy
connection's. A set of keys travels as one parameter, a JSON array (encoded by orjson in C): read
with `json_each` on SQLite, turned into an array for `= ANY(...)` on PostgreSQL (psycopg would dump
a Python list element by element in Python), so a lookup is one cached statement whatever the number
of keys (an `IN (?, ?, ...)` list is a new statement per length, and SQLite builds a temporary
index of its values before probing).
"""

from __future__ import annotations

import gc
import json
import logging
import random
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any, NamedTuple, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping

from ledger.errors import StorageError
from ledger.records import Account, AccountKind, AccountSpec, Balance, Transfer, TransferKind
from ledger.store.schema import BALANCE_COLUMNS, TRANSFER_COLUMNS, accounts, balances, transfers

log = logging.getLogger("cpnode.ledger")
T = TypeVar("T")
IN_CHUNK = 500  # keeps IN lists well under SQLite's bound-parameter limit
DEFAULT_ATTEMPTS = 12


def now_ms() -> int:
    """The current UTC time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction (SQLite BEGIN IMMEDIATE), committed on success; first the
    engine's in-process write lock when it has one (`cpnode_write_lock`, set by the node's engines)."""
    with (
        engine.get_execution_options().get("cpnode_write_lock") or nullcontext(),
        engine.connect().execution_options(cpnode_write=True) as conn,
        conn.begin(),
    ):
        yield conn


@contextmanager
def batch_transaction(engine: Engine, held: Connection | None = None) -> Iterator[Connection]:
    """The write path's transaction. SQLite: `write_transaction`. PostgreSQL: a connection in
    autocommit mode whose BEGIN and COMMIT the write path sends itself, in the same round trips as
    its first and last statements (`Cursor.pipeline`); a transaction left open is committed on
    success and rolled back on failure. `held`: a connection the caller keeps between transactions
    (no pool checkout and ping each time); it must be in autocommit mode (`autocommit_connection`)."""
    if engine.dialect.name != "postgresql":
        with write_transaction(engine) as conn:
            yield conn
        return
    with nullcontext(held) if held is not None else autocommit_connection(engine) as conn:
        # The driver's own commit and rollback (each a no-op when no transaction is open): in
        # autocommit mode SQLAlchemy's begin() would only wrap them, at about 0.1 ms a batch.
        driver: Any = conn.connection.driver_connection
        try:
            yield conn
        except BaseException:
            if not driver.closed:
                try:
                    driver.rollback()
                except _driver_errors()[0]:
                    conn.invalidate()  # in doubt: never back to the pool
            raise
        driver.commit()


def autocommit_connection(engine: Engine) -> Connection:
    """A PostgreSQL connection for `batch_transaction` (the pool restores its mode when it is returned)."""
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT", cpnode_write=True)


_gc_lock = threading.Lock()
_gc_pausers = 0


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch runs (threads nest; the last one out resumes it).

    A batch allocates thousands of short-lived, acyclic objects (rows, transfers, results) that
    reference counting frees; the collector's passes over every live object, caches included,
    otherwise cost as much as the rules themselves."""
    global _gc_pausers
    with _gc_lock:
        if _gc_pausers == 0 and not gc.isenabled():
            paused_here = False  # someone else turned it off: leave it as it is
        else:
            paused_here = True
            _gc_pausers += 1
            gc.disable()
    try:
        yield
    finally:
        if paused_here:
            with _gc_lock:
                _gc_pausers -= 1
                if _gc_pausers == 0:
                    gc.enable()


def _driver_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(every driver error, the transient ones): the write path uses driver cursors directly, so
    driver exceptions arrive unwrapped as well as wrapped by SQLAlchemy. psycopg's are among them
    once it is loaded: nothing raises them before SQLAlchemy's PostgreSQL dialect imports it for a
    first engine, and a SQLite node never pays for importing it."""
    every: list[type[BaseException]] = [sqlite3.Error]
    transient: list[type[BaseException]] = [sqlite3.OperationalError, sqlite3.IntegrityError]
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None:
        every.append(psycopg.Error)
        transient += [psycopg.OperationalError, psycopg.IntegrityError, psycopg.InterfaceError]
    return tuple(every), tuple(transient)


def _database_errors() -> tuple[type[BaseException], ...]:
    """The errors a transaction may fail with: SQLAlchemy's and the loaded drivers'."""
    return (sa.exc.SQLAlchemyError, *_driver_errors()[0])


class StaleRead(Exception):
    """Something read from a cache no longer matches the database; retry the transaction afresh."""


def _is_disk_full(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "disk is full" in text or "no space left" in text or type(exc).__name__ == "DiskFull"


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig or exc
    if isinstance(exc, sa.exc.IntegrityError | sa.exc.OperationalError):
        return True
    return isinstance(exc, _driver_errors()[1])


def with_retries(action: Callable[[], T], what: str, attempts: int = DEFAULT_ATTEMPTS) -> T:
    """Run `action` (one whole transaction), retrying transient database failures with jittered backoff."""
    for attempt in range(attempts):
        try:
            return action()
        except StaleRead as exc:
            if attempt == attempts - 1:
                raise StorageError(f"{what} failed after {attempt + 1} attempt(s): {exc}") from exc
            log.debug("%s: retrying after %s", what, exc)
        except _database_errors() as exc:
            cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
            if _is_disk_full(exc) or _is_disk_full(cause):
                raise StorageError(f"{what}: the disk is full; nothing was written") from exc
            if not _retryable(exc) or attempt == attempts - 1:
                reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
                raise StorageError(f"{what} failed after {attempt + 1} attempt(s): {reason}") from exc
            log.debug("%s: retrying after %s", what, type(exc).__name__)
            time.sleep(random.uniform(0, min(0.2, 0.002 * 2**attempt)))  # noqa: S311 - jitter, not crypto
    raise AssertionError("unreachable")


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def select_in(
    conn: Connection, query: Callable[[Sequence[Any]], sa.Select[Any]], keys: Iterable[Any]
) -> list[Any]:
    """Run `query(chunk)` for chunks of `keys` (an IN list) and concatenate the rows."""
    ordered = sorted(set(keys))
    rows: list[Any] = []
    for part in chunks(ordered):
        rows.extend(conn.execute(query(part)).all())
    return rows


def transfer_from_row(row: RowMapping | Any) -> Transfer:
    """A stored transfer from a `ledger_transfers` row."""
    m = row if isinstance(row, RowMapping) else row._mapping
    return Transfer(
        seq=m["seq"],
        id=m["id"],
        kind=TransferKind(m["kind"]),
        debit_account=m["debit_account"],
        credit_account=m["credit_account"],
        currency=m["currency"],
        amount=m["amount"],
        pending_id=m["pending_id"],
        pending_amount=m["pending_amount"],
        timeout_s=m["timeout_s"],
        expires_ms=m["expires_ms"],
        code=m["code"],
        linked=bool(m["linked"]),
        ts_ms=m["ts_ms"],
        order_id=m["order_id"],
        trade_id=m["trade_id"],
        partner=m["partner"],
        trade_digest=m["trade_digest"],
    )


def transfer_to_row(transfer: Transfer) -> dict[str, Any]:
    """The `ledger_transfers` row of a transfer."""
    row = transfer.to_dict()
    assert tuple(sorted(row)) == tuple(sorted(TRANSFER_COLUMNS))
    return row


def account_from_row(row: RowMapping | Any) -> Account:
    """An account from a row of `select_accounts` (its `ledger_accounts` row with its balances)."""
    m = row if isinstance(row, RowMapping) else row._mapping
    spec = AccountSpec(
        id=m["id"],
        currency=m["currency"],
        kind=AccountKind(m["kind"]),
        debits_must_not_exceed_credits=bool(m["debits_must_not_exceed_credits"]),
        credits_must_not_exceed_debits=bool(m["credits_must_not_exceed_debits"]),
        partner=m["partner"],
    )
    balance = Balance(m["debits_pending"], m["debits_posted"], m["credits_pending"], m["credits_posted"])
    return Account(spec, balance, m["created_ms"], m["closed_seq"], m["closed_ms"])


def select_transfers(ids: Sequence[str]) -> sa.Select[Any]:
    """SELECT the transfers with these ids."""
    return sa.select(transfers).where(transfers.c.id.in_(ids))


def all_accounts() -> sa.Select[Any]:
    """SELECT every account with its balances, in id order."""
    return (
        sa.select(accounts, *BALANCE_COLUMNS)
        .join(balances, balances.c.num == accounts.c.num)
        .order_by(accounts.c.id)
    )


def select_accounts(ids: Sequence[str], for_update: bool = False) -> sa.Select[Any]:
    """SELECT these accounts with their balances in id order, locking both rows when asked
    (PostgreSQL; SQLite holds the file lock)."""
    query = all_accounts().where(accounts.c.id.in_(ids))
    return query.with_for_update() if for_update else query


def json_keys(keys: Sequence[str]) -> str:
    """`keys` as one JSON array parameter for `json_each` (text: newer SQLite reads a BLOB as JSONB)."""
    try:
        return orjson.dumps(keys).decode()
    except orjson.JSONEncodeError:  # a lone surrogate; no stored id has one, so escaping it is enough
        return json.dumps(list(keys))


def _encodable(keys: Sequence[str]) -> list[str]:
    """The keys that encode as UTF-8 (one with a lone surrogate cannot name anything stored)."""
    return [key for key in keys if not any("\ud800" <= ch <= "\udfff" for ch in key)]


# Membership in a key set sent as one JSON array, for PostgreSQL (see pg_json_keys).
PG_IN_JSON = "= ANY(ARRAY(SELECT jsonb_array_elements_text(?::jsonb)))"


def pg_json_keys(keys: list[str]) -> str:
    """`keys` as one JSON array parameter for PostgreSQL (encoded in C by orjson; psycopg dumps a list
    element by element in Python). Keys PostgreSQL text cannot hold (a NUL, a lone surrogate) are left
    out: they cannot name anything stored, and sending one would fail the whole transaction, and
    with it every caller's batch sharing it."""
    if "\x00" in "".join(keys):
        keys = [key for key in keys if "\x00" not in key]
    try:
        return orjson.dumps(keys).decode()
    except orjson.JSONEncodeError:
        return orjson.dumps(_encodable(keys)).decode()


class Statement(NamedTuple):
    """One statement of a pipeline: its SQL (`?` placeholders) and parameters, or a list of
    parameter rows when `many` (executemany)."""

    sql: str
    params: Sequence[Any] = ()
    many: bool = False


class Cursor:
    """The driver cursor of a SQLAlchemy connection, with the dialect's placeholders and key sets."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        self.p = "%s" if self.postgres else "?"
        self._cursor: Any = None

    @property
    def cursor(self) -> Any:
        """The driver's cursor, made on first use (a batch sent only through `pipeline` needs none)."""
        if self._cursor is None:
            self._cursor = self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        return self._cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (empty for statements without any)."""
        cursor = self.cursor
        cursor.execute(sql.replace("?", self.p) if self.postgres else sql, params)
        return cursor.fetchall() if cursor.description else []

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run one statement for each row of parameters; the number of rows changed (SQLite)."""
        if not rows:
            return 0
        self.cursor.executemany(sql.replace("?", self.p) if self.postgres else sql, rows)
        return int(self.cursor.rowcount)

    def pipeline(
        self, statements: Sequence[Statement], *, begin: bool = False, commit: bool = False
    ) -> list[list[tuple[Any, ...]]]:
        """PostgreSQL: run `statements` in order in one round trip (libpq's pipeline mode), after
        a BEGIN and before a COMMIT when asked; the rows of each. The server runs them one after
        another, each seeing what those before it did (a lock taken, rows written); on the first
        error the rest are skipped, the COMMIT too, and the error is raised."""
        from ledger.store import pgwire  # imports psycopg: only once a PostgreSQL engine is in use

        driver = self.conn.connection.driver_connection
        assert driver is not None
        return pgwire.run(driver, statements, begin=begin, commit=commit)

    def select_in(self, sql: str, keys: Iterable[str]) -> list[tuple[Any, ...]]:
        """Run `sql` with each `{in}` standing for membership in `keys`."""
        ordered = list(keys)
        if not ordered:
            return []
        if self.postgres:
            sql = sql.replace("{in}", PG_IN_JSON)
            return self.execute(sql, [pg_json_keys(ordered)] * sql.count("?"))
        return self.execute(
            sql.replace("{in}", "IN (SELECT value FROM json_each(?1))"), (json_keys(ordered),)
        )

    def with_keys(self, sql: str, keys: Iterable[str]) -> list[tuple[Any, ...]]:
        """Run a dialect's own statement with the key set as its parameter: on SQLite one JSON array
        (`?1`, joined through `json_each`: one index probe per key), on PostgreSQL the same JSON array
        for each `?` (written `PG_IN_JSON`)."""
        ordered = list(keys)
        if not ordered:
            return []
        if self.postgres:
            return self.execute(sql, [pg_json_keys(ordered)] * sql.count("?"))
        return self.execute(sql, (json_keys(ordered),))
