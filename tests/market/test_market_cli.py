"""`cpnode market match` and `cpnode orders place --match` against two real nodes on 127.0.0.1:
a readable table with exclusions by reason, JSON output, and ordering the best match with a
consumer's token file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.trading import market
from tests.support.trading import run_cli as run


async def test_match_prints_ranked_offers_and_exclusions_then_orders_the_best(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`market match` prints the ranked matches and the exclusions by reason (or JSON);
    `orders place --match` with a token file orders the best match for the token's consumer; a bad
    demand exits 1 naming the field."""
    monkeypatch.delenv("CPNODE_CONSUMER_TOKEN", raising=False)
    async with market(tmp_path) as m:
        code, out, err = await run(
            m, "market", "match", "--units", "4", "--hours", "2", "--max-price", "9000"
        )
        assert code == 0, err
        assert "shanghai-cpu" in out
        assert "price_above_max" in out
        assert "not_enough_free_units" in out  # beijing-local has 3 free
        code, out, err = await run(
            m, "market", "match", "--units", "12", "--hours", "1", "--split", "--source", "partner", "--json"
        )
        assert code == 0, err
        answer = json.loads(out)
        assert [(p["offer_id"], p["units"]) for p in answer["plan"]] == [
            ("shanghai-cpu", 10),
            ("shanghai-gpu", 2),
        ]
        assert {e["reason"] for e in answer["excluded"]} == {"source_excluded"}

        status, issued = await m.post("/api/v1/consumers/alice/tokens", {})
        assert status == 201, issued
        token_file = tmp_path / "alice.token"
        token_file.write_text(issued["token"] + "\n")
        code, out, err = await run(
            m, "orders", "place", "--match", "--units", "1", "--hours", "2", "--token-file", str(token_file)
        )
        assert code == 0, err
        assert "shanghai-cpu from partner:shanghai" in out
        assert "accepted" in out

        code, out, err = await run(m, "market", "match", "--units", "0", "--hours", "1")
        assert code == 1
        assert "units" in err
