"""Two API replicas of one node over one database (real HTTP on 127.0.0.1, both backends), each
with its own cached offer columns: a partner's new catalog (a changed price, a new offer) and an
own offer's reservation made through one replica are seen by the next demand on either, and both
answer alike."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp

from node.service import NodeServer
from tests.federation.replicas import replica_pair
from tests.market.test_offer_cache import _offer, add_partner, receive
from tests.support.trading import engine_of

DEMAND = {"units": 1, "hours": 1, "strategy": "cost", "chip_model": "A100"}


async def best(server: NodeServer, url: str) -> tuple[list[tuple[str, int, int]], int]:
    """(offer id, price, free units) of the first three matches at one replica, and their count."""
    assert server.ctx is not None
    headers = {"Authorization": f"Bearer {server.ctx.admin_token}"}
    async with (
        aiohttp.ClientSession(url, headers=headers) as http,
        http.post("/api/v1/match", json=DEMAND, params={"limit": "3"}) as response,
    ):
        body: dict[str, Any] = await response.json()
        assert response.status == 200, body
    matches = [(m["offer_id"], m["price_per_unit_hour"], m["free_units"]) for m in body["matches"]]
    return matches, int(body["candidates"])


async def test_two_replicas_see_each_change_at_their_next_demand(tmp_path: Path, db_url: str) -> None:
    """A new catalog, a new offer and a reservation: each is in the next answer of both replicas."""
    async with replica_pair(tmp_path, db_url) as pair:
        a, b = pair.a, pair.b
        engine = engine_of(a)
        now = int(time.time())
        add_partner(engine, "beta")
        receive(engine, "beta", 1, [_offer("beta-1", 9_000)], now, 3600)

        async def both() -> tuple[list[tuple[str, int, int]], int]:
            first, second = await best(a, pair.a_url), await best(b, pair.b_url)
            assert first == second
            return first

        # alpha's own offers: alpha-pool-a-0 (10 free, 10,000) and alpha-pool-a-1 (11 free, 10,001).
        assert await both() == (
            [("beta-1", 9_000, 8), ("alpha-pool-a-0", 10_000, 10), ("alpha-pool-a-1", 10_001, 11)],
            3,
        )
        assert await both() == (
            [("beta-1", 9_000, 8), ("alpha-pool-a-0", 10_000, 10), ("alpha-pool-a-1", 10_001, 11)],
            3,
        )

        receive(engine, "beta", 2, [_offer("beta-1", 12_000), _offer("beta-2", 9_500)], now + 1, 3600)
        matches, count = await both()
        assert count == 4
        assert matches == [
            ("beta-2", 9_500, 8),
            ("alpha-pool-a-0", 10_000, 10),
            ("alpha-pool-a-1", 10_001, 11),
        ]

        # A consumer's order through replica A reserves 4 units of alpha-pool-a-0.
        assert a.ctx is not None
        headers = {"Authorization": f"Bearer {a.ctx.admin_token}"}
        async with aiohttp.ClientSession(pair.a_url, headers=headers) as http:
            async with http.post("/api/v1/consumers", json={"id": "alice"}) as response:
                assert response.status in (200, 201), await response.text()
            async with http.post("/api/v1/consumers/alice/deposits", json={"amount": 10**9}) as response:
                assert response.status in (200, 201), await response.text()
            order = {
                "consumer": "alice",
                "offer_id": "alpha-pool-a-0",
                "source": "own:config",
                "units": 4,
                "hours": 1,
            }
            async with http.post("/api/v1/orders", json=order) as response:
                assert response.status == 201, await response.text()
        matches, count = await both()
        assert ("alpha-pool-a-0", 10_000, 6) in matches
