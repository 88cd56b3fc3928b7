"""The console's server time per page with 10,000 orders and 100 partners in the database, against
reading the same data through the JSON API in the same run (the API calls each page makes).

A node runs in this process on SQLite with the rows written straight into its tables (orders,
partners with sync state); each page and each API read is requested `--rounds` times over HTTP
after a warm-up; the figures are the fastest request (what the code costs when the machine is free), p50 and p90
milliseconds, and each page's p50 over its API p50.
Target: every page under 50 ms p50.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from nacl.signing import SigningKey

from bench.report import bench_parser, emit_json, percentile
from federation import store
from federation.keys import public_key_text
from federation.partners import Agreement, Partner
from node.cli.main import main as cpnode
from node.config import load_settings
from node.service import NodeServer
from node.trading.tables import orders_t

ORDERS, PARTNERS = 10_000, 100
# Each page and the JSON API reads it makes (the API side of the comparison).
PAGES: dict[str, list[str]] = {
    "/": [
        "/api/v1/node",
        "/readyz",
        "/api/v1/partners/links",
        "/api/v1/pools",
        "/api/v1/orders?limit=10",
        "/api/v1/trading/summary?since_ts={day}",
    ],
    "/federation": ["/api/v1/node", "/api/v1/partners"],
    "/pools": ["/api/v1/pools", "/api/v1/pools/utilisation"],
    "/orders": ["/api/v1/orders?limit=51", "/api/v1/tasks"],
    "/migrations": ["/api/v1/migrations"],
    "/ledger": [
        "/api/v1/ledger/accounts",
        "/api/v1/ledger/checkpoint",
        "/api/v1/ledger/reconciliations?limit=20",
        "/api/v1/partners/links",
    ],
    "/statements": ["/api/v1/statements"],
    "/strategies": ["/api/v1/strategies"],
    "/plan": ["/api/v1/whoami"],
    "/offers": ["/api/v1/offers"],
}
TARGET_MS = 50.0


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options."""
    parser = bench_parser(
        "Console pages' server time vs the JSON API they read, 10,000 orders, 100 partners."
    )
    parser.add_argument(
        "--rounds", type=int, default=40, help="requests per page and per API read (default 40)"
    )
    return parser


def seed(engine: Any, now: int) -> None:
    """10,000 orders of 20 consumers and 100 partners with their sync state, written directly."""
    rows = [
        {
            "id": f"bench.{i:06d}",
            "consumer": f"c{i % 20}",
            "offer_id": f"p{i % 100}-offer",
            "source": f"partner:p{i % 100}",
            "partner": f"p{i % 100}",
            "pool": "pool-a",
            "units": 1,
            "hours": 2,
            "price_per_unit_hour": 21_800,
            "currency": "CNY",
            "amount": 43_600,
            "fee": 2_180,
            "state": ("accepted", "settled", "cancelled")[i % 3],
            "used_hours": 1 if i % 3 == 1 else None,
            "settled_amount": 21_800 if i % 3 == 1 else None,
            "notify_partner": False,
            "request_sha256": f"{i:064x}",
            "hold_expires_ts": now + 86_400,
            "created_ts": now - (ORDERS - i) * 5,
            "updated_ts": now - (ORDERS - i) * 5,
        }
        for i in range(ORDERS)
    ]
    with engine.begin() as conn:
        conn.execute(orders_t.insert(), rows)
    for n in range(PARTNERS):
        key = public_key_text(SigningKey.generate().verify_key)
        partner = Partner(f"p{n}", (f"http://127.0.0.1:{20000 + n}",), key, Agreement(credit_limit=1_000_000))
        store.add_partner(engine, partner, now)
        store.put_sync_state(
            engine,
            partner.name,
            status="ok" if n % 10 else "failing",
            failures=n % 10 == 0,
            last_success_ts=now - n,
        )


async def _timed(
    http: aiohttp.ClientSession, path: str, rounds: int, headers: dict[str, str] | None = None
) -> list[float]:
    times = []
    for _ in range(rounds + 3):
        started = time.perf_counter()
        async with http.get(path, headers=headers) as response:
            await response.read()
            if response.status >= 500:
                raise RuntimeError(f"{path}: {response.status}")
        times.append((time.perf_counter() - started) * 1000)
    return times[3:]  # the first requests warm caches and connections


async def run(rounds: int) -> dict[str, Any]:
    """Start the node, seed it, sign in, and time every page and its API reads."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "bench"
        assert (
            cpnode(
                [
                    "init",
                    str(directory),
                    "--name",
                    "bench",
                    "--operator",
                    "Bench",
                    "--region",
                    "Local",
                    "--port",
                    "0",
                ]
            )
            == 0
        )
        config = directory / "node.toml"
        with config.open("a", encoding="utf-8") as handle:
            handle.write("\n[scheduler]\nenabled = false\n")
        server = NodeServer(load_settings(config, environ={}))
        await server.start()
        try:
            assert server.ctx is not None
            seed(server.ctx.engine, int(time.time()))
            admin = {"Authorization": f"Bearer {server.ctx.admin_token}"}
            jar = aiohttp.CookieJar(unsafe=True)
            async with aiohttp.ClientSession(server.url, cookie_jar=jar) as http:
                async with http.get("/signin") as response:
                    csrf = re.search(r'name="csrf" value="([^"]+)"', await response.text())
                assert csrf is not None
                async with http.post(
                    "/signin", data={"csrf": csrf.group(1), "token": server.ctx.admin_token}
                ) as response:
                    assert response.status == 200, await response.text()
                figures: dict[str, Any] = {}
                for page, reads in PAGES.items():
                    page_ms = await _timed(http, page, rounds)
                    api_ms = [0.0] * rounds
                    day = int(time.time()) // 86_400 * 86_400
                    for read in reads:  # the page's reads one after another: what a client would do
                        for index, value in enumerate(
                            await _timed(http, read.format(day=day), rounds, admin)
                        ):
                            api_ms[index] += value
                    page_p50, api_p50 = percentile(page_ms, 0.5), percentile(api_ms, 0.5)
                    figures[page] = {
                        "page_min_ms": round(min(page_ms), 2),
                        "page_p50_ms": round(page_p50, 2),
                        "page_p90_ms": round(percentile(page_ms, 0.9), 2),
                        "api_p50_ms": round(api_p50, 2),
                        "ratio": round(page_p50 / api_p50, 2) if api_p50 else None,
                    }
            return figures
        finally:
            await server.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one line per page."""
    args = build_parser().parse_args(argv)
    figures = asyncio.run(run(args.rounds))
    print(
        f"{ORDERS:,} orders, {PARTNERS} partners, {args.rounds} requests each; target < {TARGET_MS:g} ms p50"
    )
    print(f"{'page':<14}{'page min':>10}{'page p50':>10}{'page p90':>10}{'API p50':>10}{'ratio':>8}")
    for page, row in figures.items():
        flag = "" if row["page_p50_ms"] < TARGET_MS else "  over target"
        print(
            f"{page:<14}{row['page_min_ms']:>10.1f}{row['page_p50_ms']:>10.1f}{row['page_p90_ms']:>10.1f}{row['api_p50_ms']:>10.1f}{row['ratio']:>8.2f}{flag}"
        )
    worst = max(row["page_p50_ms"] for row in figures.values())
    print(
        f"slowest page p50: {worst:.1f} ms ({'meets' if worst < TARGET_MS else 'misses'} the {TARGET_MS:g} ms target)"
    )
    if args.json:
        emit_json(
            "console",
            {"pages": figures, "slowest_page_p50_ms": worst, "orders": ORDERS, "partners": PARTNERS},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
