"""Tasks test helpers: a node with a `local` pool, a funded consumer, and programs to run."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from node.service import NodeServer
from tests.support.nodes import make_node_dir, running_node

PRICE = 3600  # per slot-hour: one minor unit per second of a 1-slot flavor


DEPOSIT = 1_000_000


def pool_toml(name: str = "cpu", slots: int = 2, price: int = PRICE, extra: str = "") -> str:
    """A `[[pools]]` entry for a local pool whose `pytorch` runtime is this interpreter."""
    return f"""
[[pools]]
name = "{name}"
plugin = "local"
options = {{ root = "pools/{name}", slots = {slots}, price_minor_per_slot_hour = {price}, runtimes = {{ pytorch = ["{sys.executable}"] }} {extra} }}
"""


NODE_TOML = """
[scheduler]
enabled = false

[trading]
recover_every_s = 3600

[tasks]
poll_s = 0.05
partner_poll_s = 0.1
"""


def python_task(
    code: str, *, outputs: list[str] | None = None, max_duration_s: int | None = None, **extra: Any
) -> dict[str, Any]:
    """A task spec running `python -c CODE` on one slot of the cheapest CPU offer."""
    spec: dict[str, Any] = {
        "program": {"command": [sys.executable, "-c", code]},
        "outputs": outputs or [],
        "resources": {"units": 1, "hours": 1, "chip_model": "cpu", "objective": "cost"},
    }
    if max_duration_s is not None:
        spec["max_duration_s"] = max_duration_s
    spec.update(extra)
    return spec


@dataclass
class Node:
    """A running node and an admin HTTP session to it."""

    server: NodeServer
    http: aiohttp.ClientSession

    async def call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        """One API call (admin token unless `token`); (status, JSON answer)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, path, json=body, headers=headers) as response:
            return response.status, await response.json()

    async def submit(self, spec: dict[str, Any], consumer: str = "alice") -> dict[str, Any]:
        """Submit a task for `consumer`; the stored task."""
        status, body = await self.call("POST", "/api/v1/tasks", {"spec": spec, "consumer": consumer})
        assert status == 201, body
        return dict(body)

    async def task(self, task_id: str) -> dict[str, Any]:
        """A task as the API shows it."""
        status, body = await self.call("GET", f"/api/v1/tasks/{task_id}")
        assert status == 200, body
        return dict(body)

    async def wait(
        self, task_id: str, states: tuple[str, ...] = ("released",), timeout_s: float = 60
    ) -> dict[str, Any]:
        """Poll until the task is in one of `states`."""
        deadline = time.monotonic() + timeout_s
        while True:
            task = await self.task(task_id)
            if task["state"] in states:
                return task
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"task {task_id} is {task['state']} ({task.get('detail')}), not {states}"
                )
            await asyncio.sleep(0.05)

    async def consumer(self, name: str = "alice") -> dict[str, Any]:
        """A consumer's balances."""
        status, body = await self.call("GET", f"/api/v1/consumers/{name}")
        assert status == 200, body
        return dict(body)


@asynccontextmanager
async def pool_node(
    tmp_path: Path,
    name: str = "a",
    *,
    db_url: str | None = None,
    extra_toml: str = "",
    slots: int = 2,
    pool_extra: str = "",
    pools: str | None = None,
) -> AsyncIterator[Node]:
    """A running node with a local pool of `slots` slots (or the `[[pools]]` of `pools`) and alice
    funded with DEPOSIT."""
    pools = pool_toml(slots=slots, extra=pool_extra) if pools is None else pools
    config = make_node_dir(tmp_path, name, db_url=db_url, extra_toml=NODE_TOML + pools + extra_toml)
    async with running_node(config) as server:
        assert server.ctx is not None
        http = aiohttp.ClientSession(
            server.url, headers={"Authorization": f"Bearer {server.ctx.admin_token}"}
        )
        node = Node(server, http)
        try:
            await node.call("POST", "/api/v1/consumers", {"id": "alice"})
            await node.call("POST", "/api/v1/consumers/alice/deposits", {"amount": DEPOSIT, "id": "d1"})
            yield node
        finally:
            await http.close()


@dataclass
class Pair:
    """A buyer node (no pools) and a seller node with a local pool that pin each other."""

    buyer: Node
    seller: Node

    async def sync(self) -> None:
        """The buyer fetches the seller's current catalog now."""
        from federation.sync import run_round
        from tests.support.federation import service_of

        results = await run_round(service_of(self.buyer.server), force=True)
        assert all(r.outcome in ("ok", "unchanged") for r in results), results


PAIR_TOML = """
[federation]
allow_networks = ["127.0.0.0/8"]
sync_interval_s = 3600

[trading]
trade_timeout_s = 5
"""


@asynccontextmanager
async def pair(
    tmp_path: Path,
    *,
    seller_slots: int = 2,
    credit_limit: int = 10_000_000,
    buyer_toml: str = "",
    seller_toml: str = "",
) -> AsyncIterator[Pair]:
    """Start seller `b` (a local pool) and buyer `a` (none), pin each other, fund alice on `a`,
    and let `a` fetch `b`'s catalog; `buyer_toml` and `seller_toml` end their configs."""
    from federation.partners import Agreement
    from tests.support.trading import pin

    base = NODE_TOML.replace("[trading]\nrecover_every_s = 3600\n", "")
    seller_config = make_node_dir(
        tmp_path, "b", extra_toml=base + PAIR_TOML + pool_toml(slots=seller_slots) + seller_toml
    )
    buyer_config = make_node_dir(tmp_path, "a", extra_toml=base + PAIR_TOML + buyer_toml)
    async with running_node(seller_config) as seller, running_node(buyer_config) as buyer:
        pin(seller, buyer, Agreement(credit_limit=credit_limit))
        pin(buyer, seller, Agreement())
        nodes = []
        for server in (buyer, seller):
            assert server.ctx is not None
            nodes.append(
                Node(
                    server,
                    aiohttp.ClientSession(
                        server.url, headers={"Authorization": f"Bearer {server.ctx.admin_token}"}
                    ),
                )
            )
        try:
            found = Pair(*nodes)
            await found.buyer.call("POST", "/api/v1/consumers", {"id": "alice"})
            await found.buyer.call(
                "POST", "/api/v1/consumers/alice/deposits", {"amount": DEPOSIT, "id": "d1"}
            )
            await found.sync()
            yield found
        finally:
            for node in nodes:
                await node.http.close()
