"""Reconciliation through the API between two real nodes: a clean run is recorded with no
discrepancy; a trade the partner alone recorded is found, listed as open, and recorded once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import ledger
from ledger import TransferKind, TransferRequest
from tests.support.trading import engine_of, market


async def _closed_window(start_ms: int) -> dict[str, Any]:
    """A window from `start_ms` to now, once it has closed (the partner summarises closed ones)."""
    end_ms = int(time.time() * 1000) + 1
    while time.time() * 1000 <= end_ms:  # noqa: ASYNC110 - a closed window, not a state to poll
        await asyncio.sleep(0.01)
    return {"partner": "shanghai", "from_ms": start_ms, "to_ms": end_ms, "margin_s": 0}


async def test_reconciling_with_a_partner_records_runs_and_discrepancies(tmp_path: Path) -> None:
    """The buyer reconciles with the seller over the peer API through `POST
    /api/v1/ledger/reconciliations`; the runs and the discrepancy appear in the GET listing."""
    async with market(tmp_path) as m:
        start_ms = int(time.time() * 1000) - 1000
        status, settled = await m.order(1, 2)
        assert status == 201, settled
        assert (await m.post(f"/api/v1/orders/{settled['id']}/settle", {"used_hours": 1}))[0] == 200
        status, clean = await m.post("/api/v1/ledger/reconciliations", await _closed_window(start_ms))
        assert status == 201, clean
        assert (clean["our_trades"], clean["their_trades"], clean["discrepancies"]) == (1, 1, [])
        assert "shanghai" in clean["report"]

        only_there = TransferRequest(
            "inject-missing",
            TransferKind.SINGLE,
            "partner:beijing",
            "provider:pool-a",
            "CNY",
            100,
            code=ledger.CORRECTION_CODE,
            trade_id="beijing.onlythere",
            partner="beijing",
        )
        [result] = ledger.submit(engine_of(m.seller), [only_there])
        assert result.ok, result
        window = await _closed_window(start_ms)
        end_ms = window["to_ms"]
        for _ in range(2):  # the same discrepancy found twice is recorded once
            status, found = await m.post("/api/v1/ledger/reconciliations", window)
            assert status == 201, found
            assert [d["trade_id"] for d in found["discrepancies"]] == ["beijing.onlythere"]

        status, listing = await m.get("/api/v1/ledger/reconciliations?partner=shanghai")
        assert status == 200, listing
        assert [r["discrepancies"] for r in listing["reconciliations"]] == [1, 1, 0]  # newest first
        assert listing["open"] == 1
        [recorded] = listing["discrepancies"]
        assert (recorded["trade_id"], recorded["correction_id"]) == ("beijing.onlythere", None)
        assert recorded["window"] == {"from_ms": start_ms, "to_ms": end_ms}
