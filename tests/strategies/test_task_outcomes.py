"""Tasks whose demand names a strategy, on a real node with a local pool (real processes): the
order notes the strategy version, and the report reads time to running and task success back from
the tasks themselves."""

from __future__ import annotations

from pathlib import Path

from tests.support.tasks import pool_node, python_task


async def test_report_counts_task_success_and_time_to_running(tmp_path: Path) -> None:
    """Three tasks placed by `plain@1` (two exit 0, one exits 3): the report shows 3 orders, 3 times
    to running, and a success rate of 2/3 with its interval; `plain@2` chose nothing yet."""
    async with pool_node(tmp_path) as node:
        for kind in ("cost", "value"):
            status, body = await node.call("POST", "/api/v1/strategies", {"name": "plain", "kind": kind})
            assert status == 201, body
        ids = []
        for code in ("pass", "pass", "raise SystemExit(3)"):
            spec = python_task(code)
            spec["resources"] = {**spec["resources"], "strategy": "plain@1"}
            ids.append((await node.submit(spec))["id"])
        tasks = [await node.wait(task_id) for task_id in ids]
        assert [t["outcome"] for t in tasks] == ["succeeded", "succeeded", "failed"]
        for task in tasks:
            status, noted = await node.call("GET", f"/api/v1/strategies/orders/{task['order_id']}")
            assert (status, noted["strategy"], noted["version"], noted["kind"]) == (200, "plain", 1, "cost")
        status, report = await node.call("GET", "/api/v1/strategies/report?a=plain@1&b=plain@2")
        assert status == 200, report
        a, b = report["a"], report["b"]
        assert a["orders"] == 3
        assert a["time_to_running_s"]["n"] == 3
        assert a["time_to_running_s"]["mean"] >= 0
        assert a["task_success"]["n"] == 3
        assert round(a["task_success"]["mean"], 4) == round(2 / 3, 4)
        assert a["task_success"]["low"] < 2 / 3 < a["task_success"]["high"]
        assert a["price_paid"]["n"] == 3
        assert (b["orders"], b["task_success"]["mean"]) == (0, None)
