"""Steering by the node's network view: the network controller simulator as a real process behind
the node's network plugin, no latency table in the config; users at sites only the view knows are
steered by its latencies."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from tests.support.migration import NETSIM_TOKEN
from tests.support.polling import eventually
from tests.support.services import HEALTH_INTERVAL_S, replica_spec, serving, steered, steered_node
from tests.support.sims import BIN, CONFIGS, SimProcess

VIEW_ONLY = f"""
[services]
health_interval_s = {HEALTH_INTERVAL_S}
tolerance_ms = 5.0

[network]
site = "beijing"
"""


async def test_the_network_view_gives_latencies_and_sites(tmp_path: Path) -> None:
    """Replicas at beijing and guangzhou: users at guiyang (9 ms from guangzhou, 24 ms from beijing
    over the simulated backbone) reach guangzhou; users at shanghai rank beijing first (12 vs 14 ms);
    users naming no site are at the node's site."""
    netsim = SimProcess([str(BIN / "cpnode-netsim"), "--config", str(CONFIGS / "network" / "default.toml")])
    await asyncio.to_thread(netsim.start)
    try:
        async with steered_node(tmp_path, services_toml=VIEW_ONLY) as node:
            plugin = {
                "name": "backbone",
                "entry_point": "netsim",
                "options": {"url": netsim.url, "token": NETSIM_TOKEN},
            }
            status, body = await node.call("POST", "/api/v1/plugins", plugin)
            assert status == 201, body

            async def viewed() -> bool:
                await node.call("POST", "/api/v1/network/refresh", {})
                status, _resolved = await node.call("GET", "/api/v1/services/echo/resolve?site=guiyang")
                return status == 200

            status, created = await node.call(
                "POST",
                "/api/v1/services",
                {"name": "echo", "spec": replica_spec(), "replicas": 2, "consumer": "alice"},
            )
            assert status == 201, created
            by_site = {r["site"]: r["replica"] for r in await serving(node, "echo", 2)}
            await eventually(viewed, 30, "the services steering by the network view")
            seen: Counter[str] = Counter()
            for _ in range(10):
                status, answer = await steered(node, "echo", site="guiyang")
                seen[answer["replica"]] += 1
            assert seen == {by_site["guangzhou"]: 10}
            status, resolved = await node.call("GET", "/api/v1/services/echo/resolve?site=shanghai")
            ranked = resolved["replicas"]
            assert [r["replica"] for r in ranked] == [by_site["beijing"], by_site["guangzhou"]]
            assert ranked[0]["reasons"][0] == "latency 12 ms (shanghai → beijing)"
            assert ranked[1]["reasons"][0] == "latency 14 ms (shanghai → guangzhou)"
            status, resolved = await node.call("GET", "/api/v1/services/echo/resolve")
            assert resolved["site"] == "beijing"
            status, body = await node.call("GET", "/api/v1/services/echo/resolve?site=atlantis")
            assert (status, body["error"]) == (400, "unknown_site")
    finally:
        await asyncio.to_thread(netsim.stop)
