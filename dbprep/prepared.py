"""Hot statements run on the driver's cursor, rendered by SQLAlchemy once per dialect and key set.

SQLAlchemy spends tens of microseconds per execution on work a hot statement does not need: it
builds the execution context, processes every parameter, and sets up a result processor per
returned column (about a tenth of the interpreter's time on a busy order path). `Prepared` keeps
the statement written as SQLAlchemy Core, renders it once per dialect and set of value keys, and
runs the rendered text on the driver's cursor inside the caller's transaction.

Only for statements whose values need no conversion by SQLAlchemy: integers, text, bytes and
booleans. An expanding bind parameter (`bindparam(name, expanding=True)`, for `IN`) takes a list:
the statement is rendered once per dialect, key set and length of each such list (so only for
lists of bounded length, as a trade batch's). Rows come back as dicts; booleans are made `bool`
(SQLite stores 0/1) and bytes `bytes` (psycopg may give a memoryview). Driver errors are raised
as SQLAlchemy's, as an executed statement's would be, so a connection cut here reads as the
database being unavailable. SQLAlchemy's execution events (`before_cursor_execute`, …) do not
see these statements.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql import visitors
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement


def driver_error(connection: Connection, statement: str, exc: Exception) -> sa.exc.StatementError:
    """SQLAlchemy's error for a driver error `exc` raised by `statement` on `connection`; a lost
    connection is invalidated, so the pool discards it rather than roll it back (which would fail
    and log)."""
    dialect = connection.dialect
    driver = connection.connection.driver_connection
    gone = dialect.is_disconnect(exc, driver, None)  # type: ignore[arg-type]
    if gone:
        connection.invalidate(exc)
    return sa.exc.DBAPIError.instance(
        statement, None, exc, dialect.loaded_dbapi.Error, dialect=dialect, connection_invalidated=gone
    )


@dataclass(frozen=True)
class _Rendered:
    sql: str
    defaults: dict[str, Any]  # binds the statement fills itself (literals such as coalesce's 0)
    positions: tuple[str, ...] | None  # the bind names in order, for a positional paramstyle
    expanding: tuple[str, ...] = ()  # binds whose list is spread over `name_1`, `name_2`, ...

    def arguments(self, values: Mapping[str, Any]) -> Any:
        """The driver's arguments for `values`: a mapping, or a sequence in bind order."""
        merged = {**self.defaults, **values}
        for name in self.expanding:
            merged.update({f"{name}_{i}": value for i, value in enumerate(merged.pop(name), 1)})
        return merged if self.positions is None else [merged[n] for n in self.positions]


def columns(row: Any) -> Mapping[str, Any]:
    """A row's values by column name, for a row from `Prepared` (a dict) or from SQLAlchemy's own
    execution (its `_mapping`), so code reading rows takes either."""
    return row if isinstance(row, dict) else row._mapping


def _driver(conn: Connection) -> Any:
    """The driver's connection under `conn`, in a transaction (begun, as SQLAlchemy's own
    execution would begin one)."""
    if not conn.in_transaction():
        conn.begin()
    driver = conn.connection.driver_connection
    if driver is None:
        raise sa.exc.ResourceClosedError(f"{conn.dialect.name} connection is closed")
    return driver


class Prepared:
    """A Core statement run on the driver's cursor (see the module docstring)."""

    def __init__(self, statement: ClauseElement) -> None:
        self.statement = statement
        columns = getattr(statement, "exported_columns", ())
        self._booleans = tuple(c.name for c in columns if isinstance(c.type, sa.Boolean))
        self._binaries = tuple(c.name for c in columns if isinstance(c.type, sa.LargeBinary))
        self._expanding = tuple(
            sorted(
                {
                    b.key
                    for b in visitors.iterate(statement)
                    if isinstance(b, sa.BindParameter) and b.expanding
                }
            )
        )
        self._rendered: dict[tuple[str, frozenset[str], tuple[int, ...]], _Rendered] = {}

    def _render(self, conn: Connection, keys: frozenset[str], sizes: tuple[int, ...]) -> _Rendered:
        dialect = conn.dialect
        compiled = self.statement.compile(dialect=dialect, column_keys=sorted(keys))
        positional = dialect.paramstyle in ("qmark", "numeric", "format")
        defaults = dict(compiled.params)
        if self._expanding:
            assert isinstance(compiled, SQLCompiler)  # only statements have expanding binds
            # The statement as SQLAlchemy renders it for lists of these lengths (SQLCompiler's
            # public construct_expanded_state): `IN (?, ?)`, or its form for an empty list.
            lists = {name: [None] * size for name, size in zip(self._expanding, sizes, strict=True)}
            state = compiled.construct_expanded_state({**{k: None for k in defaults}, **lists})
            sql, found = state.statement, state.positiontup
            for name in self._expanding:
                defaults.pop(name, None)
        else:
            sql, found = compiled.string, getattr(compiled, "positiontup", None)
        positions = tuple(found or ()) if positional else None
        rendered = _Rendered(sql, defaults, positions, self._expanding)
        self._rendered[dialect.name, keys, sizes] = rendered
        return rendered

    def rows(self, conn: Connection, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Run the statement with `params` (values and bind parameters by name) in `conn`'s
        transaction; its rows, each a dict by column name (empty for a statement without any)."""
        values = params or {}
        rendered = self._rendered_for(conn, values)
        driver = _driver(conn)
        try:
            cursor = driver.cursor()
            cursor.execute(rendered.sql, rendered.arguments(values))
            if cursor.description is None:
                return []
            names = [d[0] for d in cursor.description]
            fetched = cursor.fetchall()
        except conn.dialect.loaded_dbapi.Error as exc:
            raise driver_error(conn, rendered.sql, exc) from exc
        return [self._values(names, row) for row in fetched]

    def many(self, conn: Connection, params: Sequence[Mapping[str, Any]]) -> None:
        """Run a statement that returns no rows once for each of `params` (all with the same keys),
        in one call of the driver's `executemany`, in `conn`'s transaction."""
        if not params:
            return
        rendered = self._rendered_for(conn, params[0])
        driver = _driver(conn)
        try:
            driver.cursor().executemany(rendered.sql, [rendered.arguments(values) for values in params])
        except conn.dialect.loaded_dbapi.Error as exc:
            raise driver_error(conn, rendered.sql, exc) from exc

    def _rendered_for(self, conn: Connection, values: Mapping[str, Any]) -> _Rendered:
        keys = frozenset(values)
        sizes = tuple(len(values[name]) for name in self._expanding)
        return self._rendered.get((conn.dialect.name, keys, sizes)) or self._render(conn, keys, sizes)

    def first(self, conn: Connection, params: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """The first row, or None."""
        found = self.rows(conn, params)
        return found[0] if found else None

    def one(self, conn: Connection, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The only row (NoResultFound or MultipleResultsFound otherwise, as SQLAlchemy's `one`)."""
        found = self.rows(conn, params)
        if not found:
            raise sa.exc.NoResultFound("no row was found when one was required")
        if len(found) > 1:
            raise sa.exc.MultipleResultsFound("multiple rows were found when exactly one was required")
        return found[0]

    def scalar(self, conn: Connection, params: Mapping[str, Any] | None = None) -> Any:
        """The first column of the only row."""
        return next(iter(self.one(conn, params).values()))

    def _values(self, names: list[str], row: tuple[Any, ...]) -> dict[str, Any]:
        values = dict(zip(names, row, strict=True))
        for name in self._binaries:
            value = values.get(name)
            if isinstance(value, memoryview):
                values[name] = bytes(value)
        for name in self._booleans:
            value = values.get(name)
            if value is not None:
                values[name] = bool(value)
        return values
