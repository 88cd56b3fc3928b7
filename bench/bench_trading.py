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
   are measured two ways: 32 in flight through the path the node's orders take their holds
   (`books.submit_async`, the group committer): what the ledger sustains for holds on this node's
   configuration, the target's baseline (`node_ratio`); and one `ledger.submit` after another, each
   its own fsync'd commit (`ratio`, the figure earlier runs reported). Each round's ratios, and
   their medians. Target ≥ 0.3. Twice: both nodes in this process (one interpreter for both), and
   the seller as its own `cpnode run` process, as nodes are deployed.

Run: .venv/bin/python -m bench trading [--part cross --part apart] [--rounds N] [--profile DIR]
(`--profile` writes cProfile dumps in CPU time of the one-process cross-node run, the event loop's
and the database threads' apart, and prints, per order, the hops to a database thread by function
and the write transactions on each node; with the seller apart, its own CPU per order is reported.)
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import cProfile
import functools
import json
import os
import pstats
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import event

from bench.report import bench_parser, emit_json, percentile_ms
from federation import store
from federation.partners import Agreement, Partner
from federation.sync import ensure_session, run_round
from ledger import TransferKind, TransferRequest, submit
from node.config import load_settings
from node.db import make_engine
from node.db.engine import WRITE_OPTION
from node.identity import load_identity
from node.launcher import NodeProcess
from node.trading import books
from node.trading.routes import BUYER
from tests.support.federation import service_of
from tests.support.nodes import make_node_dir, running_node
from tests.support.trading import BASE_TOML, PRICE, admin_session, market, offer, trading_toml

ORDERS = 200
CONCURRENT, IN_FLIGHT = 400, 32
ROUND_TRIPS = 400
ROUNDS = 3  # alternating rounds of orders and holds in a cross-node run
CHECKOUT = Path(__file__).resolve().parents[1]


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


async def node_hold_rate(engine: Any, prefix: str) -> float:
    """The honest baseline: consumer holds per second with `IN_FLIGHT` in flight, each taken the way
    a node's order takes its hold (`books.submit`, through the engine's group committer)."""
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(index: int) -> None:
        request = hold_request(f"{prefix}-{index}")
        async with gate:
            cause = await books.submit_async(engine, [request])
        assert cause is None, cause

    started = time.perf_counter()
    await asyncio.gather(*(one(index) for index in range(CONCURRENT)))
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
        node_holds_s = await node_hold_rate(engine, "node")
    return {
        "orders_per_s": round(orders_s, 1),
        "ledger_holds_per_s": round(holds_s, 1),
        "ratio": round(orders_s / holds_s, 3),
        "node_holds_per_s": round(node_holds_s, 1),
        "node_ratio": round(orders_s / node_holds_s, 3),
        "in_flight": IN_FLIGHT,
    }


async def bench_cross_node(tmp: Path, profile: Path | None = None, rounds: int = ROUNDS) -> dict[str, Any]:
    """Orders for the partner's offer per second with many in flight, against the ledger's hold rate;
    both nodes in this process (the first round profiled when `profile` names a folder)."""
    async with market(
        tmp, credit_limit=10**12, deposit=10**11, seller_free=10**6, timeout_s=20.0, trades_in_flight=32
    ) as m:
        if profile is None:
            return await _cross_node_rate(m.buyer, m.order, rounds=rounds)
        engines = {"buyer": m.buyer.ctx.engine, "seller": m.seller.ctx.engine}  # type: ignore[union-attr]
        with Profiled(profile / "cross.prof", engines) as profiled:
            figures = await _cross_node_rate(m.buyer, m.order, profiled, rounds=rounds)
        return {**figures, "per_order": profiled.per_order(CONCURRENT)}


async def bench_cross_node_processes(tmp: Path, rounds: int = ROUNDS) -> dict[str, Any]:
    """The same with the seller as its own `cpnode run` process."""
    base = BASE_TOML.replace("max_trades_in_flight = 1\n", "max_trades_in_flight = 32\n")
    seller_config = make_node_dir(
        tmp,
        "shanghai",
        extra_toml=base + trading_toml(timeout_s=20.0) + offer("shanghai", "gpu", 10**6, PRICE),
    )
    buyer_config = make_node_dir(tmp, "beijing", extra_toml=base + trading_toml(timeout_s=20.0))
    # The seller runs this checkout's code (an installed package may point at another checkout).
    seller = NodeProcess(seller_config, env={"PYTHONPATH": str(CHECKOUT)})
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

            assert seller.proc is not None
            return await _cross_node_rate(buyer, order, seller_pid=seller.proc.pid, rounds=rounds)
    finally:
        await asyncio.to_thread(seller.stop)


def _trade_counts(buyer: Any) -> Any:
    """The buyer's counts of trade requests and exchanges (`node.trading.batching.Counts`), or None
    when its code has none (an older checkout measured for comparison)."""
    runner = getattr(buyer, "_runner", None)
    steps = None if runner is None else getattr(runner.app[BUYER], "steps", None)
    return getattr(getattr(steps, "exchanges", None), "counts", None)


def _cpu_s(pid: int | None = None) -> float:
    """CPU seconds used by this process, plus the process `pid` when given (Linux /proc)."""
    return time.process_time() + (0.0 if pid is None else _pid_cpu_s(pid))


def _pid_cpu_s(pid: int) -> float:
    """CPU seconds used by the process `pid` (Linux /proc: utime + stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _cross_node_rate(
    buyer: Any,
    order: Any,
    profiled: Profiled | None = None,
    seller_pid: int | None = None,
    rounds: int = ROUNDS,
) -> dict[str, Any]:
    """Orders per second with `IN_FLIGHT` in flight (after a warm-up) against the buyer's ledger
    taking holds, in `rounds` alternating rounds on the same engine (same file, same durability):
    even rounds run the orders first, odd rounds the holds first, so drift in the machine's load or
    the disk's fsync touches both alike. Each round's ratio is its orders over its holds; the
    figures are their medians. CPU per order counts both nodes (`seller_pid`: the seller's process
    when it runs apart, whose share is reported too); `profiled` watches only the orders of the first
    round."""
    engine = buyer.ctx.engine
    gate = asyncio.Semaphore(IN_FLIGHT)
    counts = _trade_counts(buyer)

    async def one() -> int:
        async with gate:
            status, _ = await order(1, 1)
            return int(status)

    seller_ms: list[float] = []  # the seller process's CPU per order, each round, when it runs apart
    exchanges: list[float] = []  # trade exchanges (HTTP) per trade request, each round

    async def orders(index: int) -> tuple[float, float, int]:
        started, cpu = time.perf_counter(), _cpu_s(seller_pid)
        seller_cpu = None if seller_pid is None else _pid_cpu_s(seller_pid)
        watch = profiled.watching() if profiled is not None and index == 0 else contextlib.nullcontext()
        sent = (counts.requests, counts.exchanges) if counts is not None else (0, 0)
        with watch:
            statuses = await asyncio.gather(*(one() for _ in range(CONCURRENT)))
        rate = CONCURRENT / (time.perf_counter() - started)
        if counts is not None:
            exchanges.append((counts.exchanges - sent[1]) / max(1, counts.requests - sent[0]))
        if seller_pid is not None and seller_cpu is not None:
            seller_ms.append(1000 * (_pid_cpu_s(seller_pid) - seller_cpu) / CONCURRENT)
        return rate, 1000 * (_cpu_s(seller_pid) - cpu) / CONCURRENT, sum(s != 201 for s in statuses)

    async def holds(index: int) -> tuple[float, float, float]:
        plain = await hold_rate(engine, f"plain-x{index}")
        cpu = _cpu_s()
        grouped = await node_hold_rate(engine, f"node-x{index}")
        return plain, grouped, 1000 * (_cpu_s() - cpu) / CONCURRENT

    for _ in range(IN_FLIGHT):  # warm-up: sessions, accounts and credit lines exist afterwards
        assert await one() == 201
    per_round: list[dict[str, Any]] = []
    for index in range(rounds):
        if index % 2 == 0:
            (rate, cpu_ms, failed), (plain, grouped, hold_cpu_ms) = await orders(index), await holds(index)
        else:
            (plain, grouped, hold_cpu_ms), (rate, cpu_ms, failed) = await holds(index), await orders(index)
        per_round.append(
            {
                "orders_per_s": round(rate, 1),
                "cpu_ms_per_order": round(cpu_ms, 2),
                **({"seller_cpu_ms_per_order": round(seller_ms[-1], 2)} if seller_ms else {}),
                "failed_orders": failed,
                **({"exchanges_per_trade": round(exchanges[-1], 3)} if exchanges else {}),
                "ledger_holds_per_s": round(plain, 1),
                "node_holds_per_s": round(grouped, 1),
                "cpu_ms_per_node_hold": round(hold_cpu_ms, 3),
                "ratio": round(rate / plain, 3),
                "node_ratio": round(rate / grouped, 3),
                "load_average": round(os.getloadavg()[0], 2),
            }
        )

    def median(key: str) -> float:
        return round(float(statistics.median(r[key] for r in per_round)), 3)

    return {
        "orders_per_s": median("orders_per_s"),
        "cpu_ms_per_order": median("cpu_ms_per_order"),
        **({"seller_cpu_ms_per_order": median("seller_cpu_ms_per_order")} if seller_ms else {}),
        "cpu_ms_per_node_hold": median("cpu_ms_per_node_hold"),
        "failed_orders": sum(r["failed_orders"] for r in per_round),
        "ledger_holds_per_s": median("ledger_holds_per_s"),
        "node_holds_per_s": median("node_holds_per_s"),
        # The target's ratio: against what the ledger sustains for holds on this node's
        # configuration, i.e. holds taken the node's way (group commit, IN_FLIGHT in flight).
        "node_ratio": median("node_ratio"),
        "node_ratios": [r["node_ratio"] for r in per_round],
        # Against one durable `ledger.submit` after another (the figure earlier runs reported).
        "ratio": median("ratio"),
        "ratios": [r["ratio"] for r in per_round],
        "target_ratio": 0.3,
        "in_flight": IN_FLIGHT,
        "rounds": per_round,
    }


PARTS = ("latency", "concurrent", "cross", "apart")


class Profiled:
    """While `watching`: cProfile of the event loop's thread and, apart, of the hops to a database
    thread (`asyncio.to_thread`, `node.db.in_thread`; the ledger's committer thread is in neither),
    both in CPU time; hops by function and transactions begun on each named engine, counted per
    order."""

    def __init__(self, dump: Path, engines: dict[str, Any]) -> None:
        self.dump = dump
        self.engines = engines
        self.hops: collections.Counter[str] = collections.Counter()
        self.begins: collections.Counter[str] = collections.Counter()
        self.writes: collections.Counter[str] = collections.Counter()
        self.waited: dict[str, float] = collections.defaultdict(float)  # seconds queued for a thread
        self.ran: dict[str, float] = collections.defaultdict(float)  # seconds on the thread
        # CPU time of each thread (`time.thread_time`), so a C call's wait for the interpreter lock
        # after it releases it is not counted; one profiler per database thread, merged on dump.
        self.profile = cProfile.Profile(time.thread_time)
        self._threads: list[cProfile.Profile] = []
        self._local = threading.local()
        self._on = False

    def __enter__(self) -> Profiled:
        for name, engine in self.engines.items():
            event.listen(engine, "begin", self._begin(name))
        self._loop = asyncio.get_running_loop()
        plain = self._loop.run_in_executor

        def counted(executor: Any, call: Any, *args: Any) -> Any:
            if not self._on:
                return plain(executor, call, *args)
            # asyncio.to_thread and node.db.in_thread both send partial(context.run, fn, ...)
            fn = call.args[0] if isinstance(call, functools.partial) and call.args else call
            name = getattr(fn, "__qualname__", repr(fn))
            self.hops[name] += 1
            queued = time.perf_counter()

            def timed(*inner: Any) -> Any:
                started = time.perf_counter()
                profile = self._thread_profile()
                profile.enable()
                try:
                    return call(*inner)
                finally:
                    profile.disable()
                    self.waited[name] += started - queued
                    self.ran[name] += time.perf_counter() - started

            return plain(executor, timed, *args)

        self._loop.run_in_executor = counted  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *_exc: object) -> None:
        del self._loop.run_in_executor

    def _thread_profile(self) -> cProfile.Profile:
        """This thread's profiler (CPU time), made on its first hop."""
        profile: cProfile.Profile | None = getattr(self._local, "profile", None)
        if profile is None:
            profile = self._local.profile = cProfile.Profile(time.thread_time)
            self._threads.append(profile)
        return profile

    def _begin(self, name: str) -> Any:
        def begin(connection: Any) -> None:
            if self._on:
                self.begins[name] += 1
                self.writes[name] += bool(connection.get_execution_options().get(WRITE_OPTION))

        return begin

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Profile and count what runs inside."""
        self.dump.parent.mkdir(parents=True, exist_ok=True)
        self._on = True
        self.profile.enable()
        try:
            yield
        finally:
            self.profile.disable()
            self._on = False
            self.profile.dump_stats(self.dump)
            if self._threads:
                threads = pstats.Stats(self._threads[0])
                for profile in self._threads[1:]:
                    threads.add(profile)
                threads.dump_stats(self.dump.with_name(self.dump.stem + "-threads.prof"))

    def per_order(self, orders: int) -> dict[str, Any]:
        """Hops by function, transactions and write transactions by node, each per order."""
        return {
            "hops": round(sum(self.hops.values()) / orders, 2),
            "hops_by_function": {
                k: {
                    "per_order": round(v / orders, 2),
                    "queued_ms": round(1000 * self.waited[k] / v, 2),
                    "ran_ms": round(1000 * self.ran[k] / v, 2),
                }
                for k, v in self.hops.most_common()
            },
            "transactions": {k: round(v / orders, 2) for k, v in self.begins.items()},
            "write_transactions": {k: round(v / orders, 2) for k, v in self.writes.items()},
            "profile": str(self.dump),
        }


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
        "its own process); default all",
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
            figures["cross_node"] = await bench_cross_node(Path(tmp) / "cross", args.profile, args.rounds)
            print("cross-node orders, one process ", json.dumps(figures["cross_node"]), flush=True)
        if "apart" in parts:
            figures["cross_node_processes"] = await bench_cross_node_processes(
                Path(tmp) / "apart", args.rounds
            )
            print("cross-node orders, seller apart", json.dumps(figures["cross_node_processes"]), flush=True)
    if args.json:
        emit_json("trading", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
