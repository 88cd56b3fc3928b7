"""Trading benchmarks between two real nodes on loopback (SQLite), each against a baseline measured
in the same run.

1. Order latency: one order for a partner's offer, from `POST /api/v1/orders` to the accepted order
   (consumer hold, signed trade request, the seller's capacity reservation, credit line and linked
   holds, the signed acceptance, the buyer's partner hold), and one settlement (signed settlement,
   the seller's posts and receipt, the buyer's posts). Baseline: one signed peer round trip between
   the same two nodes (`GET /fed/v1/catalog/head` with the session token). p50/p99 and ratios.
2. Concurrent orders on one consumer for local offers: orders per second with 32 in flight.
   Baseline: the same number of consumer holds written straight to the ledger, one by one
   (`ledger.submit`) and 32 in flight the node's way (as in 3).
3. Concurrent orders on one consumer for the partner's offer (each a signed trade between the two
   nodes: the buyer's hold, the seller's reservation and holds, the buyer's partner hold): orders
   per second with 32 in flight, against the buyer's ledger taking holds, in `--rounds` alternating
   rounds (orders first, then holds first, ...) on the same engine (same file, same durability:
   SQLite's synchronous=FULL for every durable commit; an order also makes lazy ones). The holds
   are measured two ways: one `ledger.submit` after another, each its own fsync'd commit (`ratio`:
   the baseline the target's "today 0.09x" was measured against, and the target's figure); and 32
   in flight through the path the node's orders take their holds (`books.submit_async`, the group
   committer), what the ledger sustains with commits shared (`node_ratio`, a stricter comparison,
   reported beside it). Each round's ratios, and their medians. Target >= 0.3. Three ways: both
   nodes in this process (one interpreter for both); the seller as its own `cpnode run` process;
   and both as `cpnode run` processes with this one their client, as nodes are deployed: there,
   by default, the buyer alone on one CPU and the seller with the client on another, as two nodes
   on two machines (`--cpus shared`: wherever the system puts them).

Run: .venv/bin/python -m bench trading [--part cross --part apart] [--rounds N] [--profile DIR]
[--event-loop uvloop|asyncio] (the loop both nodes serve on in the both-apart run)
[--cpus separate|shared] (where the both-apart run's processes run)
(`--profile` writes cProfile dumps in CPU time of the one-process cross-node run, the event loop's
and the database threads' apart, and prints, per order, the hops to a database thread by function
and the write transactions on each node; with the seller apart, its own CPU per order is reported.)
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

from bench.report import bench_parser, emit_json, percentile_ms
from bench.trading_cross import (
    ROUNDS,
    bench_cross_node,
    bench_cross_node_all_processes,
    bench_cross_node_processes,
)
from bench.trading_holds import CONCURRENT, IN_FLIGHT, hold_rate, node_hold_rate
from federation import store
from federation.sync import ensure_session
from tests.support.federation import service_of
from tests.support.trading import market

ORDERS = 200
ROUND_TRIPS = 400


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile_ms(samples, 0.5, 2),
        "p99_ms": percentile_ms(samples, 0.99, 2),
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
        node_holds_s = await node_hold_rate(engine, "node")
    return {
        "orders_per_s": round(orders_s, 1),
        "ledger_holds_per_s": round(holds_s, 1),
        "ratio": round(orders_s / holds_s, 3),
        "node_holds_per_s": round(node_holds_s, 1),
        "node_ratio": round(orders_s / node_holds_s, 3),
        "in_flight": IN_FLIGHT,
    }


PARTS = ("latency", "concurrent", "cross", "apart", "processes")


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    parser = bench_parser(
        "Trading: order and settlement latency between two nodes; concurrent local and cross-node orders."
    )
    parser.add_argument(
        "--part",
        action="append",
        choices=PARTS,
        help="run only this part (repeatable): latency, concurrent, cross (one process), apart (seller as "
        "its own process), processes (both nodes as their own processes, this one the client); default all",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="profile the one-process cross-node run: DIR/cross.prof (cProfile) and hops per order",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help=f"alternating rounds of orders and holds per cross-node run (default {ROUNDS})",
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=IN_FLIGHT,
        metavar="N",
        help=f"orders (and grouped holds) in flight in cross-node runs (default {IN_FLIGHT})",
    )
    parser.add_argument(
        "--event-loop",
        choices=["uvloop", "asyncio"],
        help="the nodes' http.event_loop in the both-apart run (default: the nodes' default, uvloop)",
    )
    parser.add_argument(
        "--cpus",
        choices=["separate", "shared"],
        default="separate",
        help="both-apart run: the buyer alone on one CPU, the seller and the client on another, as "
        "nodes on two machines (separate, the default), or all three wherever the system puts "
        "them (shared)",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        metavar="N",
        help="the buyer's max_batch_trades in cross-node runs (1: one trade request per exchange)",
    )
    return parser


async def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print their figures as JSON lines."""
    args = build_parser().parse_args(argv)
    parts = args.part or list(PARTS)
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cpnode-bench-trading-") as tmp:
        if "latency" in parts:
            figures["latency"] = await bench_latency(Path(tmp) / "latency")
            print("order latency     ", json.dumps(figures["latency"]), flush=True)
        if "concurrent" in parts:
            figures["concurrent"] = await bench_concurrent(Path(tmp) / "concurrent")
            print("concurrent orders ", json.dumps(figures["concurrent"]), flush=True)
        if "cross" in parts:
            figures["cross_node"] = await bench_cross_node(
                Path(tmp) / "cross", args.profile, args.rounds, args.max_batch, args.in_flight
            )
            print("cross-node orders, one process ", json.dumps(figures["cross_node"]), flush=True)
        if "apart" in parts:
            figures["cross_node_processes"] = await bench_cross_node_processes(
                Path(tmp) / "apart", args.rounds, args.max_batch, args.in_flight
            )
            print("cross-node orders, seller apart", json.dumps(figures["cross_node_processes"]), flush=True)
        if "processes" in parts:
            figures["cross_node_all_processes"] = await bench_cross_node_all_processes(
                Path(tmp) / "processes",
                args.rounds,
                args.max_batch,
                args.in_flight,
                args.event_loop,
                args.cpus,
            )
            print(
                "cross-node orders, both apart  ", json.dumps(figures["cross_node_all_processes"]), flush=True
            )
    if args.json:
        emit_json("trading", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
