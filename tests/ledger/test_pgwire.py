"""PostgreSQL: the write path's round trips spoken to libpq directly (ledger/store/pgwire.py) give
what psycopg's cursors gave (typed rows, psycopg's error classes, nothing of a failed round trip
committed) and survive their prepared statements being dropped under them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import Connection, Engine

from ledger.store.db import StaleRead, Statement, autocommit_connection
from ledger.store.pgwire import numbered, run
from node.db import make_engine

pytestmark = pytest.mark.postgres


@pytest.fixture(name="driver")
def fixture_driver(postgres_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A psycopg connection in autocommit mode (as the write path holds it) with a scratch table."""
    engine: Engine = make_engine(postgres_url)
    conn: Connection = autocommit_connection(engine)
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    driver.execute("CREATE TABLE wire (id text PRIMARY KEY, n bigint NOT NULL, flag boolean, note text)")
    try:
        yield driver
    finally:
        conn.close()
        engine.dispose()


def _rows(driver: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return driver.execute("SELECT id, n, flag, note FROM wire ORDER BY id").fetchall()


INSERT = "INSERT INTO wire (id, n, flag, note) VALUES (?, ?, ?, ?)"
SELECT = "SELECT id, n, flag, note, n * 2 FROM wire WHERE n >= ? ORDER BY id"


def test_placeholders_are_numbered() -> None:
    assert numbered("SELECT ?, ?::jsonb WHERE a = ?") == b"SELECT $1, $2::jsonb WHERE a = $3"
    assert numbered("SELECT 1") == b"SELECT 1"


def test_rows_come_back_typed_as_psycopg_gives_them(driver: psycopg.Connection[Any]) -> None:
    """Integers, booleans, text and NULL; `many` runs a statement once per row; BEGIN and COMMIT
    frame the round trip; the rows of each statement in order."""
    statements = [
        Statement(INSERT, [("a", 1, True, "é ✓"), ("b", -(2**62), False, None)], many=True),
        Statement(SELECT, [-(2**63)]),
        Statement("SELECT count(*) FROM wire"),
    ]
    inserted, selected, counted = run(driver, statements, begin=True, commit=True)
    assert inserted == []
    assert counted == [(2,)]
    assert selected == driver.execute(SELECT.replace("?", "%s"), [-(2**63)]).fetchall()
    assert selected == [("a", 1, True, "é ✓", 2), ("b", -(2**62), False, None, -(2**63))]
    assert driver.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    # The same statements again run prepared (no new names), and see what the first round trip wrote.
    [again] = run(driver, [Statement(SELECT, [0])], begin=False, commit=False)
    assert again == [("a", 1, True, "é ✓", 2)]


def test_an_error_skips_the_rest_and_commits_nothing(driver: psycopg.Connection[Any]) -> None:
    """The first failing statement raises psycopg's own class for it once the round trip is read;
    nothing of the transaction is committed and the connection is usable (after the rollback the
    write path's transaction makes)."""
    statements = [
        Statement(INSERT, ("a", 1, None, None)),
        Statement(INSERT, ("a", 2, None, None)),  # the same key
        Statement(INSERT, ("c", 3, None, None)),
    ]
    with pytest.raises(psycopg.errors.UniqueViolation):
        run(driver, statements, begin=True, commit=True)
    assert driver.pgconn.transaction_status == psycopg.pq.TransactionStatus.INERROR
    driver.rollback()
    assert _rows(driver) == []
    with pytest.raises(psycopg.errors.UndefinedTable):  # a statement the server cannot prepare
        run(driver, [Statement("SELECT * FROM no_such_table WHERE n = ?", [1])], begin=False, commit=False)
    run(driver, [Statement(INSERT, ("c", 3, None, None))], begin=True, commit=True)
    assert _rows(driver) == [("c", 3, None, None)]


def test_a_bad_parameter_sends_nothing(driver: psycopg.Connection[Any]) -> None:
    """A parameter that cannot be encoded is refused before anything reaches the server."""
    with pytest.raises(psycopg.DataError):
        run(driver, [Statement(INSERT, ("\ud800", 1, None, None))], begin=True, commit=True)
    assert driver.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with pytest.raises(TypeError):
        run(driver, [Statement(INSERT, ("x", 1.5, None, None))], begin=True, commit=True)
    assert _rows(driver) == []


def test_statements_dropped_under_it_are_prepared_again(driver: psycopg.Connection[Any]) -> None:
    """psycopg's DEALLOCATE ALL after a rollback (when it prepared statements of its own) makes
    the next round trip prepare ours again; a DEALLOCATE it did not see makes one round trip fail
    with StaleRead (the write path retries its transaction) and the next one prepare again."""
    run(driver, [Statement(INSERT, ("a", 1, None, None))], begin=True, commit=True)
    for _ in range(6):  # past psycopg's threshold: it prepares this one
        driver.execute("SELECT count(*) FROM wire WHERE n > %s", [0])
    driver.execute("BEGIN")
    driver.rollback()  # psycopg clears its prepared statements on the server, ours with them
    run(driver, [Statement(INSERT, ("b", 2, None, None))], begin=True, commit=True)
    driver.pgconn.exec_(b"DEALLOCATE ALL")
    with pytest.raises(StaleRead):
        run(driver, [Statement(INSERT, ("c", 3, None, None))], begin=True, commit=True)
    driver.rollback()
    run(driver, [Statement(INSERT, ("c", 3, None, None))], begin=True, commit=True)
    assert [row[0] for row in _rows(driver)] == ["a", "b", "c"]


def test_a_lost_connection_is_closed_not_reused(driver: psycopg.Connection[Any]) -> None:
    """The server ending the session in the middle of a round trip raises OperationalError and
    leaves the connection closed (never handed back half-read)."""
    statements = [
        Statement("SELECT pg_sleep(0.01)"),
        Statement("SELECT pg_terminate_backend(?)", [driver.pgconn.backend_pid]),
        Statement("SELECT 1"),
    ]
    with pytest.raises(psycopg.OperationalError):
        run(driver, statements, begin=True, commit=True)
    assert driver.closed
