"""Business metrics of a node with local pools: a task's run shows in the pool's utilisation and the
tasks by state, its settlement as revenue from the node's own pools; a migration's transfer shows
in the migrations by state and the bytes moved."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from node.pools.routes import HOST

# The migration tests' node with two local pools and a running express (fixture `config`).
from tests.migration.test_in_process import api_of, fixture_config, pools_online, run_counter  # noqa: F401 (a fixture)
from tests.support.nodes import running_node
from tests.support.polling import eventually
from tests.support.scrape import scrape
from tests.support.tasks import pool_node, python_task

FRESH_ONLY = "\n[metrics]\ncache_s = 0\n"
FAST = """
[metrics]
cache_s = 0

[connectors]
refresh_interval_s = 0.1
"""


async def test_a_running_task_fills_its_pool_and_its_settlement_is_revenue(tmp_path: Path) -> None:
    """While a task holds the only slot the pool reads fully used and the task `running`; once it is
    released the pool is free again and what the order settled counts as own-pool revenue."""
    go = tmp_path / "go"
    wait_for_go = f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.05)"
    async with pool_node(tmp_path, slots=1, extra_toml=FAST) as node:
        before = await scrape(node.server.url)
        assert before.value("cpnode_pool_online", pool="cpu", state="online") == 1
        assert before.total("cpnode_tasks") == 0
        task = await node.submit(python_task(wait_for_go))

        async def pool_full() -> bool:
            s = await scrape(node.server.url)
            return (
                s.value("cpnode_pool_utilisation_ratio", pool="cpu") == 1.0
                and s.value("cpnode_tasks", kind="own", state="running") == 1
            )

        await eventually(pool_full, 60, "the pool full and the task running")
        go.touch()
        done = await node.wait(task["id"])
        assert done["amount"] > 0

        async def pool_free() -> bool:
            s = await scrape(node.server.url)
            return s.value("cpnode_pool_utilisation_ratio", pool="cpu") == 0.0

        await eventually(pool_free, 60, "the pool free again")
        after = await scrape(node.server.url)
        assert after.value("cpnode_tasks", kind="own", state="released") == 1
        assert after.value("cpnode_tasks", kind="own", state="running") is None
        assert after.value("cpnode_orders", partner="", state="settled") == 1
        assert after.value("cpnode_revenue_minor_total", partner="", currency="CNY") == done["amount"]


async def test_a_migration_counts_its_transferred_bytes(config: Path) -> None:
    """After a migration between two local pools completes, it counts as completed and the bytes its
    transfer moved (the counter's 1 MiB state and more) add to the bytes moved."""
    with config.open("a", encoding="utf-8") as handle:
        handle.write(FRESH_ONLY)
    async with running_node(config) as server, aiohttp.ClientSession() as session:
        host = server._runner.app[HOST]  # type: ignore[union-attr]
        api = api_of(server, session)
        await eventually(lambda: pools_online(host), 30, "both pools online")
        before = await scrape(server.url)
        assert before.value("cpnode_migration_transferred_bytes_total") == 0
        source = await run_counter(host, "a")
        body = {"source_pool": "a", "instance_id": source, "to_pool": "b"}
        migration = await api.ok("POST", "/api/v1/migrations", body, 201)
        done = await api.wait(migration["id"], {"completed", "rolled_back", "needs_attention"}, 60)
        assert done["state"] == "completed", done
        after = await scrape(server.url)
        assert after.value("cpnode_migrations", state="completed") == 1
        moved = after.value("cpnode_migration_transferred_bytes_total")
        assert moved == done["progress"]["bytes_done"]
        assert moved is not None
        assert moved >= 1 << 20
        assert after.value("cpnode_migration_bytes_done", migration=done["id"], state="completed") is None
