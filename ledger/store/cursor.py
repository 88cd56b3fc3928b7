"""The driver cursor under a SQLAlchemy connection, for the write path's hot statements.

The write path speaks to the driver directly (qmark for sqlite3, format for psycopg) rather than
building SQLAlchemy statements per batch; the transaction stays the SQLAlchemy connection's.
A set of keys travels as one parameter: a PostgreSQL array (`= ANY(%s)`), or on SQLite a JSON
array read with `json_each`, so a lookup is one cached statement whatever the number of keys
(an `IN (?, ?, ...)` list is a new statement per length, and SQLite builds a temporary index of
its values before probing).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy.engine import Connection


def json_keys(keys: Sequence[str]) -> str:
    """`keys` as one JSON array parameter for `json_each` (text: newer SQLite reads a BLOB as JSONB)."""
    try:
        return orjson.dumps(keys).decode()
    except orjson.JSONEncodeError:  # a lone surrogate; no stored id has one, so escaping it is enough
        return json.dumps(list(keys))


def _encodable(keys: Sequence[str]) -> list[str]:
    """The keys that encode as UTF-8 (one with a lone surrogate cannot name anything stored)."""
    return [key for key in keys if not any("\ud800" <= ch <= "\udfff" for ch in key)]


class Cursor:
    """The driver cursor of a SQLAlchemy connection, with the dialect's placeholders and key sets."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        self.p = "%s" if self.postgres else "?"
        self.cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]

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

    def select_in(self, sql: str, keys: Iterable[str]) -> list[tuple[Any, ...]]:
        """Run `sql` with each `{in}` standing for membership in `keys`."""
        ordered = list(keys)
        if not ordered:
            return []
        if self.postgres:
            sql = sql.replace("{in}", "= ANY(?)")
            try:
                return self.execute(sql, [ordered] * sql.count("?"))
            except UnicodeEncodeError:  # raised before anything is sent: the transaction is intact
                return self.select_in(sql, _encodable(ordered))
        return self.execute(
            sql.replace("{in}", "IN (SELECT value FROM json_each(?1))"), (json_keys(ordered),)
        )

    def with_keys(self, sql: str, keys: Iterable[str]) -> list[tuple[Any, ...]]:
        """Run a dialect's own statement with the key set as its parameter: on SQLite one JSON array
        (`?1`, joined through `json_each`: one index probe per key), on PostgreSQL an array per `?`."""
        ordered = list(keys)
        if not ordered:
            return []
        if self.postgres:
            try:
                return self.execute(sql, [ordered] * sql.count("?"))
            except UnicodeEncodeError:  # raised before anything is sent: the transaction is intact
                return self.with_keys(sql, _encodable(ordered))
        return self.execute(sql, (json_keys(ordered),))
