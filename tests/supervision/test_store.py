"""Supervision's records on both database backends: a supervisor keeps each report once, refuses
numbers that go back or repeat, and a node counts its trades per period."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import sqlalchemy as sa
from nacl.signing import SigningKey
from sqlalchemy.engine import Engine

from federation.errors import ConflictError
from federation.keys import key_id, public_key_text
from node.supervision import store, tables
from node.supervision.figures import PoolFigures
from node.supervision.report import Report, build_report, read_report
from node.trading.tables import orders_t, sales_t

KEY = SigningKey.generate()
NOW = int(time.time())
FIGURE = PoolFigures("pool-a", "north", "nvidia", "A100", ("cid",), 4, 2, 32, 16, 256, 128, 1000)


def accepted(seq: int, chips: int = 32) -> tuple[Report, bytes]:
    """Report `seq` of north for watch, read as the supervisor reads it."""
    figure = replace(FIGURE, capacity_chips=chips)
    body = build_report(
        node="north",
        audience="watch",
        seq=seq,
        now_ts=NOW,
        region="north",
        interval_s=60,
        period=(NOW - 60, NOW),
        pools=[figure],
        trades=[],
        key=KEY,
    )
    return read_report(body, "north", "watch", {key_id(KEY.verify_key): KEY.verify_key}, NOW), body


def test_reports_are_kept_once_in_order(engine: Engine) -> None:
    """Rising numbers are accepted; the same report again is a duplicate; another report under a
    used number, or a number below the last, is refused; the latest report is what totals see."""
    store.add_pinned(
        engine,
        tables.nodes_t,
        store.Pinned("north", "http://127.0.0.1:1", public_key_text(KEY.verify_key)),
        NOW,
    )
    for seq in (1, 2, 5):
        assert store.record_report(engine, *accepted(seq), NOW) == "accepted"
    assert store.record_report(engine, *accepted(5), NOW) == "duplicate"
    assert store.record_report(engine, *accepted(2), NOW) == "duplicate"
    with pytest.raises(ConflictError) as repeated:
        store.record_report(engine, *accepted(5, chips=40), NOW)
    assert repeated.value.code == "sequence_repeated"
    for seq in (4, 2):
        with pytest.raises(ConflictError) as rolled:
            store.record_report(engine, *accepted(seq, chips=40), NOW)
        assert rolled.value.code == "sequence_rollback"
    [latest] = store.latest_reports(engine)
    assert (latest.last_seq, latest.pools[0]["capacity_chips"]) == (5, 32)
    assert [row["seq"] for row in store.history(engine, "north", 10)] == [5, 2, 1]
    assert [row["seq"] for row in store.history(engine, "north", 10, before_seq=5)] == [2, 1]


def test_trade_volumes_count_trades_made_in_the_period(engine: Engine) -> None:
    """Orders and sales that were accepted count in the period they were made in, by currency;
    refused or cancelled ones and those outside the period do not."""
    common = {
        "offer_id": "o",
        "pool": "p",
        "price_per_unit_hour": 10,
        "updated_ts": NOW,
        "request_sha256": "0" * 64,
        "hold_expires_ts": NOW,
    }
    with engine.begin() as conn:
        for index, (state, created, amount) in enumerate(
            [
                ("settled", NOW - 10, 100),
                ("accepted", NOW - 5, 50),
                ("cancelled", NOW - 5, 70),
                ("settled", NOW - 100, 1),
            ]
        ):
            conn.execute(
                orders_t.insert().values(
                    id=f"order-{index}",
                    consumer="c",
                    source="own:config",
                    units=2,
                    hours=3,
                    currency="CNY",
                    amount=amount,
                    fee=0,
                    state=state,
                    created_ts=created,
                    **common,
                )
            )
        conn.execute(
            sales_t.insert().values(
                partner="east",
                trade_id="t1",
                units=1,
                hours=1,
                currency="EUR",
                amount=9,
                fee=0,
                state="settled",
                created_ts=NOW - 1,
                **common,
            )
        )
    volumes = {v.currency: v for v in store.trade_volumes(engine, NOW - 60, NOW)}
    assert volumes["CNY"].to_json() == {
        "currency": "CNY",
        "orders": 2,
        "order_amount": 150,
        "sales": 0,
        "sales_amount": 0,
        "unit_hours": 12,
    }
    assert (volumes["EUR"].sales, volumes["EUR"].sales_amount, volumes["EUR"].unit_hours) == (1, 9, 1)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(orders_t)).scalar_one() == 4
