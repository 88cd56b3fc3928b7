"""Business metrics benchmark: a /metrics scrape of a node whose database holds 10,000 orders (with
their signed documents), 2,000 sales, 100 partners with catalogs, 1,000 tasks and 100 migrations,
against the baseline measured in the same run: the same node's HTTP-only exposition
(`metrics.business = false`). Figures: a scrape that reads the database (`cache_s = 0`), a
scrape served from the cache (the default), and a burst of concurrent scrapes with the cache.

Each figure is the median of `ROUNDS` scrapes over real HTTP on 127.0.0.1.

Run: .venv/bin/python -m bench metrics
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa

from bench.report import bench_parser, emit_json
from federation.tables import partners_t, received_t, sync_t
from node.config import load_settings
from node.db import make_engine, upgrade
from node.migration.tables import migrations_t
from node.service import NodeServer
from node.tasks.tables import tasks_t
from node.trading.tables import orders_t, sales_t
from tests.support.nodes import make_node_dir

ORDERS, SALES, PARTNERS, TASKS, MIGRATIONS = 10_000, 2_000, 100, 1_000, 100
ROUNDS = 60
BURST = 50
KEY = "ed25519:" + "A" * 43
DOCUMENT = b"x" * 1500  # about the size of a signed trade request or receipt


def seed(url: str, seed_value: int = 7) -> None:
    """Fill the node's database with the benchmark's rows."""
    rng = random.Random(seed_value)
    now = int(time.time())
    engine = make_engine(url)
    upgrade(engine)
    partners = [f"p{i:03d}" for i in range(PARTNERS)]
    order_states = ["accepted", "settled", "settled", "settled", "cancelled", "rejected"]
    with engine.begin() as conn:
        conn.execute(
            sa.insert(partners_t),
            [
                {
                    "name": p,
                    "urls_json": '["http://127.0.0.1:9"]',
                    "public_key": KEY,
                    "agreement_json": "{}",
                    "source": "cli",
                    "added_ts": now,
                }
                for p in partners
            ],
        )
        conn.execute(
            sa.insert(sync_t),
            [
                {
                    "partner": p,
                    "status": rng.choice(["ok", "ok", "unreachable"]),
                    "failures": 0,
                    "next_attempt_ts": now,
                    "last_attempt_ts": now,
                    "last_success_ts": now - 30,
                    "last_error": None,
                }
                for p in partners
            ],
        )
        conn.execute(
            sa.insert(received_t),
            [
                {
                    "partner": p,
                    "version": 1,
                    "sha256": "0" * 64,
                    "issued_ts": now,
                    "expires_ts": now + 3600,
                    "received_ts": now - rng.randint(0, 600),
                    "offer_count": 20,
                    "key_id": KEY,
                    "body": DOCUMENT * 4,
                    "republishable": False,
                    "relay_seq": i + 1,
                }
                for i, p in enumerate(partners)
            ],
        )
        rows = []
        for i in range(ORDERS):
            partner = None if i % 5 == 0 else rng.choice(partners)
            state = rng.choice(order_states)
            amount = rng.randint(1, 100) * 10_000
            rows.append(
                {
                    "id": f"bench.{i:06d}",
                    "consumer": f"c{i % 50}",
                    "offer_id": f"{partner or 'own'}-gpu",
                    "source": f"partner:{partner}" if partner else "own:connectors",
                    "partner": partner,
                    "pool": "pool-a",
                    "units": 1,
                    "hours": 1,
                    "price_per_unit_hour": amount,
                    "currency": "CNY",
                    "amount": amount,
                    "fee": 0,
                    "state": state,
                    "reason": None,
                    "request_sha256": "0" * 64,
                    "trade_request": DOCUMENT,
                    "receipt": DOCUMENT,
                    "notify_partner": False,
                    "settled_amount": amount // 2 if state == "settled" else None,
                    "hold_expires_ts": now + 3600,
                    "created_ts": now,
                    "updated_ts": now,
                }
            )
        conn.execute(sa.insert(orders_t), rows)
        conn.execute(
            sa.insert(sales_t),
            [
                {
                    "partner": rng.choice(partners),
                    "trade_id": f"sale.{i:06d}",
                    "offer_id": "own-gpu",
                    "pool": "pool-a",
                    "units": 1,
                    "hours": 1,
                    "price_per_unit_hour": 10_000,
                    "currency": "CNY",
                    "amount": 10_000,
                    "fee": 0,
                    "state": rng.choice(["accepted", "settled", "voided"]),
                    "request_sha256": "0" * 64,
                    "acceptance": DOCUMENT,
                    "settled_amount": 5_000,
                    "hold_expires_ts": now + 3600,
                    "created_ts": now,
                    "updated_ts": now,
                }
                for i in range(SALES)
            ],
        )
        conn.execute(
            sa.insert(tasks_t),
            [
                {
                    "id": f"task.{i:05d}",
                    "kind": rng.choice(["own", "remote", "sold"]),
                    "consumer": "c1",
                    "spec": "{}",
                    "state": rng.choice(["running", "released", "queued"]),
                    "order_round": 0,
                    "created_ms": now * 1000,
                    "updated_ms": now * 1000,
                }
                for i in range(TASKS)
            ],
        )
        progress = (
            '{"bytes_done": 1048576, "bytes_total": 4194304, "rate_bytes_per_s": 50000000, "eta_ms": 60}'
        )
        conn.execute(
            sa.insert(migrations_t),
            [
                {
                    "id": f"mig.{i:04d}",
                    "state": "completed" if i % 10 else "transferring",
                    "source_pool": "a",
                    "source_instance": f"i{i}",
                    "progress": progress,
                    "bandwidth_mbps": 0,
                    "path_reprovisions": 0,
                    "transfer_attempts": 1,
                    "transfer_resumes": 0,
                    "attempts": 1,
                    "version": 1,
                    "created_ms": now * 1000,
                    "updated_ms": now * 1000 + i,
                }
                for i in range(MIGRATIONS)
            ],
        )
    engine.dispose()


@asynccontextmanager
async def serving(config: Path, environ: dict[str, str]) -> AsyncIterator[str]:
    """A node of `config` served in this loop with `environ` overrides; yields its URL."""
    server = NodeServer(load_settings(config, environ=environ), frozenset({"api"}))
    await server.start()
    try:
        yield server.url
    finally:
        await server.stop()


async def scrape_ms(http: aiohttp.ClientSession, url: str, rounds: int = ROUNDS) -> tuple[float, int]:
    """Median milliseconds of `rounds` sequential scrapes, and the size of the last one."""
    samples, size = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        async with http.get(url + "/metrics") as response:
            size = len(await response.read())
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000, size


async def burst_ms(http: aiohttp.ClientSession, url: str) -> float:
    """Milliseconds for `BURST` concurrent scrapes to all be answered."""

    async def one() -> None:
        async with http.get(url + "/metrics") as response:
            await response.read()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(BURST)))
    return (time.perf_counter() - started) * 1000


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    return bench_parser(
        "A /metrics scrape with business metrics over 10,000 orders against the HTTP-only one."
    )


async def run(tmp: Path) -> dict[str, Any]:
    """Seed one node's database, then scrape it three ways and the HTTP-only baseline."""
    config = make_node_dir(tmp, "bench")
    seed(load_settings(config, environ={}).database_url)
    figures: dict[str, Any] = {
        "orders": ORDERS,
        "sales": SALES,
        "partners": PARTNERS,
        "tasks": TASKS,
        "migrations": MIGRATIONS,
    }
    async with aiohttp.ClientSession() as http:
        async with serving(config, {"CPNODE_METRICS_BUSINESS": "false"}) as url:
            await scrape_ms(http, url, 5)
            plain, plain_size = await scrape_ms(http, url)
            plain_burst = await burst_ms(http, url)
        async with serving(config, {"CPNODE_METRICS_CACHE_S": "0"}) as url:
            await scrape_ms(http, url, 5)
            uncached, size = await scrape_ms(http, url)
        async with serving(config, {}) as url:
            await scrape_ms(http, url, 5)
            cached, _size = await scrape_ms(http, url)
            cached_burst = await burst_ms(http, url)
    figures["baseline_http_only_ms"] = round(plain, 2)
    figures["baseline_bytes"] = plain_size
    figures["business_bytes"] = size
    figures["reading_each_scrape"] = {"ms": round(uncached, 2), "ratio": round(uncached / plain, 1)}
    figures["cached"] = {"ms": round(cached, 2), "ratio": round(cached / plain, 1)}
    figures[f"burst_{BURST}_cached"] = {
        "ms": round(cached_burst, 1),
        "ratio": round(cached_burst / plain_burst, 1),
    }
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures (one JSON line with `--json`)."""
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        figures = asyncio.run(run(Path(tmp)))
    for key, value in figures.items():
        print(f"{key:<24}", json.dumps(value), flush=True)
    if args.json:
        emit_json("metrics", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
