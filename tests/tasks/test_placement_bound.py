"""Placements run one at a time, each within `[tasks] place_timeout_s`: one that hangs (here the
first order's trade never answers) is cut off, another task's placement goes ahead, and the cut-off
one is tried again and finds the order it had stored instead of placing another."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from node.tasks.component import DRIVER
from node.trading.records import Order
from tests.support.tasks import DEPOSIT, pool_node, python_task


async def test_a_hung_placement_does_not_hold_up_another_and_is_retried(tmp_path: Path, db_url: str) -> None:
    """Task A's placement hangs past the bound (again on each retry, until B is placed); task B is
    placed and runs meanwhile; A is tried again, drives on the order its first attempt stored, and
    runs to its end on that order (or, if that order ended without a sale meanwhile, on a new one)."""
    async with pool_node(tmp_path, db_url=None if db_url.startswith("sqlite") else db_url) as node:
        assert node.server._runner is not None
        driver = node.server._runner.app[DRIVER]
        tasks = driver.tasks
        tasks.settings = tasks.settings.model_copy(update={"place_timeout_s": 1.0})
        buyer = tasks.buyer
        drive = buyer.drive
        hung = asyncio.Event()
        b_placed = asyncio.Event()
        hung_orders: list[str] = []

        async def a_hangs_until_b_is_placed(order: Order) -> Order:
            if not hung_orders:
                hung_orders.append(order.id)  # the first order: A's
            if order.id == hung_orders[0] and not b_placed.is_set():
                hung.set()
                await asyncio.Event().wait()  # its trade never answers: cut off by the bound
            driven = await drive(order)
            if order.id != hung_orders[0]:
                b_placed.set()
            return driven

        buyer.drive = a_hangs_until_b_is_placed  # type: ignore[method-assign]
        a = await node.submit(python_task("print('a')"))
        await asyncio.wait_for(hung.wait(), 60)
        b = await node.submit(python_task("print('b')"))
        b_done = await node.wait(b["id"], timeout_s=120)
        a_done = await node.wait(a["id"], timeout_s=120)
        for done in (a_done, b_done):
            assert "succeeded" in [e["state"] for e in done["history"]], done
        # B was ordered while A's placement hung; A ran on the order that attempt had stored
        # (driven on when it was tried again, not placed anew).
        assert ordered_ms(b_done) < ordered_ms(a_done)
        assert b_done["order_id"] not in (a_done["order_id"], hung_orders[0])
        if a_done["order_id"] != hung_orders[0]:
            # Driven on when A was tried again, the hung order may have ended without a sale (a
            # loaded machine can keep it waiting past its trade's deadline): then, and only then,
            # A orders again. Never two live orders for one task: the first one has ended.
            status, first = await node.call("GET", f"/api/v1/orders/{hung_orders[0]}")
            assert status == 200
            assert first["state"] in ("cancelled", "rejected"), first  # ended, no sale, no hold left
        details = [e["detail"] or "" for e in a_done["history"]]
        assert any(d.startswith("place_timeout: placing its order took more than 1 s") for d in details), (
            details
        )


def ordered_ms(task: dict[str, Any]) -> int:
    """When the task's order was placed (its move to `ordered`)."""
    return int(next(e["ts_ms"] for e in task["history"] if e["state"] == "ordered"))


async def test_a_placement_that_always_hangs_fails_the_task(tmp_path: Path, db_url: str) -> None:
    """Every placement of the task hangs: after `place_attempts` (2) cut-offs, the first noted with
    its back-off, the task fails `place_failed`; the order it had stored is cancelled and alice
    holds nothing (the hold taken while calling it off is voided)."""
    async with pool_node(tmp_path, db_url=None if db_url.startswith("sqlite") else db_url) as node:
        assert node.server._runner is not None
        tasks = node.server._runner.app[DRIVER].tasks
        tasks.settings = tasks.settings.model_copy(update={"place_timeout_s": 0.5, "place_attempts": 2})
        buyer = tasks.buyer
        drive = buyer.drive

        async def placing_hangs(order: Order) -> Order:
            if order.state in ("new", "held", "requested"):  # placing it: never answers
                await asyncio.Event().wait()
            return await drive(order)  # calling it off goes through

        buyer.drive = placing_hangs  # type: ignore[method-assign]
        task = await node.submit(python_task("print('never')"))
        failed = await node.wait(task["id"], ("failed", "released"), timeout_s=60)
        assert (failed["reason"] or "").startswith("place_failed: "), failed
        notes = [e["detail"] or "" for e in failed["history"] if e["event"] == "note"]
        assert [n for n in notes if "(attempt 1 of 2); trying again in 0.5 s" in n], notes
        status, orders = await node.call("GET", "/api/v1/orders?consumer=alice")
        assert status == 200, orders
        assert [o["state"] for o in orders["orders"]] == ["cancelled"], orders
        alice = await node.consumer()
        assert (alice["held"], alice["balance"]) == (0, DEPOSIT), alice
