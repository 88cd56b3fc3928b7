"""Scheduling over real HTTP on 127.0.0.1: a buyer node (beijing) with offers at three sites, its
partner (shanghai) whose catalog declares no site, and the network controller simulator as a real
process behind the node's network plugin. The same demand goes to three different pools under the
cost, nearest and co-schedule strategies; registered versions are split A/B by consumer; each order
notes the strategy that chose it; the report is computed from those orders."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.migration import NETSIM_TOKEN
from tests.support.nodes import make_node_dir, running_node
from tests.support.polling import eventually
from tests.support.sims import BIN, CONFIGS, SimProcess
from tests.support.trading import Market, market
from tests.support.trading import run_cli as run

SITED = "".join(
    f"""
[[offers]]
id = "{offer_id}"
pool = "{pool}"
region = "{site}"
chip_vendor = "nvidia"
chip_model = "A100"
chips_per_unit = 8
cpus = 64
memory_mib = 524288
storage_gib = 2000
free_units = 20
price_per_unit_hour = {price}
currency = "CNY"
networks = ["{site}"]
tags = ["gpu"]
metric_score = {score}
"""
    for offer_id, pool, site, price, score in (
        ("bj-slow", "bj-pool", "beijing", 1_000, 500),
        ("gz-mid", "gz-pool", "guangzhou", 3_000, 1_000),
        ("cd-fast", "cd-pool", "chengdu", 6_000, 8_000),
    )
)
BUYER = SITED + '\n[network]\nsite = "beijing"\nmeasure_timeout_s = 5\n'
# Users mostly in guangzhou; 20 GB of data in chengdu; 10 h of work at metric score 1000.
DEMAND: dict[str, Any] = {
    "units": 2,
    "hours": 1,
    "user_sites": [{"site": "guangzhou", "weight": 4}, {"site": "beijing", "weight": 1}],
    "data": {"site": "chengdu", "size_mb": 20_000},
    "compute_s": 36_000,
}


@asynccontextmanager
async def scheduling(
    tmp_path: Path, db_urls: tuple[str | None, str | None] = (None, None)
) -> AsyncIterator[Market]:
    """The two nodes, the network simulator hot-added as plugin `backbone`, and the view read once."""
    netsim = SimProcess([str(BIN / "cpnode-netsim"), "--config", str(CONFIGS / "network" / "default.toml")])
    await asyncio.to_thread(netsim.start)
    try:
        async with market(tmp_path, db_urls, buyer_extra=BUYER) as m:
            plugin = {
                "name": "backbone",
                "entry_point": "netsim",
                "options": {"url": netsim.url, "token": NETSIM_TOKEN},
            }
            status, body = await m.post("/api/v1/plugins", plugin)
            assert status == 201, body

            async def sites() -> bool:
                status, view = await m.post("/api/v1/network/refresh", {})
                return status == 200 and "guangzhou" in view["sites"]

            await eventually(sites, 30, "the network view has the simulator's sites")
            yield m
    finally:
        await asyncio.to_thread(netsim.stop)


async def test_network_view_and_the_three_strategies_pick_three_pools(tmp_path: Path) -> None:
    """The view merges the plugin's topology and the partner's measured round trip; cost, nearest
    and co-schedule place one demand on three different pools, each with its explanation."""
    async with scheduling(tmp_path) as m:
        status, view = await m.get("/api/v1/network")
        assert status == 200, view
        assert {"beijing", "shanghai", "guangzhou", "chengdu", "guiyang", "node:shanghai"} <= set(
            view["sites"]
        )
        assert {link["network"] for link in view["links"]} == {"backbone", "measured"}
        status, route = await m.get("/api/v1/network/path?src=chengdu&dst=guangzhou")
        assert (status, route["hops"], route["latency_us"]) == (
            200,
            ["chengdu", "guiyang", "guangzhou"],
            15_000,
        )

        chosen = {}
        for strategy in ("cost", "nearest", "coschedule"):
            status, body = await m.post("/api/v1/match", {**DEMAND, "strategy": strategy})
            assert status == 200, body
            assert body["strategy"]["kind"] == strategy
            assert all("explain" in match for match in body["matches"])
            chosen[strategy] = body["matches"][0]
        assert chosen["cost"]["offer_id"] == "shanghai-cpu"  # the partner's 500 per unit-hour
        assert chosen["nearest"]["offer_id"] == "gz-mid"
        assert chosen["nearest"]["explain"]["latency_ms"] == 5.0  # (4 × 0 + 1 × 25) / 5
        assert chosen["coschedule"]["offer_id"] == "cd-fast"  # the data is there, and it is fast
        assert chosen["coschedule"]["explain"]["transfer_s"] == 0.0
        assert len({c["pool"] for c in chosen.values()}) == 3
        status, body = await m.post("/api/v1/match?limit=2", {**DEMAND, "strategy": "nearest"})
        assert (status, len(body["matches"]), body["candidates"]) == (200, 2, 5)  # 3 sited + 2 of the partner
        status, body = await m.post("/api/v1/match?limit=0", {**DEMAND, "strategy": "nearest"})
        assert (status, body["error"]) == (422, "bad_demand")

        status, body = await m.post("/api/v1/match", {**DEMAND, "strategy": "nearest", "max_latency_ms": 3})
        assert status == 200, body
        assert body["matches"] == []
        assert body["nearest_misses"][0]["offer_id"] == "gz-mid"
        assert body["excluded_by_reason"]["too_far"] >= 1


async def test_bad_input_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    """Unknown strategy or version, bad weights, a split not summing to 100, and a data site the
    view does not know: each a clear 4xx naming what is wrong."""
    async with scheduling(tmp_path) as m:
        status, body = await m.post("/api/v1/match", {**DEMAND, "strategy": "fastest"})
        assert (status, body["error"]) == (404, "unknown_strategy")
        status, body = await m.post(
            "/api/v1/strategies", {"name": "mix", "kind": "composite", "params": {"weights": {"cost": -1}}}
        )
        assert (status, body["error"], body["field"]) == (422, "bad_strategy", "params.weights.cost")
        status, body = await m.post(
            "/api/v1/strategies", {"name": "mix", "kind": "composite", "params": {"weights": {"cost": 0}}}
        )
        assert (status, body["field"]) == (422, "params.weights")
        status, body = await m.post("/api/v1/match", {**DEMAND, "strategy": "mix@1"})
        assert (status, body["error"]) == (404, "unknown_strategy")
        data = {"site": "atlantis", "size_mb": 1}
        status, body = await m.post("/api/v1/match", {**DEMAND, "data": data, "strategy": "coschedule"})
        assert (status, body["error"]) == (422, "bad_demand")
        assert "atlantis" in body["message"]
        for _ in range(2):
            status, body = await m.post("/api/v1/strategies", {"name": "edge", "kind": "nearest"})
            assert status == 201, body
        async with m.buyer_http.put("/api/v1/strategies/edge/split", json={"split": {"1": 60, "2": 30}}) as r:
            assert (r.status, (await r.json())["message"]) == (422, "split: percentages sum to 90, not 100")
        status, listing = await m.get("/api/v1/strategies")
        assert listing["splits"] == {}
        assert [(s["name"], s["version"]) for s in listing["strategies"]] == [("edge", 1), ("edge", 2)]


async def test_ab_split_by_consumer_and_report_from_real_orders(
    tmp_path: Path, db_urls: tuple[str | None, str | None]
) -> None:
    """Two versions split 50/50: each consumer keeps one version; every order notes its strategy
    version; the report counts those orders with price intervals (SQLite and PostgreSQL)."""
    async with scheduling(tmp_path, db_urls) as m:
        for kind in ("cost", "nearest"):
            status, body = await m.post(
                "/api/v1/strategies",
                {
                    "name": "place",
                    "kind": "composite" if kind == "nearest" else kind,
                    "params": {"weights": {"latency": 1}} if kind == "nearest" else {},
                },
            )
            assert status == 201, body
        async with m.buyer_http.put(
            "/api/v1/strategies/place/split", json={"split": {"1": 50, "2": 50}}
        ) as r:
            assert r.status == 200, await r.json()
        consumers = [f"c{n}" for n in range(8)]
        for consumer in consumers:
            status, body = await m.post("/api/v1/consumers", {"id": consumer})
            assert status == 201, body
            status, body = await m.post(
                f"/api/v1/consumers/{consumer}/deposits", {"amount": 500_000, "id": f"dep-{consumer}"}
            )
            assert status in (200, 201), body
        versions: dict[str, int] = {}
        for consumer in consumers * 2:
            demand = {**DEMAND, "units": 1, "strategy": "place", "sources": ["own"]}
            status, body = await m.post("/api/v1/orders", {"consumer": consumer, "demand": demand})
            assert status == 201, body
            version = body["strategy"]["version"]
            assert versions.setdefault(consumer, version) == version  # a consumer keeps its version
            [order] = body["orders"]
            status, noted = await m.get(f"/api/v1/strategies/orders/{order['id']}")
            assert (status, noted["strategy"], noted["version"]) == (200, "place", version)
        code, out, err = await run(m, "strategies", "order", order["id"])
        assert code == 0, err
        assert f"chosen by place@{version} (" in out
        assert set(versions.values()) == {1, 2}
        status, report = await m.get("/api/v1/strategies/report?a=place@1&b=place@2")
        assert status == 200, report
        counts = {v: 2 * list(versions.values()).count(v) for v in (1, 2)}
        assert (report["a"]["orders"], report["b"]["orders"]) == (counts[1], counts[2])
        # version 1 (cost) orders the 1,000 offer, version 2 (latency) the 3,000 one in guangzhou.
        assert report["a"]["price_paid"]["mean"] == 1_000
        assert report["b"]["price_paid"]["mean"] == 3_000
        assert report["b"]["latency_ms"]["mean"] == 5.0


async def test_cli_shows_the_network_and_manages_strategies(tmp_path: Path) -> None:
    """`cpnode network show|path`, `cpnode market match --strategy` with its explanations, and
    `cpnode strategies add|list|split|show|retire|report`, as tables and as JSON; bad input exits 1."""
    async with scheduling(tmp_path) as m:
        code, out, err = await run(m, "network", "show")
        assert code == 0, err
        assert "bj-gz" in out
        assert "node:shanghai" in out
        code, out, err = await run(m, "network", "path", "chengdu", "guangzhou", "--json")
        assert code == 0, err
        assert json.loads(out)["hops"] == ["chengdu", "guiyang", "guangzhou"]
        flags = ["--units", "2", "--hours", "1", "--user-site", "guangzhou:4", "--user-site", "beijing"]
        code, out, err = await run(
            m, "market", "match", *flags, "--strategy", "nearest", "--max-latency-ms", "10"
        )
        assert code == 0, err
        assert "by strategy nearest@0 (nearest)" in out
        assert "1. gz-mid at guangzhou: latency_ms 5.0" in out
        assert "nearest miss: cd-fast at chengdu" in out

        code, out, err = await run(
            m,
            "strategies",
            "add",
            "mix",
            "--kind",
            "composite",
            "--params",
            '{"weights": {"latency": 2, "cost": 1}}',
        )
        assert code == 0, err
        assert "registered mix@1 (composite)" in out
        code, out, err = await run(
            m, "strategies", "add", "mix", "--kind", "composite", "--params", '{"weights": {"cost": -2}}'
        )
        assert code == 1
        assert "params.weights.cost" in err
        await run(m, "strategies", "add", "mix", "--kind", "composite", "--note", "all terms equal")
        code, out, err = await run(m, "strategies", "split", "mix", "1=70", "2=40")
        assert code == 1
        assert "sum to 110, not 100" in err
        code, out, err = await run(m, "strategies", "split", "mix", "1=70", "2=30")
        assert code == 0, err
        code, out, err = await run(m, "strategies", "list")
        assert code == 0, err
        assert "A/B split of mix: mix@1: 70 %, mix@2: 30 %" in out
        code, out, err = await run(m, "strategies", "retire", "mix", "2", "--json")
        assert code == 0, err
        assert json.loads(out)["active"] is False
        code, out, err = await run(m, "strategies", "show", "mix", "--json")
        assert (json.loads(out)["split"], len(json.loads(out)["versions"])) == (None, 2)
        code, out, err = await run(m, "market", "match", *flags, "--strategy", "mix@2")
        assert code == 1
        assert "unknown_strategy" in err
        code, out, err = await run(m, "strategies", "report", "mix@1", "mix@2")
        assert code == 0, err
        assert "no data" in out


async def test_the_scheduler_keeps_the_view_fresh(tmp_path: Path) -> None:
    """With the scheduler on, the view follows the network by itself: a link failed in the
    simulator shows as down in `GET /api/v1/network`, and paths avoid it; with the simulator
    gone, the view names the plugin it could not read and keeps its last links."""
    netsim = SimProcess([str(BIN / "cpnode-netsim"), "--config", str(CONFIGS / "network" / "default.toml")])
    await asyncio.to_thread(netsim.start)
    try:
        config = make_node_dir(tmp_path, "solo", extra_toml="[network]\nrefresh_s = 0.3\n")
        async with running_node(config) as server, aiohttp.ClientSession(server.url) as http:
            assert server.ctx is not None
            headers = {"Authorization": f"Bearer {server.ctx.admin_token}"}
            plugin = {
                "name": "backbone",
                "entry_point": "netsim",
                "options": {"url": netsim.url, "token": NETSIM_TOKEN},
            }
            async with http.post("/api/v1/plugins", json=plugin, headers=headers) as response:
                assert response.status == 201, await response.text()

            async def link_state(link_id: str) -> bool | None:
                async with http.get("/api/v1/network", headers=headers) as response:
                    view = await response.json()
                return next((link["up"] for link in view["links"] if link["id"] == link_id), None)

            await eventually(lambda: _is(link_state("bj-gz"), True), 30, "the job read the topology")
            sim_headers = {"Authorization": f"Bearer {NETSIM_TOKEN}"}
            async with http.post(f"{netsim.url}/_sim/links/bj-gz/fail", headers=sim_headers) as response:
                assert response.status == 200, await response.text()
            await eventually(lambda: _is(link_state("bj-gz"), False), 30, "the job saw the link fail")
            async with http.get(
                "/api/v1/network/path?src=beijing&dst=guangzhou", headers=headers
            ) as response:
                route = await response.json()
            assert route["hops"] == ["beijing", "shanghai", "guangzhou"]

            await asyncio.to_thread(netsim.kill)

            async def plugin_named_unread() -> bool:
                async with http.get("/api/v1/network", headers=headers) as response:
                    view = await response.json()
                names = [e["network"] for e in view["errors"]]
                kept = {link["network"] for link in view["links"]} == {"backbone"}
                return (
                    names == ["backbone"] and "last links are kept" in view["errors"][0]["message"] and kept
                )

            await eventually(
                plugin_named_unread, 60, "the view names the plugin it could not read, keeping its links"
            )
    finally:
        await asyncio.to_thread(netsim.stop)


async def _is(value: Awaitable[bool | None], expected: bool) -> bool:
    return await value is expected
