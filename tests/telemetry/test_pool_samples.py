"""Pools' utilisation over time, sampled by the scheduler's job into the database: the API serves
the series, the console's pools page charts it (whoever watched), samples past the retention are
deleted, and bad queries are refused (SQLite and PostgreSQL for the store)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from node.telemetry.component import SAMPLE_JOB
from node.telemetry.samples import pool_samples_t, series, take_sample
from tests.support.console import Browserless, problem
from tests.support.tasks import pool_node, python_task


async def _next_second(after: int) -> None:
    """Wait until the UTC second is past `after` (samples are one per pool and second)."""
    deadline = time.monotonic() + 10
    while int(time.time()) <= after and time.monotonic() < deadline:  # noqa: ASYNC110 - a clock, not a state
        await asyncio.sleep(0.05)


async def test_the_scheduler_samples_pools_and_the_pools_page_charts_the_history(tmp_path: Path) -> None:
    """Two runs of the real job (one while a task holds a slot) give two samples of the local pool,
    served by the API and charted on the console's pools page of a session opened afterwards."""
    async with pool_node(tmp_path) as node:
        assert node.server.ctx is not None
        scheduler = node.server.ctx.scheduler
        assert await scheduler.run_job(SAMPLE_JOB) == "ok"
        first_ts = int(time.time())
        task = await node.submit(python_task("import time; time.sleep(30)"))
        await node.wait(task["id"], ("running",))
        await _next_second(first_ts)
        assert await scheduler.run_job(SAMPLE_JOB) == "ok"

        status, answer = await node.call("GET", "/api/v1/pools/utilisation")
        assert status == 200, answer
        assert answer["every_s"] == 60
        assert answer["keep_h"] == 48
        [(pool, sampled)] = answer["pools"].items()
        points = sampled["points"]
        assert len(points) == 2, points
        assert points[0][0] < points[1][0]
        assert points[1][1] >= 1  # the running task's slot
        assert points[1][2] >= points[1][1]
        assert sampled["unit"]

        visitor = Browserless(node.server.url)
        try:
            await visitor.sign_in(node.server.ctx.admin_token)
            status, html, _ = await visitor.page("/pools")
            assert status == 200, problem(html)
            assert f"Utilisation of {pool}" in html
            assert "2 samples" in html
            assert "sampled by the node's scheduler every 60 s" in html
        finally:
            await visitor.close()

        status, later = await node.call("GET", f"/api/v1/pools/utilisation?since_ts={points[1][0] + 1}")
        assert later["pools"] == {}
        for bad in ("soon", "-5"):
            status, answer = await node.call("GET", f"/api/v1/pools/utilisation?since_ts={bad}")
            assert (status, answer["error"]) == (400, "bad_since")
        _, token = await node.call("POST", "/api/v1/consumers/alice/tokens")
        status, answer = await node.call("GET", "/api/v1/pools/utilisation", token=token["token"])
        assert status == 403
        await node.call("POST", f"/api/v1/tasks/{task['id']}/stop")


def test_samples_past_the_retention_are_deleted(engine: Engine) -> None:
    """A sample older than the retention goes at the next run; newer ones stay, read oldest first."""
    now = 2_000_000_000
    rows = [
        {"pool": "gpu", "ts": now - 7200, "used": 1, "total": 4, "unit": "gpus"},
        {"pool": "gpu", "ts": now - 60, "used": 3, "total": 4, "unit": "gpus"},
        {"pool": "gpu", "ts": now - 1800, "used": 2, "total": 4, "unit": "gpus"},
        {"pool": "cpu", "ts": now - 30, "used": 0, "total": 8, "unit": "slots"},
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(pool_samples_t), rows)
    assert take_sample(engine, now, keep_s=3600) == 0  # no pools registered in this database
    assert series(engine, 0) == {
        "gpu": {"unit": "gpus", "points": [[now - 1800, 2, 4], [now - 60, 3, 4]]},
        "cpu": {"unit": "slots", "points": [[now - 30, 0, 8]]},
    }
    assert list(series(engine, 0, pool="cpu")) == ["cpu"]
    assert series(engine, now) == {}
