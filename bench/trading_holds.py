"""The baselines of the trading benchmarks: consumer holds written to the buyer's ledger, one by
one (`ledger.submit`, each its own fsync'd commit) and `IN_FLIGHT` in flight the node's way
(`books.submit_async`, the group committer)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ledger import TransferKind, TransferRequest, submit
from node.trading import books

CONCURRENT, IN_FLIGHT = 400, 32


def hold_request(transfer_id: str) -> TransferRequest:
    """A consumer's hold of 1 fen for an order, as both hold baselines take it."""
    return TransferRequest(
        transfer_id, TransferKind.PENDING, "consumer:alice", "escrow:orders", "CNY", 1, timeout_s=3600
    )


async def hold_rate(engine: Any, prefix: str) -> float:
    """The baseline: consumer holds per second, each its own `ledger.submit` (one commit each)."""

    def plain() -> None:
        for index in range(CONCURRENT):
            submit(engine, [hold_request(f"{prefix}-{index}")])

    started = time.perf_counter()
    await asyncio.to_thread(plain)
    return CONCURRENT / (time.perf_counter() - started)


async def node_hold_rate(engine: Any, prefix: str, in_flight: int = IN_FLIGHT) -> float:
    """The honest baseline: consumer holds per second with `in_flight` in flight, each taken the way
    a node's order takes its hold (`books.submit`, through the engine's group committer)."""
    gate = asyncio.Semaphore(in_flight)

    async def one(index: int) -> None:
        request = hold_request(f"{prefix}-{index}")
        async with gate:
            cause = await books.submit_async(engine, [request])
        assert cause is None, cause

    started = time.perf_counter()
    await asyncio.gather(*(one(index) for index in range(CONCURRENT)))
    return CONCURRENT / (time.perf_counter() - started)
