"""The buyer's trade exchanges on `/metrics`: the trade requests it sent, and how many exchanges
carried them alone or in batches, between two real nodes on loopback."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from tests.support.trading import Market, buyer_of, market


async def _scrape(m: Market) -> dict[str, float]:
    """The buyer's trade exchange counters, by sample name and labels."""
    async with m.buyer_http.get("/metrics") as response:
        assert response.status == 200
        text = await response.text()
    found = re.findall(r"^(cpnode_trade_(?:requests_sent|exchanges)_total(?:\{[^}]*\})?) (\S+)$", text, re.M)
    return {name: float(value) for name, value in found}


async def test_exchanges_are_counted_alone_and_in_batches(tmp_path: Path) -> None:
    """A lone order's trade request goes alone, orders placed together share one batch; the
    counters say so, and match the batcher's own counts."""
    async with market(tmp_path, seller_free=50, trades_in_flight=32, deposit=10**8) as m:
        before = await _scrape(m)
        assert before == {
            "cpnode_trade_requests_sent_total": 0.0,
            'cpnode_trade_exchanges_total{kind="single"}': 0.0,
            'cpnode_trade_exchanges_total{kind="batch"}': 0.0,
        }
        status, _ = await m.order(1, 1)
        assert status == 201
        lone = await _scrape(m)
        assert lone["cpnode_trade_requests_sent_total"] == 1.0
        assert lone['cpnode_trade_exchanges_total{kind="single"}'] == 1.0
        statuses = await asyncio.gather(*(m.order(1, 1) for _ in range(8)))
        assert [status for status, _ in statuses] == [201] * 8
        after = await _scrape(m)
        assert after["cpnode_trade_requests_sent_total"] == 9.0
        batches = after['cpnode_trade_exchanges_total{kind="batch"}']
        singles = after['cpnode_trade_exchanges_total{kind="single"}']
        assert batches >= 1.0
        assert batches + singles < 9.0  # fewer exchanges than requests
        counts = buyer_of(m.buyer).steps.exchanges.counts
        assert (counts.requests, counts.batches, counts.exchanges - counts.batches) == (9, batches, singles)
