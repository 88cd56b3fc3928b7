"""Hot statements on the driver's cursor (dbprep) give what SQLAlchemy's execution gives,
on both backends: the same rows (booleans as bool, bytes as bytes), a statement's own literals
bound, nothing for a statement without rows, and SQLAlchemy's errors."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dbprep import Prepared
from node.db import write_transaction
from node.trading.tables import orders_t, reservations_t

ORDER: dict[str, Any] = {
    "id": "beijing.o1",
    "consumer": "alice",
    "offer_id": "shanghai-gpu",
    "source": "partner:shanghai",
    "partner": "shanghai",
    "pool": "gpu",
    "units": 2,
    "hours": 1,
    "price_per_unit_hour": 10,
    "currency": "CNY",
    "amount": 9_007_199_254_740_993,  # beyond a double's exact integers
    "fee": 0,
    "request_sha256": "0" * 64,
    "hold_expires_ts": 3600,
    "state": "requested",
    "trade_request": b"\x00signed\xff",
    "notify_partner": True,
    "created_ts": 1,
    "updated_ts": 1,
}
INSERT = sa.insert(orders_t).returning(orders_t)
SELECT = sa.select(orders_t).where(orders_t.c.id == sa.bindparam("p_id"))
MOVE = (
    sa.update(orders_t)
    .where(orders_t.c.id == sa.bindparam("p_id"), orders_t.c.state == sa.bindparam("p_state"))
    .returning(orders_t)
)
TAKEN = sa.select(sa.func.coalesce(sa.func.sum(reservations_t.c.units), 0)).where(
    reservations_t.c.offer_id == sa.bindparam("p_offer")
)


def _mapped(row: Any) -> dict[str, Any]:
    return {k: bytes(v) if isinstance(v, memoryview) else v for k, v in row._mapping.items()}


def test_prepared_rows_are_sqlalchemys(engine: Engine) -> None:
    """Insert, select and update with RETURNING give field for field the rows SQLAlchemy's own
    execution gives; a compare-and-set that matches nothing gives no row."""
    with write_transaction(engine) as conn:
        fast = Prepared(INSERT).one(conn, ORDER)
        slow = _mapped(conn.execute(INSERT, {**ORDER, "id": "beijing.o2"}).one())
        assert {**fast, "id": None} == {**slow, "id": None}
        assert fast["notify_partner"] is True
        assert fast["trade_request"] == b"\x00signed\xff"
        assert type(fast["trade_request"]) is bytes
        assert fast["amount"] == ORDER["amount"]
        assert fast["reason"] is None
        assert Prepared(SELECT).first(conn, {"p_id": "beijing.o1"}) == fast
        assert Prepared(SELECT).first(conn, {"p_id": "beijing.none"}) is None
        moved = Prepared(MOVE).first(
            conn, {"p_id": "beijing.o1", "p_state": "requested", "state": "accepted", "notify_partner": False}
        )
        assert moved == {**fast, "state": "accepted", "notify_partner": False}
        again = {"p_id": "beijing.o1", "p_state": "requested", "state": "accepted"}
        assert Prepared(MOVE).first(conn, again) is None
    with engine.connect() as conn:  # outside a write transaction too
        assert Prepared(SELECT).one(conn, {"p_id": "beijing.o1"})["state"] == "accepted"


def test_prepared_binds_the_statements_own_literals(engine: Engine) -> None:
    """An aggregate's literal (coalesce's 0) is bound by the statement; an insert without RETURNING
    gives no rows."""
    taken = Prepared(TAKEN)
    insert = Prepared(sa.insert(reservations_t))
    with write_transaction(engine) as conn:
        assert int(taken.scalar(conn, {"p_offer": "gpu"})) == 0
        for i, units in enumerate((2, 3)):
            row = {"id": f"order:{i}", "offer_id": "gpu", "units": units, "expires_ts": 9, "created_ts": 1}
            assert insert.rows(conn, row) == []
        assert int(taken.scalar(conn, {"p_offer": "gpu"})) == 5


def test_prepared_errors_are_sqlalchemys(engine: Engine) -> None:
    """A duplicate key raises SQLAlchemy's IntegrityError (not the driver's), and the transaction
    rolls back whole."""
    insert = Prepared(INSERT)

    def twice() -> None:
        with write_transaction(engine) as conn:
            insert.one(conn, {**ORDER, "id": "beijing.dup"})
            insert.one(conn, {**ORDER, "id": "beijing.dup"})

    with pytest.raises(sa.exc.IntegrityError):
        twice()
    with engine.connect() as conn:
        assert Prepared(SELECT).first(conn, {"p_id": "beijing.dup"}) is None


def test_prepared_expands_lists_for_in(engine: Engine) -> None:
    """An expanding bind parameter takes a list of any length, the empty one included, and selects
    the rows SQLAlchemy's own execution selects; lengths already seen reuse their rendering."""
    statement = sa.select(orders_t.c.id).where(
        orders_t.c.state == sa.bindparam("p_state"), orders_t.c.id.in_(sa.bindparam("p_ids", expanding=True))
    )
    fast = Prepared(statement)
    with write_transaction(engine) as conn:
        for i in range(4):
            conn.execute(sa.insert(orders_t), {**ORDER, "id": f"beijing.in{i}"})
        for ids in ([], ["beijing.in1"], ["beijing.in0", "beijing.in3", "beijing.none"], ["beijing.in2"]):
            params = {"p_state": "requested", "p_ids": ids}
            expected = sorted(row.id for row in conn.execute(statement, params))
            assert sorted(row["id"] for row in fast.rows(conn, params)) == expected
            assert len(expected) == len([i for i in ids if i != "beijing.none"])
        assert fast.rows(conn, {"p_state": "accepted", "p_ids": ["beijing.in1"]}) == []
