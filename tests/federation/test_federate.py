"""Real nodes federating on loopback, on both database backends: trust, login, catalogs made per
agreement, the merged offer view over HTTP, and re-issue when offers change."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from federation.partners import Agreement
from federation.sync import run_round
from node.offers import CatalogOffer
from tests.support.federation import nodes, service_of, trust


async def test_two_nodes_exchange_catalogs(tmp_path: Path, db_url: str) -> None:
    """Nodes that pin each other log in, fetch catalogs made for them (agreement applied) and serve the
    merged view; a second round sees nothing new."""
    async with nodes(tmp_path, ["alpha", "beta"], db_urls=[db_url, None]) as (alpha, beta):
        trust(alpha, beta)
        trust(beta, alpha, Agreement(markup_bp=1000, tags=("gpu",)))
        results = await run_round(service_of(alpha), force=True)
        assert [(r.partner, r.outcome, r.version) for r in results] == [("beta", "ok", 1)]
        results = await run_round(service_of(alpha), force=True)
        assert [(r.partner, r.outcome) for r in results] == [("beta", "unchanged")]
        token = (tmp_path / "alpha" / "keys" / "admin.token").read_text().strip()
        async with aiohttp.ClientSession() as session:
            async with session.get(alpha.url + "/api/v1/offers") as response:
                assert response.status == 401
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(alpha.url + "/api/v1/offers", headers=headers) as response:
                view = await response.json()
        own = {row["id"]: row for row in view["offers"] if row["source"] == "own:config"}
        remote = [row for row in view["offers"] if row["source"] == "partner:beta"]
        assert len(own) == 2
        assert [(row["id"], row["price_per_unit_hour"]) for row in remote] == [
            ("beta-pool-a-0", 11000),
            ("beta-pool-a-1", 11001),
        ]
        assert all(row["catalog_version"] == 1 and row["age_s"] >= 0 for row in remote)


async def test_changed_offers_issue_a_new_version(tmp_path: Path) -> None:
    """When a node's offers change, its partner's next sync receives a higher catalog version."""
    async with nodes(tmp_path, ["alpha", "beta"]) as (alpha, beta):
        trust(alpha, beta)
        trust(beta, alpha)
        assert [r.version for r in await run_round(service_of(alpha), force=True)] == [1]
        assert beta.ctx is not None

        async def fewer() -> list[CatalogOffer]:
            return []

        beta.ctx.offer_sources["config"] = fewer
        assert [(r.outcome, r.version) for r in await run_round(service_of(alpha), force=True)] == [("ok", 2)]
