"""Business metrics of a node run as two `cpnode run` processes over one database: an order placed
through one replica shows in the other's /metrics at once (the values come from the database, not
from the process that handled the request)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from node.config import load_settings
from node.runfile import read_admin_token
from tests.support.nodes import NodeProcess, make_node_dir, offer_entry
from tests.support.polling import eventually
from tests.support.scrape import scrape

TOML = """
[scheduler]
enabled = false

[metrics]
cache_s = 0
""" + offer_entry("beijing-gpu", "beijing", 4, 10_000)


@pytest.fixture(name="replicas")
def fixture_replicas(tmp_path: Path, db_url: str) -> Iterator[tuple[str, str, str]]:
    """Two processes of one node (a copy of its folder: the same key, token and database URL, SQLite
    by absolute path or PostgreSQL): their URLs and the admin token."""
    first = make_node_dir(tmp_path, "beijing", db_url=db_url, extra_toml=TOML)
    shutil.copytree(first.parent, tmp_path / "copy")
    second = tmp_path / "copy" / "node.toml"
    started = []
    try:
        for config in (first, second):
            process = NodeProcess(config)
            process.start()
            started.append(process)
        yield started[0].url, started[1].url, read_admin_token(load_settings(first, environ={}))
    finally:
        for process in started:
            assert process.stop() == 0, process.log()


async def test_an_order_through_one_replica_shows_in_the_other(replicas: tuple[str, str, str]) -> None:
    """A funded consumer's order placed at replica A: replica B's scrape shows the order, the open
    value and the reserved units, and both replicas answer the same business numbers."""
    url_a, url_b, token = replicas
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(url_a, headers=headers) as http:
        for path, body in (
            ("/api/v1/consumers", {"id": "alice"}),
            ("/api/v1/consumers/alice/deposits", {"amount": 500_000, "id": "d1"}),
            (
                "/api/v1/orders",
                {
                    "consumer": "alice",
                    "offer_id": "beijing-gpu",
                    "source": "own:config",
                    "units": 2,
                    "hours": 3,
                },
            ),
        ):
            async with http.post(path, json=body) as response:
                assert response.status == 201, await response.text()

    async def b_shows_the_order() -> bool:
        return (await scrape(url_b)).value("cpnode_orders", partner="", state="accepted") == 1

    await eventually(b_shows_the_order, 20, "replica B showing the order")
    a, b = await scrape(url_a), await scrape(url_b)
    for name, labels in (
        ("cpnode_orders", {"partner": "", "state": "accepted"}),
        ("cpnode_open_trade_value_minor", {"partner": "", "side": "own", "currency": "CNY"}),
        ("cpnode_pool_reserved_units", {"pool": "pool-a", "offer": "beijing-gpu"}),
        ("cpnode_pool_free_units", {"pool": "pool-a", "offer": "beijing-gpu"}),
    ):
        assert a.value(name, **labels) == b.value(name, **labels) is not None, name
    assert b.value("cpnode_open_trade_value_minor", partner="", side="own", currency="CNY") == 60_000
    assert b.value("cpnode_pool_reserved_units", pool="pool-a", offer="beijing-gpu") == 2
    # B handled no order request: its HTTP counters say so, its business metrics do not depend on it.
    assert a.total("cpnode_http_requests_total", route="/api/v1/orders") == 1
    assert b.total("cpnode_http_requests_total", route="/api/v1/orders") == 0
