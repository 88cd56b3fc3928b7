"""The order and sale listings (`store.list_orders`, `store.list_sales`) on each database: newest
first, ties by id, each filter and the limit as asked, whatever the combination."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy.engine import Engine

from node.db import write_transaction
from node.trading import store
from node.trading.steps import Move
from tests.support.trading import sale_values

CONSUMERS, STATES = ("alice", "bob"), ("new", "requested")


def _order(index: int, consumer: str, created_ts: int) -> dict[str, Any]:
    return {
        "id": f"beijing.o{index:02d}",
        "consumer": consumer,
        "offer_id": "shanghai-gpu",
        "source": "partner:shanghai",
        "partner": "shanghai",
        "pool": "gpu",
        "units": 1,
        "hours": 1,
        "price_per_unit_hour": 10,
        "currency": "CNY",
        "amount": 10,
        "fee": 0,
        "request_sha256": "0" * 64,
        "notify_partner": False,
        "hold_expires_ts": 3600,
        "created_ts": created_ts,
        "updated_ts": created_ts,
    }


def _stored_orders(engine: Engine) -> list[store.Order]:
    """Twelve orders of two consumers in two states, three of them created at each of four times."""
    with write_transaction(engine) as conn:
        for index in range(12):
            order = store.insert_new_order_in(conn, _order(index, CONSUMERS[index % 2], 100 + index // 3))
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
