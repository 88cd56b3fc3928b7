"""Metering: usage from the instance's start and end, prorated to the second; a failed program is
charged for what ran, a run past max_duration_s up to the limit, a task whose input fails its hash
nothing; hand-typed usage is the operator's correction and never settles a task's order."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from node.tasks.metering import Run, run_limit_s, used_seconds
from node.trading import rules
from node.trading.errors import OrderRequestError
from tests.support.tasks import DEPOSIT, pool_node, python_task


def test_usage_counts_started_seconds_up_to_the_limit() -> None:
    """1 ms is a second; a never-started run is 0; a lost run counts to its last sighting; the
    limit (and the hours bought) caps it."""
    assert used_seconds(Run(1000, 1001), 3600) == 1
    assert used_seconds(Run(1000, 3000), 3600) == 2
    assert used_seconds(Run(None, 5000), 3600) == 0
    assert used_seconds(Run(0, 99_000, "lost", seen_running_ms=10_500), 3600) == 11
    assert used_seconds(Run(0, 9_000_000), run_limit_s(60, 1)) == 60
    assert run_limit_s(None, 2) == 7200
    assert run_limit_s(99_999, 1) == 3600


def test_usage_amount_is_prorated_and_rounded_up() -> None:
    """units × price × seconds / 3600 rounded up to the minor unit, at most the hours bought."""
    assert rules.usage_amount(1, 1, 3600, 7) == 7
    assert rules.usage_amount(2, 1, 100, 1) == 1  # 0.055… rounds up
    assert rules.usage_amount(1, 1, 100, 0) == 0
    assert rules.usage_amount(3, 2, 100, 7200) == 600
    with pytest.raises(OrderRequestError):
        rules.usage_amount(1, 1, 100, 3601)


SLEEP = "import time; time.sleep(1.2); print('slept')"


async def test_a_run_is_settled_for_its_metered_seconds(tmp_path: Path) -> None:
    """A 1.2 s program is charged 2 started seconds (one minor unit each here), both in the order
    and in the consumer's balance; nothing else stays held."""
    async with pool_node(tmp_path) as node:
        task = await node.submit(python_task(SLEEP))
        done = await node.wait(task["id"])
        assert done["used_s"] == 2, done
        assert done["amount"] == 2
        _, order = await node.call("GET", f"/api/v1/orders/{done['order_id']}")
        assert (order["state"], order["used_s"], order["settled_amount"]) == ("settled", 2, 2)
        me = await node.consumer()
        assert (me["balance"], me["held"]) == (DEPOSIT - 2, 0)


async def test_a_program_failing_is_charged_for_what_ran(tmp_path: Path) -> None:
    """A program that runs 1.2 s and exits 1 fails its task and is charged its 2 seconds."""
    async with pool_node(tmp_path) as node:
        task = await node.submit(python_task(SLEEP + "; raise SystemExit(1)"))
        done = await node.wait(task["id"])
        assert done["history"][-2]["state"] == "failed"
        assert (done["exit_code"], done["used_s"], done["amount"]) == (1, 2, 2)
        assert (await node.consumer())["balance"] == DEPOSIT - 2


async def test_a_run_past_its_limit_is_stopped_and_charged_up_to_it(tmp_path: Path) -> None:
    """max_duration_s = 1 on a 30 s program: stopped at the limit, charged exactly 1 second."""
    async with pool_node(tmp_path) as node:
        task = await node.submit(python_task("import time; time.sleep(30)", max_duration_s=1))
        done = await node.wait(task["id"])
        assert done["history"][-2]["state"] == "stopped"
        assert done["end_reason"] == "max_duration"
        assert (done["used_s"], done["amount"]) == (1, 1)
        assert (await node.consumer())["balance"] == DEPOSIT - 1


async def test_an_input_failing_its_hash_costs_nothing(tmp_path: Path) -> None:
    """An input whose bytes do not match its SHA-256 fails the task before the program runs; its
    order is cancelled and the consumer's money is all back."""
    data = tmp_path / "inputs" / "data.txt"
    data.parent.mkdir()
    data.write_bytes(b"the real bytes")
    wrong = hashlib.sha256(b"other bytes").hexdigest()
    extra = f', input_roots = ["{data.parent}"]'
    async with pool_node(tmp_path, pool_extra=extra) as node:
        spec = python_task(
            "print(open('data.txt').read())",
            inputs=[{"url": data.as_uri(), "path": "data.txt", "size_bytes": 14, "sha256": wrong}],
        )
        task = await node.submit(spec)
        done = await node.wait(task["id"])
        assert done["history"][-2]["state"] == "failed"
        assert done["end_reason"] == "input_mismatch"
        assert done["started_ms"] is None
        assert (done["used_s"], done["amount"]) == (0, 0)
        _, order = await node.call("GET", f"/api/v1/orders/{done['order_id']}")
        assert order["state"] == "cancelled"
        me = await node.consumer()
        assert (me["balance"], me["held"]) == (DEPOSIT, 0)


async def test_a_tasks_order_is_not_settled_by_hand(tmp_path: Path) -> None:
    """Hand-typed usage is an operator's correction: on a task's order it is refused (409)."""
    async with pool_node(tmp_path) as node:
        task = await node.submit(python_task("import time; time.sleep(30)"))
        running = await node.wait(task["id"], ("running",))
        status, body = await node.call(
            "POST", f"/api/v1/orders/{running['order_id']}/settle", {"used_hours": 1}
        )
        assert (status, body["error"]) == (409, "metered_order")
        await node.call("POST", f"/api/v1/tasks/{task['id']}/stop", {})
        await node.wait(task["id"])
