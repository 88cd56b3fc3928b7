"""Trading benchmarks between two real nodes on loopback (SQLite), each against a baseline measured
in the same run.

1. Order latency: one order for a partner's offer, from `POST /api/v1/orders` to the accepted order
   (consumer hold, signed trade request, the seller's capacity reservation, credit line and linked
   holds, the signed acceptance, the buyer's partner hold), and one settlement (signed settlement,
   the seller's posts and receipt, the buyer's posts). Baseline: one signed peer round trip between
   the same two nodes (`GET /fed/v1/catalog/head` with the session token). p50/p99 and ratios.
2. Concurrent orders on one consumer for local offers: orders per second with 32 in flight.
   Baseline: the same number of consumer holds written straight to the ledger (`ledger.submit`).
3. Concurrent orders on one consumer for the partner's offer (each a signed trade between the two
   nodes: the buyer's hold, the seller's reservation and holds, the buyer's partner hold): orders
   per second with 32 in flight, against the same ledger baseline measured right after. Target ≥ 0.3.
   Twice: both nodes in this process (one interpreter for both), and the seller as its own
   `cpnode run` process, as nodes are deployed.

Run: .venv/bin/python -m bench trading
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import bench_parser, emit_json
from federation import store
from federation.partners import Agreement, Partner
from federation.sync import ensure_session, run_round
from ledger import TransferKind, TransferRequest, submit
from node.config import load_settings
from node.db import make_engine
from node.identity import load_identity
from node.launcher import NodeProcess
from tests.support.federation import service_of
from tests.support.nodes import make_node_dir, running_node
from tests.support.trading import BASE_TOML, PRICE, admin_session, market, offer, trading_toml

ORDERS = 200
CONCURRENT, IN_FLIGHT = 400, 32
ROUND_TRIPS = 400


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": _pct(samples, 0.5),
        "p99_ms": _pct(samples, 0.99),
        "mean_ms": round(statistics.mean(samples) * 1000, 2),
    }


async def bench_latency(tmp: Path) -> dict[str, Any]:
    """Order and settlement latency against a signed peer round trip between the same nodes."""
    async with market(tmp, credit_limit=10**12, deposit=10**11, seller_free=10**6) as m:
        service = service_of(m.buyer)
        partner = store.get_partner(m.buyer.ctx.engine, "shanghai")  # type: ignore[union-attr]
        assert partner is not None
        token = await ensure_session(service, partner)
        client = service.client(partner)
        trips: list[float] = []
        for _ in range(ROUND_TRIPS):
            started = time.perf_counter()
            response = await client.request("GET", "/fed/v1/catalog/head", token=token)
            trips.append(time.perf_counter() - started)
            assert response.status == 200
        orders: list[float] = []
        settles: list[float] = []
        for _ in range(ORDERS):
            started = time.perf_counter()
            status, order = await m.order(1, 1)
            orders.append(time.perf_counter() - started)
            assert status == 201, order
            started = time.perf_counter()
            status, settled = await m.post(f"/api/v1/orders/{order['id']}/settle", {"used_hours": 1})
            settles.append(time.perf_counter() - started)
            assert status == 200, settled
    base, order, settle = _summary(trips), _summary(orders), _summary(settles)
    return {
        "signed_round_trip": base,
        "order": order,
        "settlement": settle,
        "order_p50_ratio": round(order["p50_ms"] / base["p50_ms"], 1),
        "settlement_p50_ratio": round(settle["p50_ms"] / base["p50_ms"], 1),
    }


async def hold_rate(engine: Any, prefix: str) -> float:
    """The baseline: consumer holds per second, each its own `ledger.submit` (one commit each)."""

    def plain() -> None:
        for index in range(CONCURRENT):
            request = TransferRequest(
                f"{prefix}-{index}",
                TransferKind.PENDING,
                "consumer:alice",
                "escrow:orders",
                "CNY",
                1,
                timeout_s=3600,
            )
            submit(engine, [request])

    started = time.perf_counter()
    await asyncio.to_thread(plain)
    return CONCURRENT / (time.perf_counter() - started)


async def bench_concurrent(tmp: Path) -> dict[str, Any]:
    """Local orders per second with many in flight, against the ledger writing the holds alone."""
    async with market(tmp, deposit=10**11) as m:
        engine = m.buyer.ctx.engine  # type: ignore[union-attr]
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def one() -> int:
            async with gate:
                status, _ = await m.order(1, 1, offer_id="beijing-local", source="own:config")
                return status

        # The local offer has 3 free units: orders beyond them are refused after their hold, which
        # is the same ledger work per order; count both.
        started = time.perf_counter()
        statuses = await asyncio.gather(*(one() for _ in range(CONCURRENT)))
        orders_s = CONCURRENT / (time.perf_counter() - started)
        assert set(statuses) <= {201, 409}

        holds_s = await hold_rate(engine, "plain")
    return {
        "orders_per_s": round(orders_s, 1),
        "ledger_holds_per_s": round(holds_s, 1),
        "ratio": round(orders_s / holds_s, 3),
        "in_flight": IN_FLIGHT,
    }


async def bench_cross_node(tmp: Path) -> dict[str, Any]:
    """Orders for the partner's offer per second with many in flight, against the ledger's hold rate;
    both nodes in this process."""
    async with market(
        tmp, credit_limit=10**12, deposit=10**11, seller_free=10**6, timeout_s=20.0, trades_in_flight=32
    ) as m:
        return await _cross_node_rate(m.buyer, m.order)


async def bench_cross_node_processes(tmp: Path) -> dict[str, Any]:
    """The same with the seller as its own `cpnode run` process."""
    base = BASE_TOML.replace("max_trades_in_flight = 1\n", "max_trades_in_flight = 32\n")
    seller_config = make_node_dir(
        tmp,
        "shanghai",
        extra_toml=base + trading_toml(timeout_s=20.0) + offer("shanghai", "gpu", 10**6, PRICE),
    )
    buyer_config = make_node_dir(tmp, "beijing", extra_toml=base + trading_toml(timeout_s=20.0))
    seller = NodeProcess(seller_config)
    seller_url = await asyncio.to_thread(seller.start)
    try:
        async with running_node(buyer_config) as buyer, admin_session(buyer) as http:
            assert buyer.ctx is not None
            seller_settings = load_settings(seller_config, environ={})
            seller_key = load_identity(seller_settings).public_key
            seller_engine = make_engine(seller_settings.database_url)
            store.add_partner(
                seller_engine,
                Partner(
                    "beijing", (buyer.url,), buyer.ctx.identity.public_key, Agreement(credit_limit=10**12)
                ),
                int(time.time()),
            )
            seller_engine.dispose()
            store.add_partner(
                buyer.ctx.engine, Partner("shanghai", (seller_url,), seller_key), int(time.time())
            )
            results = await run_round(service_of(buyer), force=True)
            assert all(r.outcome == "ok" for r in results), results
            for path, body in (
                ("/api/v1/consumers", {"id": "alice"}),
                ("/api/v1/consumers/alice/deposits", {"amount": 10**11, "id": "dep-alice-1"}),
            ):
                async with http.post(path, json=body) as response:
                    assert response.status == 201, await response.text()

            async def order(units: int, hours: int) -> tuple[int, Any]:
                body = {"consumer": "alice", "offer_id": "shanghai-gpu", "source": "partner:shanghai"}
                async with http.post(
                    "/api/v1/orders", json={**body, "units": units, "hours": hours}
                ) as response:
                    return response.status, await response.json()

            return await _cross_node_rate(buyer, order)
    finally:
        await asyncio.to_thread(seller.stop)


async def _cross_node_rate(buyer: Any, order: Any) -> dict[str, Any]:
    """Orders per second with `IN_FLIGHT` in flight (after a warm-up), then the buyer's ledger alone."""
    engine = buyer.ctx.engine
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one() -> int:
        async with gate:
            status, _ = await order(1, 1)
            return int(status)

    for _ in range(IN_FLIGHT):  # warm-up: sessions, accounts and credit lines exist afterwards
        assert await one() == 201
    started = time.perf_counter()
    statuses = await asyncio.gather(*(one() for _ in range(CONCURRENT)))
    orders_s = CONCURRENT / (time.perf_counter() - started)
    failed = sum(status != 201 for status in statuses)
    holds_s = await hold_rate(engine, "plain-x")
    return {
        "orders_per_s": round(orders_s, 1),
        "failed_orders": failed,
        "ledger_holds_per_s": round(holds_s, 1),
        "ratio": round(orders_s / holds_s, 3),
        "target_ratio": 0.3,
        "in_flight": IN_FLIGHT,
    }


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    return bench_parser(
        "Trading: order and settlement latency between two nodes; concurrent local and cross-node orders."
    )


async def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks and print their figures as JSON lines."""
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cpnode-bench-trading-") as tmp:
        latency = await bench_latency(Path(tmp) / "latency")
        print("order latency     ", json.dumps(latency), flush=True)
        concurrent = await bench_concurrent(Path(tmp) / "concurrent")
        print("concurrent orders ", json.dumps(concurrent), flush=True)
        cross = await bench_cross_node(Path(tmp) / "cross")
        print("cross-node orders, one process ", json.dumps(cross), flush=True)
        apart = await bench_cross_node_processes(Path(tmp) / "apart")
        print("cross-node orders, seller apart", json.dumps(apart), flush=True)
    if args.json:
        figures = {
            "latency": latency,
            "concurrent": concurrent,
            "cross_node": cross,
            "cross_node_processes": apart,
        }
        emit_json("trading", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
