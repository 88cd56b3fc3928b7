"""The order and sale listings (`store.list_orders`, `store.list_sales`) on each database: newest
first, ties by id, each filter and the limit as asked, whatever the combination."""

from __future__ import annotations

import itertools

from sqlalchemy.engine import Engine

from node.db import write_transaction
from node.trading import store
from node.trading.steps import Move
from tests.support.trading import order_values, sale_values

CONSUMERS, STATES = ("alice", "bob"), ("new", "requested")


def _stored_orders(engine: Engine) -> list[store.Order]:
    """Twelve orders of two consumers in two states, three of them created at each of four times."""
    with write_transaction(engine) as conn:
        for index in range(12):
            order = store.insert_new_order_in(
                conn, order_values(f"beijing.o{index:02d}", 10, CONSUMERS[index % 2], 100 + index // 3)
            )
            if index % 3 == 0:
                steps: list[Move] = [("held", {}), ("requested", {"trade_request": b"{}"})]
                assert store.move_order_in(conn, order.id, order.state, steps, 200) is not None
    return store.list_orders(engine, limit=500)


def test_orders_are_listed_newest_first_with_each_filter_and_limit(engine: Engine) -> None:
    every = _stored_orders(engine)
    assert len(every) == 12
    assert [(o.created_ts, o.id) for o in every] == sorted(
        ((o.created_ts, o.id) for o in every), key=lambda key: (-key[0], key[1])
    )
    assert {o.state for o in every} == set(STATES)
    for consumer, state, limit in itertools.product((None, *CONSUMERS), (None, *STATES), (1, 4, 500)):
        expected = [
            o.id
            for o in every
            if (consumer is None or o.consumer == consumer) and (state is None or o.state == state)
        ][:limit]
        listed = store.list_orders(engine, consumer, limit, state)
        assert [o.id for o in listed] == expected, (consumer, state, limit)
    assert store.list_orders(engine, "carol") == []


def test_sales_are_listed_newest_first_for_one_partner_or_all(engine: Engine) -> None:
    for index in range(6):
        partner = ("beijing", "guangzhou")[index % 2]
        values = {**sale_values(f"t{index}", partner=partner), "created_ts": 10 + index // 2}
        store.cancel_unknown_sale(engine, values)
    every = store.list_sales(engine)
    assert [(s.created_ts, s.trade_id) for s in every] == [
        (12, "t4"),
        (12, "t5"),
        (11, "t2"),
        (11, "t3"),
        (10, "t0"),
        (10, "t1"),
    ]
    assert [s.trade_id for s in store.list_sales(engine, "guangzhou")] == ["t5", "t3", "t1"]
    assert [s.trade_id for s in store.list_sales(engine, "beijing", limit=2)] == ["t4", "t2"]
    assert store.list_sales(engine, "nowhere") == []
