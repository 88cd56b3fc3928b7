"""Cross-node orders per second with many in flight, against the buyer's ledger taking holds, in
alternating rounds: both nodes in one process, and the seller as its own `cpnode run` process
(`python -m bench trading --part cross --part apart`; see bench.bench_trading)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp

import ledger
from bench.affinity import separate_cpus
from bench.trading_holds import CONCURRENT, IN_FLIGHT, hold_rate, node_hold_rate
from bench.trading_profile import Profiled
from federation import store
from federation.partners import Agreement, Partner
from federation.sync import run_round
from node.cli.catalog_cmd import sync_catalogs
from node.config import load_settings
from node.db import make_engine
from node.identity import load_identity
from node.launcher import NodeProcess, start_all, stop_all
from node.runfile import read_admin_token
from node.trading.routes import BUYER
from tests.support.federation import service_of
from tests.support.nodes import make_node_dir, running_node
from tests.support.trading import BASE_TOML, PRICE, admin_session, market, offer, trading_toml

ROUNDS = 5  # alternating rounds of orders and holds in a cross-node run
CHECKOUT = Path(__file__).resolve().parents[1]


def batch_toml(max_batch: int | None) -> str:
    """`[trading]` lines setting the buyer's `max_batch_trades` (nothing: the default)."""
    return "" if max_batch is None else f"max_batch_trades = {max_batch}\n"


async def bench_cross_node(
    tmp: Path,
    profile: Path | None = None,
    rounds: int = ROUNDS,
    max_batch: int | None = None,
    in_flight: int = IN_FLIGHT,
) -> dict[str, Any]:
    """Orders for the partner's offer per second with many in flight, against the ledger's hold rate;
    both nodes in this process (the first round profiled when `profile` names a folder)."""
    async with market(
        tmp,
        credit_limit=10**12,
        deposit=10**11,
        seller_free=10**6,
        timeout_s=20.0,
        trades_in_flight=max(32, in_flight),
        buyer_extra=batch_toml(max_batch),
    ) as m:
        assert m.buyer.ctx is not None
        engine = m.buyer.ctx.engine
        if profile is None:
            return await _cross_node_rate(
                engine, m.order, _trade_counts(m.buyer), rounds=rounds, in_flight=in_flight
            )
        engines = {"buyer": engine, "seller": m.seller.ctx.engine}  # type: ignore[union-attr]
        with Profiled(profile / "cross.prof", engines) as profiled:
            figures = await _cross_node_rate(
                engine,
                m.order,
                _trade_counts(m.buyer),
                profiled,
                rounds=rounds,
                in_flight=in_flight,
            )
        return {**figures, "per_order": profiled.per_order(CONCURRENT)}


def _node_dirs(tmp: Path, max_batch: int | None, in_flight: int) -> tuple[Path, Path]:
    """The seller's and the buyer's node folders (their node.toml paths)."""
    limit = max(32, in_flight)  # the seller's trades in progress for one partner
    base = BASE_TOML.replace("max_trades_in_flight = 1\n", f"max_trades_in_flight = {limit}\n")
    seller_config = make_node_dir(
        tmp,
        "shanghai",
        extra_toml=base + trading_toml(timeout_s=20.0) + offer("shanghai", "gpu", 10**6, PRICE),
    )
    buyer_config = make_node_dir(
        tmp, "beijing", extra_toml=base + trading_toml(timeout_s=20.0) + batch_toml(max_batch)
    )
    return seller_config, buyer_config


def _pin(seller_config: Path, seller_url: str, buyer_engine: Any, buyer_url: str, buyer_key: Any) -> None:
    """Make the two nodes partners, in their databases (the buyer with a credit line at the seller)."""
    seller_settings = load_settings(seller_config, environ={})
    seller_engine = make_engine(seller_settings.database_url)
    store.add_partner(
        seller_engine,
        Partner("beijing", (buyer_url,), buyer_key, Agreement(credit_limit=10**12)),
        int(time.time()),
    )
    seller_engine.dispose()
    seller_key = load_identity(seller_settings).public_key
    store.add_partner(buyer_engine, Partner("shanghai", (seller_url,), seller_key), int(time.time()))


async def _fund(http: Any) -> Any:
    """Create alice at the buyer with a deposit; the call placing one of her orders over `http`."""
    for path, body in (
        ("/api/v1/consumers", {"id": "alice"}),
        ("/api/v1/consumers/alice/deposits", {"amount": 10**11, "id": "dep-alice-1"}),
    ):
        async with http.post(path, json=body) as response:
            assert response.status == 201, await response.text()

    async def order(units: int, hours: int) -> tuple[int, Any]:
        body = {"consumer": "alice", "offer_id": "shanghai-gpu", "source": "partner:shanghai"}
        async with http.post("/api/v1/orders", json={**body, "units": units, "hours": hours}) as response:
            return response.status, await response.json()

    return order


async def bench_cross_node_processes(
    tmp: Path, rounds: int = ROUNDS, max_batch: int | None = None, in_flight: int = IN_FLIGHT
) -> dict[str, Any]:
    """The same with the seller as its own `cpnode run` process."""
    seller_config, buyer_config = _node_dirs(tmp, max_batch, in_flight)
    # The seller runs this checkout's code (an installed package may point at another checkout).
    seller = NodeProcess(seller_config, env={"PYTHONPATH": str(CHECKOUT)})
    seller_url = await asyncio.to_thread(seller.start)
    try:
        async with running_node(buyer_config) as buyer, admin_session(buyer) as http:
            assert buyer.ctx is not None
            _pin(seller_config, seller_url, buyer.ctx.engine, buyer.url, buyer.ctx.identity.public_key)
            results = await run_round(service_of(buyer), force=True)
            assert all(r.outcome == "ok" for r in results), results
            order = await _fund(http)
            assert seller.proc is not None
            return await _cross_node_rate(
                buyer.ctx.engine,
                order,
                _trade_counts(buyer),
                seller_pid=seller.proc.pid,
                rounds=rounds,
                in_flight=in_flight,
            )
    finally:
        await asyncio.to_thread(seller.stop)


async def bench_cross_node_all_processes(
    tmp: Path,
    rounds: int = ROUNDS,
    max_batch: int | None = None,
    in_flight: int = IN_FLIGHT,
    event_loop: str | None = None,
    cpus: str = "separate",
) -> dict[str, Any]:
    """The same with both nodes as their own `cpnode run` processes and this one the consumers'
    client: CPU per order counts the two nodes only (the client's is reported apart). `event_loop`:
    the nodes' `http.event_loop` (None: their default). `cpus`: "separate" runs the buyer alone on
    one CPU and the seller with this client on another, as two nodes run on two machines (where
    the machine has two); "shared" lets the system place all three on any CPU."""
    seller_config, buyer_config = _node_dirs(tmp, max_batch, in_flight)
    env = {"PYTHONPATH": str(CHECKOUT)}
    if event_loop is not None:
        env["CPNODE_HTTP_EVENT_LOOP"] = event_loop
    seller, buyer = NodeProcess(seller_config, env=env), NodeProcess(buyer_config, env=env)
    seller_url, buyer_url = await asyncio.to_thread(start_all, [seller, buyer])
    buyer_settings = load_settings(buyer_config, environ={})
    engine = make_engine(buyer_settings.database_url)
    try:
        _pin(seller_config, seller_url, engine, buyer_url, load_identity(buyer_settings).public_key)
        synced = await sync_catalogs(
            buyer_settings
        )  # the buyer's first sync, as `cpnode catalog sync` runs it
        assert all(row["outcome"] == "ok" for row in synced), synced
        token = read_admin_token(buyer_settings)
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(buyer_url, headers=headers) as http:
            order = await _fund(http)
            assert seller.proc is not None
            assert buyer.proc is not None
            placing = (
                separate_cpus(buyer.proc.pid, [seller.proc.pid, os.getpid()])
                if cpus == "separate"
                else contextlib.nullcontext({"alone": None, "together": None})
            )
            with placing as placed:
                figures = await _cross_node_rate(
                    engine,
                    order,
                    seller_pid=seller.proc.pid,
                    buyer_pid=buyer.proc.pid,
                    rounds=rounds,
                    in_flight=in_flight,
                )
            return {
                "event_loop": event_loop or load_settings(buyer_config, environ={}).http.event_loop,
                "cpus": cpus if placed["alone"] is not None else "shared",
                "buyer_cpu": placed["alone"],
                "seller_and_client_cpu": placed["together"],
                **figures,
            }
    finally:
        ledger.committer_for(engine).close()
        engine.dispose()
        await asyncio.to_thread(stop_all, [buyer, seller])


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
    engine: Any,
    order: Any,
    counts: Any = None,
    profiled: Profiled | None = None,
    seller_pid: int | None = None,
    buyer_pid: int | None = None,
    rounds: int = ROUNDS,
    in_flight: int = IN_FLIGHT,
) -> dict[str, Any]:
    """Orders per second with `in_flight` in flight (after a warm-up) against the buyer's ledger
    taking holds, in `rounds` alternating rounds on the same engine (same file, same durability):
    even rounds run the orders first, odd rounds the holds first, so drift in the machine's load or
    the disk's fsync touches both alike. Each round's ratio is its orders over its holds; the
    figures are their medians. CPU per order counts both nodes (`seller_pid`, `buyer_pid`: their
    processes when they run apart, whose shares are reported too; else this process, the client
    included); `engine`: the buyer's; `counts`: its trade exchanges' counts, when in this process;
    `profiled` watches only the orders of the first round."""
    gate = asyncio.Semaphore(in_flight)

    def nodes_cpu_s() -> float:
        own = time.process_time() if buyer_pid is None else _pid_cpu_s(buyer_pid)
        return own + (0.0 if seller_pid is None else _pid_cpu_s(seller_pid))

    async def one() -> int:
        async with gate:
            status, _ = await order(1, 1)
            return int(status)

    seller_ms: list[float] = []  # the seller process's CPU per order, each round, when it runs apart
    client_ms: list[float] = []  # this process's (the client's) CPU per order, when the buyer is apart
    exchanges: list[float] = []  # trade exchanges (HTTP) per trade request, each round
    singles: list[float] = []  # of them, the exchanges of one request alone, per trade request

    async def orders(index: int) -> tuple[float, float, int]:
        started, cpu, client_cpu = time.perf_counter(), nodes_cpu_s(), time.process_time()
        seller_cpu = None if seller_pid is None else _pid_cpu_s(seller_pid)
        watch = profiled.watching() if profiled is not None and index == 0 else contextlib.nullcontext()
        sent = (counts.requests, counts.exchanges, counts.batches) if counts is not None else (0, 0, 0)
        with watch:
            statuses = await asyncio.gather(*(one() for _ in range(CONCURRENT)))
        rate = CONCURRENT / (time.perf_counter() - started)
        if counts is not None:
            requests = max(1, counts.requests - sent[0])
            exchanges.append((counts.exchanges - sent[1]) / requests)
            singles.append((counts.exchanges - sent[1] - counts.batches + sent[2]) / requests)
        if seller_pid is not None and seller_cpu is not None:
            seller_ms.append(1000 * (_pid_cpu_s(seller_pid) - seller_cpu) / CONCURRENT)
        if buyer_pid is not None:
            client_ms.append(1000 * (time.process_time() - client_cpu) / CONCURRENT)
        return rate, 1000 * (nodes_cpu_s() - cpu) / CONCURRENT, sum(s != 201 for s in statuses)

    async def holds(index: int) -> tuple[float, float, float]:
        plain = await hold_rate(engine, f"plain-x{index}")
        cpu = _cpu_s()
        grouped = await node_hold_rate(engine, f"node-x{index}", in_flight)
        return plain, grouped, 1000 * (_cpu_s() - cpu) / CONCURRENT

    for _ in range(in_flight):  # warm-up: sessions, accounts and credit lines exist afterwards
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
                **({"client_cpu_ms_per_order": round(client_ms[-1], 2)} if client_ms else {}),
                "failed_orders": failed,
                **({"exchanges_per_trade": round(exchanges[-1], 3)} if exchanges else {}),
                **({"singles_per_trade": round(singles[-1], 3)} if singles else {}),
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
        **({"client_cpu_ms_per_order": median("client_cpu_ms_per_order")} if client_ms else {}),
        "cpu_ms_per_node_hold": median("cpu_ms_per_node_hold"),
        "failed_orders": sum(r["failed_orders"] for r in per_round),
        "ledger_holds_per_s": median("ledger_holds_per_s"),
        "node_holds_per_s": median("node_holds_per_s"),
        # The target's ratio: against what the ledger sustains for holds on this node's
        # configuration, i.e. holds taken the node's way (group commit, as many in flight).
        "node_ratio": median("node_ratio"),
        "node_ratios": [r["node_ratio"] for r in per_round],
        # Against one durable `ledger.submit` after another (the figure earlier runs reported).
        "ratio": median("ratio"),
        "ratios": [r["ratio"] for r in per_round],
        "target_ratio": 0.3,
        "in_flight": in_flight,
        "rounds": per_round,
    }
