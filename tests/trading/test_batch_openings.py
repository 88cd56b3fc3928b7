"""A trade batch's sales opened together at the seller (`store.open_sales_in`, their capacity
reserved by `reservations.reserve_many_in`): the same outcomes and the same rows as opening them
one after another, which is what the seller did before it opened a batch at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from node.db import write_transaction
from node.offers import CatalogOffer
from node.trading import reservations, store
from node.trading.reservations import Wanted
from node.trading.tables import reservations_t, sales_t
from tests.support.trading import sale_values


class Rollback(Exception):
    """Raised inside a transaction to roll it back, carrying what it saw."""


def _offer(offer_id: str, free: int, group: tuple[str, int, int] | None = None) -> CatalogOffer:
    offer: dict[str, Any] = {"id": offer_id, "pool": "gpu", "free_units": free}
    if group is not None:
        offer.update(capacity_group=group[0], capacity_cost=group[1], capacity_free=group[2])
    return offer  # type: ignore[return-value]


A = _offer("a", 5)
B = _offer("b", 10, ("g", 2, 6))  # b and c share group g: 6 of its units, 2 per unit of either
C = _offer("c", 10, ("g", 2, 6))
D = _offer("d", 1)


def _seen(engine: Engine, run: Callable[[Connection], Any], table: sa.Table, key: str) -> tuple[Any, Any]:
    """What `run` returned and the rows of `table` afterwards, in a transaction rolled back."""

    def rolled_back() -> None:
        with write_transaction(engine) as conn:
            result = run(conn)
            rows = [dict(row._mapping) for row in conn.execute(sa.select(table).order_by(table.c[key]))]
            raise Rollback(result, rows)

    with pytest.raises(Rollback) as seen:
        rolled_back()
    result, rows = seen.value.args
    return result, rows


def test_reservations_taken_together_are_those_taken_one_after_another(engine: Engine) -> None:
    """`reserve_many_in` gives each reservation what `reserve_in` one after another gives it and
    stores the same rows: an offer filled up mid-batch, a capacity group shared by two offers, a
    reservation stored before (held or released), one named twice, and a stored reservation that
    has expired for a later time but not for an earlier one."""
    with write_transaction(engine) as conn:
        assert reservations.reserve_in(conn, "old", A, 2, 100, 1)
        assert reservations.reserve_in(conn, "released", A, 1, 100, 1)
        reservations.release(conn, "released", 2)
        assert reservations.reserve_in(conn, "expiring", D, 1, 20, 1)
    wanted = [
        Wanted("r1", A, 2, 100, 10),  # 2 + 2 of 5
        Wanted("r2", A, 2, 100, 10),  # 4 + 2 > 5
        Wanted("r3", A, 1, 100, 10),  # 4 + 1
        Wanted("old", A, 2, 100, 10),  # stored, held
        Wanted("released", A, 1, 100, 10),  # stored, released
        Wanted("r4", B, 2, 100, 10),  # group: 4 of 6
        Wanted("r5", C, 2, 100, 10),  # group: 4 + 4 > 6
        Wanted("r6", C, 1, 100, 10),  # group: 4 + 2
        Wanted("r1", A, 2, 100, 10),  # named again: held
        Wanted("r7", D, 1, 100, 10),  # "expiring" still counts at 10
        Wanted("r8", D, 1, 100, 30),  # and no longer at 30
    ]

    def one_by_one(conn: Connection) -> list[bool]:
        return [reservations.reserve_in(conn, w.id, w.offer, w.units, w.expires_ts, w.now_ts) for w in wanted]

    alone = _seen(engine, one_by_one, reservations_t, "id")
    together = _seen(engine, lambda conn: reservations.reserve_many_in(conn, wanted), reservations_t, "id")
    assert together == alone
    assert together[0] == [True, False, True, True, False, True, False, True, True, False, True]


def _sale(trade_id: str, units: int = 1, partner: str = "beijing") -> store.NewSale:
    return store.NewSale(sale_values(trade_id, units, partner), A, 7)


def _answer(held: bool) -> Callable[[Connection], bool]:
    """A `hold` that answers `held`."""
    return lambda _conn: held


def test_sales_opened_together_are_those_opened_one_after_another(engine: Engine) -> None:
    """`open_sales_in` gives each sale what `open_sale_in` one after another gives it and stores
    the same rows: opened and held, opened but not held, refused for capacity, stored before,
    named twice; `hold` is called once, with the sales whose capacity was reserved."""
    with write_transaction(engine) as conn:
        store.open_sale_in(conn, _sale("stored").values, A, 7)  # 1 of 5 units
    sales = [_sale("t1", 2), _sale("unheld"), _sale("big", 2), _sale("stored"), _sale("t1", 2)]
    held = {"t1": True, "unheld": False, "big": True}  # big is never reserved, so never held
    calls: list[list[int]] = []

    def one_by_one(conn: Connection) -> list[tuple[str, Any]]:
        out = []
        for sale in sales:
            decided = held.get(sale.values["trade_id"], False)
            out.append(store.open_sale_in(conn, sale.values, sale.offer, sale.now_ts, _answer(decided)))
        return out

    def hold(_conn: Connection, reserved: list[int]) -> list[bool]:
        calls.append(reserved)
        return [held[sales[index].values["trade_id"]] for index in reserved]

    alone = _seen(engine, one_by_one, sales_t, "trade_id")
    together = _seen(engine, lambda conn: store.open_sales_in(conn, sales, hold), sales_t, "trade_id")
    assert together == alone
    assert calls == [[0, 1]]
    outcomes, rows = together
    assert [(kind, sale.state) for kind, sale in outcomes] == [
        ("opened", "accepted"),
        ("opened", "open"),
        ("no_capacity", "refused"),
        ("exists", "open"),
        ("exists", "accepted"),
    ]
    assert {row["trade_id"]: row["state"] for row in rows} == {
        "t1": "accepted",
        "unheld": "open",
        "big": "refused",
        "stored": "open",
    }


def test_sales_opened_together_are_one_partners(engine: Engine) -> None:
    """Sales of two partners are not opened together; nothing is written."""
    with write_transaction(engine) as conn, pytest.raises(ValueError, match="one partner's"):
        store.open_sales_in(conn, [_sale("t1"), _sale("t2", partner="shanghai")])
    assert store.get_sale(engine, "beijing", "t1") is None
