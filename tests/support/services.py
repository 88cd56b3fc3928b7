"""Services test helpers: a node with a near and a far local pool, the echo replica program as a
service spec, and waiting for a service's replicas to serve."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from node.resources import config_file
from tests.support.polling import eventually, within
from tests.support.tasks import PRICE, Node, pool_node

REPLICA_PROGRAM = config_file("tasks", "echo_replica.py")
HEALTH_INTERVAL_S = 0.3
STEP_S = 30.0  # the bound of one request (a hang fails naming it, not at pytest's timeout)

SERVICES_TOML = f"""
[services]
site = "beijing"
health_interval_s = {HEALTH_INTERVAL_S}
health_timeout_s = 0.5
load_ms_per_request = 10.0
tolerance_ms = 5.0
latency_ms = {{ "beijing/guangzhou" = 30.0, "chengdu/beijing" = 20.0, "chengdu/guangzhou" = 20.0 }}
"""


def site_pool(name: str, site: str, slots: int, price: int) -> str:
    """A `[[pools]]` entry for a local pool at a network site."""
    return f"""
[[pools]]
name = "{name}"
plugin = "local"
site = "{site}"
options = {{ root = "pools/{name}", slots = {slots}, price_minor_per_slot_hour = {price} }}
"""


def replica_spec(**extra: Any) -> dict[str, Any]:
    """The echo replica as a task spec on one CPU slot, the cheapest first."""
    spec: dict[str, Any] = {
        "program": {"command": [sys.executable, str(REPLICA_PROGRAM)]},
        "resources": {"units": 1, "hours": 1, "chip_model": "cpu", "objective": "cost"},
    }
    spec.update(extra)
    return spec


@asynccontextmanager
async def steered_node(
    tmp_path: Path,
    name: str = "a",
    extra_toml: str = "",
    services_toml: str = SERVICES_TOML,
    db_url: str | None = None,
) -> AsyncIterator[Node]:
    """A node with pool `near` (beijing, 1 slot, cheaper) and pool `far` (guangzhou, 2 slots), and
    alice funded."""
    pools = site_pool("near", "beijing", 1, PRICE) + site_pool("far", "guangzhou", 2, 2 * PRICE)
    extra = services_toml + extra_toml
    async with pool_node(tmp_path, name, db_url=db_url, pools=pools, extra_toml=extra) as node:
        yield node


async def service(node: Node, name: str) -> dict[str, Any]:
    """A service as the API shows it."""
    async with within(STEP_S, f"GET /api/v1/services/{name}"):
        status, body = await node.call("GET", f"/api/v1/services/{name}")
    assert status == 200, body
    return dict(body)


async def serving(node: Node, name: str, count: int, timeout_s: float = 60) -> list[dict[str, Any]]:
    """Wait until `count` replicas of the service are healthy; their live state."""
    found: list[dict[str, Any]] = []

    async def check() -> bool:
        nonlocal found
        found = [r for r in (await service(node, name))["replica_list"] if r.get("healthy")]
        return len(found) >= count

    await eventually(check, timeout_s, f"{count} healthy replicas of {name}")
    return found


async def steered(node: Node, name: str, path: str = "/who", site: str | None = None) -> tuple[int, Any]:
    """One request through `/svc/{name}` (from `site`); (status, JSON answer)."""
    headers = {"X-Cpnode-Site": site} if site else {}
    async with (
        within(STEP_S, f"GET /svc/{name}{path} from {site or 'the node site'}"),
        node.http.get(f"/svc/{name}{path}", headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)
