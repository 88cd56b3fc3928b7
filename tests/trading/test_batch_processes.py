"""Concurrent orders between two real `cpnode run` processes: the buyer sends their trade requests
in batches, the seller answers each trade with its own signed answer, refuses the ones it has no
capacity for without touching the others, and served fewer exchanges than trades."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from federation import store
from federation.partners import Agreement, Partner
from node.config import load_settings
from node.db import make_engine
from node.identity import load_identity
from tests.support.cli import cpnode
from tests.support.nodes import NodeProcess, make_node_dir
from tests.support.trading import BASE_TOML, offer, trading_toml

ORDERS, FREE = 16, 12
BASE = BASE_TOML.replace("max_trades_in_flight = 1\n", "max_trades_in_flight = 32\n")


@pytest.fixture(name="pair")
def fixture_pair(tmp_path: Path) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Seller and buyer, each a running `cpnode run` process, pinned to each other: per node its
    config, URL and admin token."""
    seller = make_node_dir(
        tmp_path, "shanghai", extra_toml=BASE + trading_toml() + offer("shanghai", "gpu", FREE, 10_000)
    )
    buyer = make_node_dir(tmp_path, "beijing", extra_toml=BASE + trading_toml())
    started: list[NodeProcess] = []
    try:
        nodes: list[dict[str, Any]] = []
        for config in (seller, buyer):
            process = NodeProcess(config)
            url = process.start()
            started.append(process)
            settings = load_settings(config, environ={})
            token = (settings.base_dir / settings.keys.admin_token_path).read_text().strip()
            key = load_identity(settings).public_key
            nodes.append(
                {"config": config, "url": url, "token": token, "key": key, "db": settings.database_url}
            )
        s, b = nodes
        for here, there, agreement in ((s, b, Agreement(credit_limit=10**9)), (b, s, Agreement())):
            engine = make_engine(here["db"])
            name = "beijing" if there is b else "shanghai"
            store.add_partner(
                engine, Partner(name, (there["url"],), there["key"], agreement), int(time.time())
            )
            engine.dispose()
        yield s, b
    finally:
        for process in started:
            assert process.stop() == 0, process.log()


async def _api(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, url, json=body) as response:
        return response.status, await response.json()


async def _metrics(http: aiohttp.ClientSession, node: dict[str, Any]) -> dict[str, int]:
    """The node's handled POSTs to the trade routes: route → count (every status)."""
    async with http.get(node["url"] + "/metrics", headers=_auth(node)) as response:
        text = await response.text()
    counts: dict[str, int] = {}
    pattern = r'cpnode_http_requests_total\{[^}]*route="(/fed/v1/trades(?:/batch)?)"[^}]*\} (\S+)'
    for route, value in re.findall(pattern, text):
        counts[route] = counts.get(route, 0) + int(float(value))
    return counts


def _auth(node: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {node['token']}"}


def test_concurrent_orders_between_processes_go_in_batches(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """16 concurrent orders for 12 free units: 12 accepted, each once with the seller's own signed
    acceptance, 4 refused for capacity, and the seller saw fewer trade exchanges than trades."""
    seller, buyer = pair
    synced = cpnode("catalog", "sync", "--json", config=buyer["config"]).json()
    assert synced[0]["outcome"] == "ok", synced

    async def scenario() -> tuple[list[tuple[int, Any]], list[Any], Any, dict[str, int]]:
        async with aiohttp.ClientSession(headers=_auth(buyer)) as http:
            base = buyer["url"] + "/api/v1"
            assert (await _api(http, "POST", base + "/consumers", {"id": "alice"}))[0] == 201
            deposit = {"amount": 10**8, "id": "dep-alice-1"}
            assert (await _api(http, "POST", base + "/consumers/alice/deposits", deposit))[0] == 201
            order = {"consumer": "alice", "offer_id": "shanghai-gpu", "source": "partner:shanghai"}
            placed = await asyncio.gather(
                *(
                    _api(http, "POST", base + "/orders", {**order, "units": 1, "hours": 1})
                    for _ in range(ORDERS)
                )
            )
            shown = [await _api(http, "GET", f"{base}/orders/{body['id']}") for s, body in placed if s == 201]
            async with aiohttp.ClientSession(headers=_auth(seller)) as seller_http:
                _, sales = await _api(seller_http, "GET", seller["url"] + "/api/v1/sales")
            return placed, [body for _, body in shown], sales, await _metrics(http, seller)

    placed, shown, sales, exchanges = asyncio.run(scenario())
    accepted = [body for status, body in placed if status == 201]
    refused = [body for status, body in placed if status != 201]
    assert len(accepted) == FREE, placed
    assert len(refused) == ORDERS - FREE
    assert all(body["error"] == "not_enough_free_units" for body in refused), refused
    assert {o["state"] for o in accepted} == {"accepted"}
    trade_ids = {o["id"] for o in accepted}
    assert len(trade_ids) == FREE
    for found in shown:
        acceptance = found["receipt"]["acceptance"]
        assert (acceptance["issuer"], acceptance["trade_id"]) == ("shanghai", found["id"])
        assert "shanghai" in acceptance["signatures"]
    by_state: dict[str, list[str]] = {}
    for sale in sales["sales"]:
        by_state.setdefault(sale["state"], []).append(sale["trade_id"])
    assert sorted(by_state["accepted"]) == sorted(trade_ids)  # each accepted trade sold once
    assert len(by_state.get("refused", [])) == ORDERS - FREE
    total = exchanges.get("/fed/v1/trades", 0) + exchanges.get("/fed/v1/trades/batch", 0)
    assert exchanges.get("/fed/v1/trades/batch", 0) >= 1, exchanges
    assert total < ORDERS, json.dumps(exchanges)
