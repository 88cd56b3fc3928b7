"""Ledger write-path benchmark: batched transfers per second against a plain-insert baseline.

For each backend (SQLite with WAL and synchronous=FULL; PostgreSQL when a URL is given), account
choice (uniform, Zipf s=1.0, Zipf s=2.0), mix (single-phase only; single-phase with pending→post
or void) and batch size (1, 100, 1000), the ledger applies the requests through `ledger.submit`
(one transaction per batch: head lock, idempotency lookups, account reads with limits, inserts,
balance updates). The baseline then inserts the very rows the ledger stored, with the same batch
boundaries, one transaction per batch, into an identical table (same columns, keys and indexes)
with plain sqlite3 / plain psycopg `executemany`. The ratio is ledger rate / baseline rate. Each
timed section starts after a garbage collection (`settle`), so the debris of setup (migrations,
account creation, the previous run) lands in neither side's timing.

Targets: SQLite batched ≥ 50 % of plain sqlite3 and ≥ 10,000 transfers/s; PostgreSQL ≥ 5,000/s
batched and ≥ 2,000/s under Zipf s=2.0.

Run: .venv/bin/python -m bench ledger   (PostgreSQL: set CPNODE_BENCH_POSTGRES_URL or
CPNODE_TEST_POSTGRES_URL to a postgresql+psycopg:// URL; a fresh schema is made and dropped.)
`python -m bench ledger --group [OPTIONS]` runs the group-commit scenario instead: 32 concurrent
single-transfer clients against a pgledger-equivalent baseline with 8 (bench/ledger_group.py).
"""

from __future__ import annotations

import argparse
import bisect
import gc
import itertools
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.report import bench_parser, emit_json
from ledger import AccountKind, AccountSpec, TransferKind, TransferRequest, create_accounts, submit
from node.db import make_engine, upgrade

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTIONS = {"uniform": 0.0, "zipf-1.0": 1.0, "zipf-2.0": 2.0}
MIXES = ("single", "two-phase")
BATCH_SIZES = (1, 100, 1000)


@dataclass
class Row:
    """One measured scenario."""

    backend: str
    distribution: str
    mix: str
    batch: int
    transfers: int
    ledger_per_s: float
    baseline_per_s: float

    @property
    def ratio(self) -> float:
        """Ledger rate over baseline rate."""
        return self.ledger_per_s / self.baseline_per_s


class Chooser:
    """Draws account indexes: uniform, or Zipf with exponent s over ranks 1..n."""

    def __init__(self, n: int, s: float, rnd: random.Random) -> None:
        self.rnd = rnd
        self.n = n
        weights = [1.0 / (rank**s) for rank in range(1, n + 1)]
        self.cumulative = list(itertools.accumulate(weights))

    def pair(self) -> tuple[int, int]:
        """Two different account indexes."""
        total = self.cumulative[-1]
        while True:
            a = bisect.bisect_left(self.cumulative, self.rnd.random() * total)
            b = bisect.bisect_left(self.cumulative, self.rnd.random() * total)
            if a != b:
                return a, b


def workload(count: int, batch: int, accounts: int, s: float, mix: str, seed: int) -> list[TransferRequest]:
    """`count` requests; in the two-phase mix half open holds, later posted (70 %) or voided (30 %)."""
    rnd = random.Random(seed)
    chooser = Chooser(accounts, s, rnd)
    requests: list[TransferRequest] = []
    waiting: list[tuple[int, str, int]] = []  # (position, hold id, amount)
    for position in range(count):
        # Resolve holds from an earlier batch, so each batch mixes new work and resolutions.
        if mix == "two-phase" and waiting and waiting[0][0] + batch <= position and rnd.random() < 0.5:
            _, hold_id, amount = waiting.pop(0)
            if rnd.random() < 0.7:
                kind, post = TransferKind.POST, rnd.randint(1, amount)
                requests.append(TransferRequest(f"r{position}", kind, pending_id=hold_id, amount=post))
            else:
                requests.append(TransferRequest(f"r{position}", TransferKind.VOID, pending_id=hold_id))
            continue
        debit, credit = chooser.pair()
        amount = rnd.randint(1, 10_000)
        pending = mix == "two-phase" and rnd.random() < 0.5
        kind = TransferKind.PENDING if pending else TransferKind.SINGLE
        requests.append(
            TransferRequest(
                f"t{position}",
                kind,
                f"acct-{debit}",
                f"acct-{credit}",
                "CNY",
                amount,
                timeout_s=3600 if pending else None,
            )
        )
        if pending:
            waiting.append((position, f"t{position}", amount))
    return requests


def settle() -> None:
    """Collect the garbage left by setup (migrations, account creation, the previous run) before a
    timed section, on both sides alike, so neither pays for it at a random moment inside its timing.
    What the measured code allocates is still collected, and timed, as it goes."""
    gc.collect()


@contextmanager
def sqlite_database(directory: Path) -> Iterator[str]:
    """A fresh SQLite file URL."""
    path = directory / f"{uuid.uuid4().hex}.db"
    yield f"sqlite:///{path}"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema (URL with its search_path), dropped afterwards."""
    schema = f"cpnode_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in url else "?"
    try:
        yield f"{url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def run_ledger(
    url: str, requests: Sequence[TransferRequest], batch: int, accounts: int
) -> tuple[float, list[int]]:
    """Submit `requests` in batches; return (seconds, rows created per batch)."""
    engine = make_engine(url)
    upgrade(engine)
    specs = [AccountSpec(f"acct-{i}", "CNY", AccountKind.PROVIDER) for i in range(accounts)]
    for start in range(0, len(specs), 1000):
        create_accounts(engine, specs[start : start + 1000])
    created: list[int] = []
    settle()
    started = time.perf_counter()
    for start in range(0, len(requests), batch):
        results = submit(engine, requests[start : start + batch])
        created.append(sum(1 for r in results if r.status == "created"))
    elapsed = time.perf_counter() - started
    failed = [r for r in results if not r.ok]
    if failed:
        raise SystemExit(f"benchmark workload produced failures, e.g. {failed[0]}")
    engine.dispose()
    return elapsed, created


def stored_rows(url: str) -> list[tuple[Any, ...]]:
    """Every stored transfer row, in sequence order."""
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.text("SELECT * FROM ledger_transfers ORDER BY seq"))]
    engine.dispose()
    return rows


def sqlite_baseline(url: str, rows: list[tuple[Any, ...]], batches: list[int], directory: Path) -> float:
    """Seconds for plain sqlite3 to insert `rows` into an identical table, one transaction per batch."""
    source = sqlite3.connect(sa.make_url(url).database or "")
    ddl = [
        sql
        for (sql,) in source.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'ledger_transfers' AND sql IS NOT NULL "
            "ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END"
        )
    ]
    source.close()
    path = directory / f"baseline-{uuid.uuid4().hex}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    for statement in ddl:
        conn.execute(statement)
    insert = f"INSERT INTO ledger_transfers VALUES ({', '.join('?' * len(rows[0]))})"
    settle()
    started = time.perf_counter()
    position = 0
    for size in batches:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, rows[position : position + size])
        conn.execute("COMMIT")
        position += size
    elapsed = time.perf_counter() - started
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return elapsed


def postgres_baseline(url: str, rows: list[tuple[Any, ...]], batches: list[int]) -> float:
    """Seconds for plain psycopg to insert `rows` into `LIKE ledger_transfers INCLUDING ALL`, per batch."""
    import psycopg

    parsed = sa.make_url(url)
    options = str(parsed.query.get("options", ""))
    dsn = parsed.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    with psycopg.connect(dsn, options=options or None) as conn:
        conn.execute("CREATE TABLE baseline_transfers (LIKE ledger_transfers INCLUDING ALL)")
        conn.commit()
        insert = f"INSERT INTO baseline_transfers VALUES ({', '.join(['%s'] * len(rows[0]))})"
        settle()
        started = time.perf_counter()
        position = 0
        with conn.cursor() as cur:
            for size in batches:
                cur.executemany(insert, rows[position : position + size])
                conn.commit()
                position += size
        return time.perf_counter() - started


def measure(
    backend: str,
    database: Callable[[], Any],
    distribution: str,
    mix: str,
    batch: int,
    count: int,
    accounts: int,
    directory: Path,
    repeat: int,
) -> Row:
    """One scenario, `repeat` times: the ledger, then the baseline on the rows it stored; best of each.

    Best-of rather than mean, because other work on the machine only ever makes a run slower."""
    requests = workload(count, batch, accounts, DISTRIBUTIONS[distribution], mix, seed=7)
    ledger_best = baseline_best = float("inf")
    stored = 0
    for _ in range(repeat):
        with database() as url:
            ledger_s, batches = run_ledger(url, requests, batch, accounts)
            rows = stored_rows(url)
            if backend == "sqlite":
                baseline_s = sqlite_baseline(url, rows, batches, directory)
            else:
                baseline_s = postgres_baseline(url, rows, batches)
        ledger_best, baseline_best = min(ledger_best, ledger_s), min(baseline_best, baseline_s)
        stored = len(rows)
    return Row(backend, distribution, mix, batch, stored, stored / ledger_best, stored / baseline_best)


def count_for(backend: str, batch: int, scale: float) -> int:
    """How many requests a scenario submits: few for one-per-transaction runs (each waits for fsync)."""
    base = {1: 400, 100: 10_000, 1000: 30_000}[batch]
    if backend == "postgresql" and batch > 1:
        base //= 2
    return max(batch, int(base * scale))


def check_targets(rows: Sequence[Row]) -> list[str]:
    """One line per target: met or not, with the figure."""
    lines = []
    sqlite_batched = [r for r in rows if r.backend == "sqlite" and r.batch > 1]
    if sqlite_batched:
        worst_ratio = min(sqlite_batched, key=lambda r: r.ratio)
        worst_rate = min(sqlite_batched, key=lambda r: r.ledger_per_s)
        big = [r for r in sqlite_batched if r.batch == 1000]
        lines.append(
            f"SQLite batched ≥ 10,000/s: {'met' if worst_rate.ledger_per_s >= 10_000 else 'NOT met'} "
            f"(slowest {worst_rate.ledger_per_s:,.0f}/s)"
        )
        lines.append(
            f"SQLite batched ≥ 50 % of plain sqlite3: {'met' if worst_ratio.ratio >= 0.5 else 'NOT met'} "
            f"(lowest {worst_ratio.ratio:.0%} at batch {worst_ratio.batch}, {worst_ratio.distribution}, "
            f"{worst_ratio.mix}; batch 1000 median {statistics.median(r.ratio for r in big):.0%})"
        )
    pg_batched = [r for r in rows if r.backend == "postgresql" and r.batch > 1]
    if pg_batched:
        slowest = min(pg_batched, key=lambda r: r.ledger_per_s)
        zipf2 = [r for r in pg_batched if r.distribution == "zipf-2.0"]
        lines.append(
            f"PostgreSQL batched ≥ 5,000/s: {'met' if slowest.ledger_per_s >= 5000 else 'NOT met'} "
            f"(slowest {slowest.ledger_per_s:,.0f}/s)"
        )
        worst_zipf = min(zipf2, key=lambda r: r.ledger_per_s)
        lines.append(
            f"PostgreSQL Zipf s=2.0 ≥ 2,000/s: {'met' if worst_zipf.ledger_per_s >= 2000 else 'NOT met'} "
            f"(slowest {worst_zipf.ledger_per_s:,.0f}/s)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run every scenario and print the table, the targets, and a JSON copy in bench/results/."""
    argv = sys.argv[1:] if argv is None else argv
    if "--group" in argv:  # the group-commit scenario has options of its own
        from bench import ledger_group

        return ledger_group.main([arg for arg in argv if arg != "--group"])
    args = build_parser().parse_args(argv)
    backends = args.backend or ["sqlite", "postgresql"]
    if "postgresql" in backends and not args.postgres:
        print("PostgreSQL skipped: set CPNODE_BENCH_POSTGRES_URL=postgresql+psycopg://USER@HOST/DB")
        backends.remove("postgresql")
    return run(args, backends)


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    parser = bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument(
        "--group",
        action="store_true",
        help="run the group-commit scenario instead (its options: python -m bench ledger --group --help)",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("CPNODE_BENCH_POSTGRES_URL") or os.environ.get("CPNODE_TEST_POSTGRES_URL"),
    )
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply the number of transfers per scenario"
    )
    parser.add_argument(
        "--batch", type=int, action="append", choices=BATCH_SIZES, help="only these batch sizes"
    )
    parser.add_argument("--backend", action="append", choices=("sqlite", "postgresql"))
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per scenario; the best of each side counts"
    )
    return parser


def run(args: argparse.Namespace, backends: list[str]) -> int:
    """Run every scenario on `backends`; print the table, the targets and (with --json) one JSON line."""
    rows: list[Row] = []
    header = f"{'backend':<10} {'choice':<9} {'mix':<9} {'batch':>5} {'transfers':>9} {'ledger/s':>10} {'plain/s':>10} {'ratio':>6}"
    print(f"{args.accounts} accounts, CPython {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(header)
    with tempfile.TemporaryDirectory(prefix="cpnode-bench-") as tmp:
        directory = Path(tmp)
        for backend in backends:
            for distribution, mix, batch in itertools.product(
                DISTRIBUTIONS, MIXES, args.batch or BATCH_SIZES
            ):
                database: Callable[[], Any] = (
                    (lambda: sqlite_database(directory))
                    if backend == "sqlite"
                    else (lambda: postgres_schema(args.postgres))
                )
                count = count_for(backend, batch, args.scale)
                repeat = 1 if batch == 1 else args.repeat
                row = measure(
                    backend, database, distribution, mix, batch, count, args.accounts, directory, repeat
                )
                rows.append(row)
                print(
                    f"{row.backend:<10} {row.distribution:<9} {row.mix:<9} {row.batch:>5} {row.transfers:>9} "
                    f"{row.ledger_per_s:>10,.0f} {row.baseline_per_s:>10,.0f} {row.ratio:>6.0%}",
                    flush=True,
                )
    print()
    for line in check_targets(rows):
        print(line)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"ledger-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
    path.write_text(json.dumps([{**asdict(r), "ratio": r.ratio} for r in rows], indent=2))
    print(f"results: {path.relative_to(ROOT)}")
    if args.json:
        emit_json("ledger", {"rows": [{**asdict(r), "ratio": round(r.ratio, 3)} for r in rows]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
