"""Group commit benchmark (`python -m bench ledger --group`): 32 concurrent clients each posting one
transfer at a time to cpnode's ledger, against a pgledger-equivalent ledger with 8 clients (one
transfer per transaction; bench/pgledger_equivalent.py says what it reproduces and how), in the same
run, in alternating rounds.

Per backend (PostgreSQL when a URL is given; SQLite with WAL and synchronous=FULL, whose baseline is
the same design on plain sqlite3) and account count (uniform random pairs, amounts 1..1,000,000,
accounts without limits on both sides), each round runs, in an order rotated every round:
- baseline: 8 threads, each its own connection, one transfer per transaction;
- tasks: cpnode in process, 32 asyncio tasks awaiting `GroupCommitter.submit_async` in a loop;
- threads: cpnode in process, 32 threads calling `GroupCommitter.submit`;
- http: a real node (`cpnode run`, its own process and database), 32 aiohttp clients posting
  `POST /api/v1/ledger/transfers` with one transfer each;
- direct: 32 threads calling `ledger.submit` (a transaction each, no group commit), for reference.
Every cpnode answer is checked `created`. The ratio is a variant's rate over the baseline's rate
in the same round; the target is tasks ≥ 5× on PostgreSQL. Also printed: callers per transaction,
the node's CPU per HTTP request, and a lone caller's median latency on each path (bench/group_clients.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa

from bench.bench_ledger import postgres_schema, sqlite_database
from bench.group_clients import Side
from bench.pgledger_equivalent import (
    account_ids,
    pg_setup,
    sqlite_setup,
)
from bench.report import bench_parser, emit_json
from node.config import load_settings
from node.service import read_admin_token
from tests.support.nodes import NodeProcess, make_node_dir

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("baseline", "tasks", "threads", "http", "direct")
LABELS = {
    "baseline": "pgledger-equivalent, 8 clients, a transaction each",
    "tasks": "cpnode group commit, 32 asyncio tasks",
    "threads": "cpnode group commit, 32 threads",
    "http": "cpnode node over HTTP, 32 clients",
    "direct": "cpnode, 32 threads, a transaction each",
}


@contextmanager
def node_for(
    directory: Path, name: str, db_url: str | None, accounts: list[str]
) -> Iterator[tuple[str, str, int]]:
    """A real node process (its own database) with the benchmark's accounts: (URL, admin token, pid)."""
    config = make_node_dir(directory, name, db_url=db_url)
    token = read_admin_token(load_settings(config, environ={}))
    node = NodeProcess(config)
    url = node.start()
    try:
        body = json.dumps(
            {"accounts": [{"id": a, "currency": "CNY", "kind": "provider"} for a in accounts]}
        ).encode()

        async def create() -> None:
            async with aiohttp.ClientSession(url) as http:
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
                async with http.post("/api/v1/ledger/accounts", data=body, headers=headers) as response:
                    assert response.status == 200, await response.text()

        asyncio.run(create())
        assert node.proc is not None
        yield url, token, node.proc.pid
    finally:
        node.stop()


def measure(backend: str, accounts: int, args: argparse.Namespace, directory: Path) -> list[dict[str, Any]]:
    """Every round of every variant on one backend and account count."""
    chosen = {"baseline", *(args.variant or VARIANTS)}
    variants = [v for v in VARIANTS if v in chosen and not (v == "http" and args.no_http)]
    rows: list[dict[str, Any]] = []
    with _databases(backend, directory, args.postgres) as (ledger_url, connect, node_db):
        if backend == "sqlite":
            conn = connect()
            sqlite_setup(conn, accounts)
        else:
            with connect() as conn:
                pg_setup(conn, accounts)
        name = f"bench-{backend[:2]}-{accounts}"
        with node_for(directory, name, node_db, account_ids(accounts)) as node:
            side = Side(backend, accounts, ledger_url, connect, node)
            for variant in variants:  # warm-up: connections, caches, compiled functions
                side.run(variant, f"warm-{variant}", args.warmup_s, seed=0)
            for round_ in range(args.rounds):
                shift = round_ % len(variants)
                for variant in variants[shift:] + variants[:shift]:
                    count, seconds = side.run(variant, f"{variant}{round_}", args.duration_s, seed=round_ + 1)
                    rows.append(
                        {
                            "backend": backend,
                            "accounts": accounts,
                            "variant": variant,
                            "round": round_,
                            "transfers": count,
                            "seconds": round(seconds, 3),
                            "per_s": count / seconds,
                            "load": os.getloadavg()[0],
                        }
                    )
                line = "  ".join(
                    f"{r['variant']} {r['per_s']:,.0f}/s"
                    for r in rows
                    if r["round"] == round_ and r["accounts"] == accounts and r["backend"] == backend
                )
                print(
                    f"{backend} {accounts} accounts, round {round_ + 1}: {line}  (load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
            print(f"  callers per transaction (group commit runs): {statistics.mean(side.groups):.1f}")
            lone = side.lone_latency()
            print("  one caller alone, p50: " + ", ".join(f"{path} {ms:.2f} ms" for path, ms in lone.items()))
            rows.append({"backend": backend, "accounts": accounts, "variant": "lone", "p50_ms": lone})
            for variant, samples in side.cpu.items():
                client, server = (statistics.median(x[i] for x in samples) * 1e6 for i in (0, 1))
                print(
                    f"  CPU per transfer, {variant}: {client:.0f} µs in this process, {server:.0f} µs in PostgreSQL"
                )
                rows.append(
                    {
                        "backend": backend,
                        "accounts": accounts,
                        "variant": "cpu",
                        "of": variant,
                        "cpu_us": [client, server],
                    }
                )
            if side.node_cpu_per_request:
                print(
                    f"  node CPU per HTTP request: {statistics.median(side.node_cpu_per_request) * 1e6:.0f} µs"
                )
            side.engine.dispose()
    return rows


@contextmanager
def _databases(
    backend: str, directory: Path, postgres: str | None
) -> Iterator[tuple[str, Callable[..., Any], str | None]]:
    """(ledger URL, a connection to the baseline's database, the node's database URL or None for its
    own SQLite file). The baseline's database is the ledger's: its tables are all named bl_*."""
    if backend == "sqlite":
        with sqlite_database(directory) as url:
            path = str(directory / f"baseline-{time.monotonic_ns()}.db")

            def connect_sqlite() -> sqlite3.Connection:
                conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute("PRAGMA foreign_keys = ON")
                return conn

            yield url, connect_sqlite, None
        return
    import psycopg

    assert postgres is not None
    with postgres_schema(postgres) as ledger_url, postgres_schema(postgres) as node_url:
        parsed = sa.make_url(ledger_url)
        options = str(parsed.query.get("options", ""))
        dsn = parsed.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
        yield (
            ledger_url,
            lambda **extra: psycopg.connect(dsn, options=options, autocommit=True, **extra),
            node_url,
        )


def summarize(rows: list[dict[str, Any]]) -> list[str]:
    """One line per backend, account count and variant: rate range and ratio range to the baseline."""
    lines = []
    keys = sorted({(r["backend"], r["accounts"]) for r in rows}, key=lambda k: (k[0] != "postgresql", -k[1]))
    for backend, accounts in keys:
        mine = [r for r in rows if r["backend"] == backend and r["accounts"] == accounts and "round" in r]
        base = {r["round"]: r["per_s"] for r in mine if r["variant"] == "baseline"}
        for variant in VARIANTS:
            these = [r for r in mine if r["variant"] == variant]
            if not these:
                continue
            rates = [r["per_s"] for r in these]
            ratios = [r["per_s"] / base[r["round"]] for r in these]
            label = (
                LABELS[variant]
                if backend == "postgresql" or variant != "baseline"
                else "plain sqlite3, 8 clients, a transaction each"
            )
            lines.append(
                f"{backend:<10} {accounts:>5}  {label:<52} {min(rates):>8,.0f}–{max(rates):>8,.0f}/s  "
                f"×{min(ratios):.1f}–{max(ratios):.1f} (median ×{statistics.median(ratios):.1f})"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the group-commit scenario and print rates, ratios and the target."""
    parser = bench_parser(__doc__.split("\n\n")[0])
    parser.prog = "python -m bench ledger --group"
    parser.add_argument(
        "--postgres",
        default=os.environ.get("CPNODE_BENCH_POSTGRES_URL") or os.environ.get("CPNODE_TEST_POSTGRES_URL"),
    )
    parser.add_argument("--backend", action="append", choices=("postgresql", "sqlite"))
    parser.add_argument("--accounts", type=int, action="append", help="account counts (default 1000 and 10)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=4.0, help="seconds per variant per round")
    parser.add_argument("--warmup-s", type=float, default=1.0)
    parser.add_argument("--no-http", action="store_true", help="leave out the node over HTTP")
    parser.add_argument(
        "--variant", action="append", choices=VARIANTS, help="only these variants (the baseline always runs)"
    )
    args = parser.parse_args(argv)
    backends = args.backend or ["postgresql", "sqlite"]
    if "postgresql" in backends and not args.postgres:
        print("PostgreSQL skipped: set CPNODE_BENCH_POSTGRES_URL=postgresql+psycopg://USER@HOST/DB")
        backends.remove("postgresql")
    print(
        f"CPython {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.rounds} rounds of {args.duration_s} s"
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cpnode-bench-group-") as tmp:
        for backend in backends:
            for accounts in args.accounts or [1000, 10]:
                rows += measure(backend, accounts, args, Path(tmp))
    print()
    for line in summarize(rows):
        print(line)
    pg_tasks = [r for r in rows if r["backend"] == "postgresql" and r["variant"] == "tasks"]
    if pg_tasks:
        base = {
            (r["accounts"], r["round"]): r["per_s"]
            for r in rows
            if r["backend"] == "postgresql" and r["variant"] == "baseline"
        }
        worst = min(r["per_s"] / base[(r["accounts"], r["round"])] for r in pg_tasks)
        print(
            f"\nPostgreSQL, 32 clients with group commit ≥ 5× pgledger-equivalent with 8: "
            f"{'met' if worst >= 5 else 'NOT met'} (lowest ×{worst:.1f}; load average "
            f"{min(r['load'] for r in pg_tasks):.1f}–{max(r['load'] for r in pg_tasks):.1f})"
        )
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"ledger-group-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps(rows, indent=2))
    print(f"results: {path.relative_to(ROOT)}")
    if args.json:
        emit_json("ledger-group", {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
