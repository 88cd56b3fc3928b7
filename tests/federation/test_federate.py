"""Real nodes federating on loopback: trust, login, catalogs, merged offer view."""

from __future__ import annotations

from pathlib import Path

from federation.partners import Agreement
from federation.sync import run_round
from tests.federation.conftest import nodes, service_of, trust


async def test_two_nodes_exchange_catalogs(tmp_path: Path) -> None:
    """Two nodes that pin each other log in, fetch each other's catalogs and see the offers."""
    async with nodes(tmp_path, ["alpha", "beta"]) as (alpha, beta):
        trust(alpha, beta)
        trust(beta, alpha, Agreement(markup_bp=1000))
        results = await run_round(service_of(alpha), force=True)
        assert [(r.partner, r.outcome, r.version) for r in results] == [("beta", "ok", 1)]
        results = await run_round(service_of(alpha), force=True)
        assert [(r.partner, r.outcome) for r in results] == [("beta", "unchanged")]
