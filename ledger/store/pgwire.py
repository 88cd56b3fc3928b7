"""PostgreSQL: the write path's statements in one round trip, spoken to libpq directly.

`Cursor.pipeline` (ledger/store/db.py) sends BEGIN, a few statements and COMMIT together. Through
psycopg's cursors and pipeline that took about 0.45 ms of the writer's CPU for four statements
(cursor objects, query conversion, parameter dumping, result descriptions), more than the rules
of a 32-transfer batch; here the same libpq pipeline costs about a third of it: each statement is
prepared once per connection under a name of ours, parameters go as text (integers, strings, the
JSON rows already encoded), and rows come back as text converted by column type (integers, booleans,
strings), as psycopg would give them. The wait for the server releases the GIL (`select.poll`).

Errors are psycopg's own (`psycopg.errors.error_from_result`: the same classes, so retries and
StorageError answers are unchanged). The first failing statement makes the server skip the rest,
the COMMIT too, and its error is raised once every result is read, so the connection leaves
pipeline mode in step with the server; a connection that fails in the middle is closed, never
handed back half-read.
"""

from __future__ import annotations

import select
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import pq

from ledger.store.db import StaleRead, Statement

_OK = frozenset({pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK, pq.ExecStatus.EMPTY_QUERY})
_SYNC = pq.ExecStatus.PIPELINE_SYNC
_ABORTED = pq.ExecStatus.PIPELINE_ABORTED
_BAD = pq.ConnStatus.BAD
_WAIT = select.POLLIN | select.POLLERR | select.POLLHUP
_CONVERT: dict[int, Callable[[bytes], Any]] = {20: int, 21: int, 23: int, 26: int, 16: lambda v: v == b"t"}


class _Prepared:
    """A connection's statements prepared by this module: SQL → name, and the client encoding."""

    __slots__ = ("encoding", "made", "names")

    def __init__(self, driver: psycopg.Connection[Any]) -> None:
        self.encoding = driver.info.encoding
        self.names: dict[str, bytes] = {}
        self.made = 0  # names given so far (a name is never reused)
        # psycopg sends DEALLOCATE ALL after a ROLLBACK (or a DISCARD, DROP, ALTER) when it has
        # prepared statements of its own, which drops ours too: forget ours when it decides to.
        manager = getattr(driver, "_prepared", None)
        clear = getattr(manager, "clear", None)
        if clear is not None:
            names = self.names

            def clear_both() -> bool:
                dropped = bool(clear())
                if dropped:
                    names.clear()
                return dropped

            manager.clear = clear_both  # type: ignore[union-attr]


_PREPARED: weakref.WeakKeyDictionary[pq.abc.PGconn, _Prepared] = weakref.WeakKeyDictionary()
_NUMBERED: dict[str, bytes] = {}  # `?` SQL → `$n` SQL, encoded


def numbered(sql: str) -> bytes:
    """`sql` with its `?` placeholders numbered `$1`, `$2`, … (the write path's SQL has no other `?`)."""
    done = _NUMBERED.get(sql)
    if done is None:
        parts = sql.split("?")
        text = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))
        done = _NUMBERED[sql] = text.encode()
    return done


def _param(value: Any, encoding: str) -> bytes | None:
    """One parameter in text format."""
    if value is None:
        return None
    if type(value) is str:
        return value.encode(encoding)
    if value is True or value is False:
        return b"true" if value else b"false"
    if isinstance(value, int):
        return str(int(value)).encode()
    if isinstance(value, bytes):
        return value
    raise TypeError(f"cannot send a parameter of type {type(value).__name__}")


def run(
    driver: psycopg.Connection[Any], statements: Sequence[Statement], *, begin: bool, commit: bool
) -> list[list[tuple[Any, ...]]]:
    """Run `statements` in order in one round trip, after a BEGIN and before a COMMIT when asked;
    the rows of each. On the first error the server skips the rest (the COMMIT too) and the error
    is raised once the round trip is read."""
    pgconn = driver.pgconn
    if pgconn.status == _BAD or driver.closed:
        raise psycopg.OperationalError("the connection is closed")
    prepared = _PREPARED.get(pgconn)
    if prepared is None:
        prepared = _PREPARED[pgconn] = _Prepared(driver)
    encoding, names = prepared.encoding, prepared.names
    try:  # every parameter encoded before anything is sent: a bad one leaves the connection as it is
        sends = [
            (sql, [[_param(value, encoding) for value in row] for row in (params if many else (params,))])
            for sql, params, many in statements
        ]
    except UnicodeEncodeError as exc:
        raise psycopg.DataError(f"a parameter cannot be sent in {encoding}: {exc}") from exc
    # What each result answers: ("tx", None) BEGIN/COMMIT, ("prepare", sql), ("rows", statement index).
    expected: list[tuple[str, Any]] = []
    pgconn.enter_pipeline_mode()
    try:
        if begin:
            pgconn.send_query_params(b"BEGIN", None)
            expected.append(("tx", None))
        for index, (sql, rows) in enumerate(sends):
            name = names.get(sql)
            if name is None:
                prepared.made += 1
                name = f"cpnode_w{prepared.made}".encode()
                pgconn.send_prepare(name, numbered(sql))
                expected.append(("prepare", sql))
                names[sql] = name  # taken back by `_read` unless the server prepared it
            for values in rows:
                pgconn.send_query_prepared(name, values)
                expected.append(("rows", index))
        if commit:
            pgconn.send_query_params(b"COMMIT", None)
            expected.append(("tx", None))
        pgconn.pipeline_sync()
        results, error = _read(pgconn, expected, names, len(statements), encoding)
        pgconn.exit_pipeline_mode()
    except BaseException:
        pgconn.finish()  # out of step with the server: never used again
        raise
    if error is not None:
        if error.sqlstate == "26000":  # a statement of ours was deallocated by someone else
            names.clear()
            raise StaleRead(f"prepared statements were dropped; writing again: {error}") from error
        raise error
    return results


def _read(
    pgconn: pq.abc.PGconn,
    expected: list[tuple[str, Any]],
    names: dict[str, bytes],
    count: int,
    encoding: str,
) -> tuple[list[list[tuple[Any, ...]]], psycopg.Error | None]:
    """Send what is queued and read every result up to the pipeline's sync: the rows of each
    statement, and the first error (statements after it were skipped)."""
    poller = select.poll()
    poller.register(pgconn.socket, _WAIT | select.POLLOUT)
    while pgconn.flush():  # 1: more to send
        poller.poll()
    poller.modify(pgconn.socket, _WAIT)
    rows: list[list[tuple[Any, ...]]] = [[] for _ in range(count)]
    error: psycopg.Error | None = None
    position = 0
    while True:
        while pgconn.is_busy():
            poller.poll()
            pgconn.consume_input()  # raises OperationalError when the connection is lost
        result = pgconn.get_result()
        if result is None:  # the end of one statement's results
            position += 1
            continue
        status = result.status
        if status == _SYNC:
            return rows, error
        if position >= len(expected) or pgconn.status == _BAD:  # e.g. the server ended the session
            lost = psycopg.errors.error_from_result(result, encoding=encoding) if status not in _OK else None
            raise psycopg.OperationalError(f"the connection was lost: {error or lost or 'no answer'}")
        what, key = expected[position]
        if status in _OK:
            if what == "rows" and result.ntuples:
                rows[key] = _rows(result, encoding)
            continue
        if what == "prepare":
            names.pop(key, None)
        if status != _ABORTED and error is None:
            error = psycopg.errors.error_from_result(result, encoding=encoding)


def _rows(result: pq.abc.PGresult, encoding: str) -> list[tuple[Any, ...]]:
    """A result's rows, each value converted by its column's type (text format)."""
    converters = [_CONVERT.get(result.ftype(column)) for column in range(result.nfields)]
    out = []
    for row in range(result.ntuples):
        values: list[Any] = []
        for column, convert in enumerate(converters):
            raw = result.get_value(row, column)
            if raw is None:
                values.append(None)
            else:
                values.append(convert(raw) if convert is not None else raw.decode(encoding))
        out.append(tuple(values))
    return out
