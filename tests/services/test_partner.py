"""A service whose replicas a partner runs: placed through the market on the partner's pool, found
through the partner's logs, steered to from this node, and grown there by scale-out."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from tests.support.polling import eventually
from tests.support.services import SERVICES_TOML, replica_spec, service, serving, steered
from tests.support.tasks import pair

BUYER_TOML = SERVICES_TOML.strip() + '\npartner_sites = { b = "guangzhou" }\n'


async def test_replicas_on_a_partner_serve_steered_traffic(tmp_path: Path) -> None:
    """A node without pools: its service's replicas run at partner b, and traffic reaches them."""
    async with pair(tmp_path, seller_slots=3, buyer_toml=BUYER_TOML) as p:
        body = {
            "name": "echo",
            "spec": replica_spec(),
            "replicas": 1,
            "max_replicas": 2,
            "scale_in_flight": 1,
            "scale_window_s": 0.5,
            "consumer": "alice",
        }
        status, created = await p.buyer.call("POST", "/api/v1/services", body)
        assert status == 201, created
        (first,) = await serving(p.buyer, "echo", 1)
        assert first["site"] == "guangzhou"
        task = await p.buyer.task(first["replica"])
        assert (task["kind"], task["partner"]) == ("remote", "b")
        status, answer = await steered(p.buyer, "echo")
        assert (status, answer["replica"]) == (200, first["replica"])
        status, resolved = await p.buyer.call("GET", "/api/v1/services/echo/resolve")
        assert "latency 30 ms (beijing → guangzhou)" in resolved["replicas"][0]["reasons"]
        stop = asyncio.Event()
        statuses: list[int] = []

        async def client() -> None:  # one slow request in flight after another until it grew
            while not stop.is_set():
                status, _answer = await steered(p.buyer, "echo", "/slow?delay_ms=1000")
                statuses.append(status)

        async def grown() -> bool:
            return int((await service(p.buyer, "echo"))["replicas"]) == 2

        load = [asyncio.create_task(client()) for _ in range(4)]
        await eventually(grown, 60, "scale-out to a second replica")
        stop.set()
        await asyncio.gather(*load)
        assert set(statuses) == {200}, statuses
        replicas = await serving(p.buyer, "echo", 2)
        seen: Counter[str] = Counter()
        for _ in range(10):
            _status, answer = await steered(p.buyer, "echo")
            seen[answer["replica"]] += 1
        assert set(seen) == {r["replica"] for r in replicas}
