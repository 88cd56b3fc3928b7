"""Supervision benchmark: a supervisor ingesting one report from each of N nodes (default 500).

A supervisor (the `supervisor` role, SQLite in a temporary folder) serves on 127.0.0.1 with N
registered nodes, each with its own Ed25519 key. Every node's report (4 pool figures, one trade
volume) is built and signed beforehand, and its request signed just before sending. Timed: the
reports POSTed over real HTTP, 16 in flight, each authenticated (request signature, replay check),
read (document signature and rules) and kept (sequence check and insert): reports/s. Baselines in
the same run, over the same reports: the two signature checks alone (request and document, no HTTP
and no database), and storing the reports unsigned (the same inserts, no checks). Then the national
totals over the N nodes, as `GET /api/v1/supervision` computes them.

With `--postgres URL` both the supervisor and the unsigned baseline use fresh schemas of that
PostgreSQL database instead of SQLite files.

Run: .venv/bin/python -m bench supervision [--nodes N] [--rounds R] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import sqlalchemy as sa
from nacl.signing import SigningKey

from bench.report import bench_parser, emit_json
from federation.documents import load_document, verify_document
from federation.httpsig import Identity, read_signature_params, sign_request, verify_request
from federation.keys import key_id, public_key_text
from node.config import load_settings
from node.db import write_transaction
from node.service import NodeServer
from node.supervision import store, tables
from node.supervision.figures import PoolFigures
from node.supervision.report import TradeVolume, build_report
from node.supervision.totals import summary
from tests.support.databases import fresh_schema
from tests.support.nodes import make_node_dir

PATH = "/fed/v1/supervision/reports"
IN_FLIGHT = 16
CHIPS = (("nvidia", "A100"), ("huawei", "Ascend 910B"), ("hygon", "K100"), ("nvidia", "H100"))
REGIONS = ("beijing", "shanghai", "guangdong", "guizhou", "gansu", "inner-mongolia", "ningxia", "chengdu")


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    parser = bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2, help="reports per node (sequence 1, 2, ...)")
    parser.add_argument(
        "--postgres", default=None, metavar="URL", help="postgresql+psycopg://... instead of SQLite"
    )
    return parser


def node_report(index: int, key: SigningKey, seq: int, now: int) -> bytes:
    """Report `seq` of node `n<index>`: four pools in its region, one trade volume."""
    region = REGIONS[index % len(REGIONS)]
    pools = [
        PoolFigures(
            f"pool-{p}", region, vendor, model, (f"cid-{index}-{p}",), 100, 40, 800, 320, 6400, 2560, 1000
        )
        for p, (vendor, model) in enumerate(CHIPS)
    ]
    return build_report(
        node=f"n{index}",
        audience="watch",
        seq=seq,
        now_ts=now,
        region=region,
        interval_s=300,
        period=(now - 300, now),
        pools=pools,
        trades=[TradeVolume("CNY", orders=3, order_amount=123_400, unit_hours=12)],
        key=key,
    )


async def post_all(url: str, signed: list[tuple[bytes, dict[str, str]]]) -> None:
    """POST every (body, headers) with IN_FLIGHT requests at a time; fail on any non-200."""
    queue = list(reversed(signed))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT)) as session:

        async def worker() -> None:
            while queue:
                body, headers = queue.pop()
                async with session.post(url + PATH, data=body, headers=headers) as response:
                    if response.status != 200:
                        raise RuntimeError(f"report refused: {response.status} {await response.text()}")

        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


def verify_only(url: str, keys: dict[str, SigningKey], signed: list[tuple[bytes, dict[str, str]]]) -> None:
    """Baseline: the request and document signature checks of every report, nothing else."""
    verify_keys = {name: key.verify_key for name, key in keys.items()}
    for body, headers in signed:
        lines = list(headers.items())
        params = read_signature_params(lines)
        key = verify_keys[params.node]
        verify_request("POST", url + PATH, lines, body, key, params)
        document, payload = load_document(body)
        verify_document(document, params.node, {key_id(key): key}, payload)


def store_unsigned(engine: sa.Engine, bodies: list[tuple[str, int, bytes]], now: int) -> None:
    """Baseline: the same report rows inserted one transaction each, without any check."""
    for node, seq, body in bodies:
        with write_transaction(engine) as conn:
            conn.execute(
                tables.reports_t.insert().values(
                    node=node,
                    seq=seq,
                    sha256="0" * 64,
                    key_id="ed25519:bench",
                    issued_ts=now,
                    received_ts=now,
                    period_start_ts=now - 300,
                    period_end_ts=now,
                    interval_s=300,
                    region="bench",
                    body=body,
                )
            )


@contextmanager
def database(base_url: str | None, name: str) -> Iterator[str | None]:
    """A fresh PostgreSQL schema under `base_url` (dropped afterwards), or None for SQLite."""
    if base_url is None:
        yield None
        return
    with fresh_schema(f"bench_supervision_{name}", base_url) as url:
        yield url


async def run(args: argparse.Namespace, tmp: Path, urls: tuple[str | None, str | None]) -> dict[str, float]:
    """Serve the supervisor, ingest, time the baselines; the figures."""
    config = make_node_dir(
        tmp,
        "watch",
        db_url=urls[0],
        extra_toml='[federation]\nallow_networks = ["127.0.0.0/8"]\n[scheduler]\nenabled = false\n',
    )
    server = NodeServer(load_settings(config, environ={}), frozenset({"supervisor"}))
    url = await server.start()
    assert server.ctx is not None
    engine = server.ctx.engine
    now = int(time.time())
    keys = {f"n{i}": SigningKey.generate() for i in range(args.nodes)}
    for name, key in keys.items():
        store.add_pinned(
            engine,
            tables.nodes_t,
            store.Pinned(name, "http://127.0.0.1:9", public_key_text(key.verify_key)),
            now,
        )
    figures: dict[str, float] = {"nodes": args.nodes, "reports": args.nodes * args.rounds}
    ingest_s = verify_s = 0.0
    try:
        for seq in range(1, args.rounds + 1):
            bodies = [node_report(i, keys[f"n{i}"], seq, now) for i in range(args.nodes)]
            stamp = int(time.time())
            signed = [
                (
                    body,
                    sign_request(
                        Identity(f"n{i}", keys[f"n{i}"]), "POST", url + PATH, body, to="watch", now_ts=stamp
                    ),
                )
                for i, body in enumerate(bodies)
            ]
            started = time.perf_counter()
            verify_only(url, keys, signed)
            verify_s += time.perf_counter() - started
            started = time.perf_counter()
            await post_all(url, signed)
            ingest_s += time.perf_counter() - started
        started = time.perf_counter()
        nodes = store.latest_reports(engine)
        totals = summary(nodes, "watch", now, 3)
        figures["summary_ms"] = round((time.perf_counter() - started) * 1000, 1)
        assert totals["totals"]["reporting_nodes"] == args.nodes
        unsigned = make_node_dir(tmp, "plain", db_url=urls[1])
        plain = load_settings(unsigned, environ={})
        from node.db import open_database

        plain_engine = open_database(plain)
        rows = [
            (f"n{i}", seq, node_report(i, keys[f"n{i}"], seq, now))
            for seq in range(1, args.rounds + 1)
            for i in range(args.nodes)
        ]
        started = time.perf_counter()
        store_unsigned(plain_engine, rows, now)
        store_s = time.perf_counter() - started
        plain_engine.dispose()
    finally:
        await server.stop()
    reports = args.nodes * args.rounds
    figures["ingest_reports_per_s"] = round(reports / ingest_s, 1)
    figures["verify_only_reports_per_s"] = round(reports / verify_s, 1)
    figures["store_unsigned_reports_per_s"] = round(reports / store_s, 1)
    figures["ratio_ingest_to_verify_only"] = round(ingest_s / verify_s, 2)
    figures["ratio_ingest_to_store_unsigned"] = round(ingest_s / store_s, 2)
    return figures


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    args = build_parser().parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="cpnode-bench-supervision-") as tmp,
        database(args.postgres, "watch") as watch_url,
        database(args.postgres, "plain") as plain_url,
    ):
        figures = asyncio.run(run(args, Path(tmp), (watch_url, plain_url)))
    print(f"database: {'PostgreSQL' if args.postgres else 'SQLite (WAL, synchronous=FULL)'}")
    print(
        f"{figures['reports']:,.0f} reports from {figures['nodes']:,.0f} nodes over HTTP, {IN_FLIGHT} in flight"
    )
    print(f"  ingest (authenticate, check, keep):  {figures['ingest_reports_per_s']:>9,.0f} reports/s")
    print(f"  baseline: signature checks alone:    {figures['verify_only_reports_per_s']:>9,.0f} reports/s")
    print(
        f"  baseline: storing unsigned:          {figures['store_unsigned_reports_per_s']:>9,.0f} reports/s"
    )
    print(f"  ingest time / signature checks alone: {figures['ratio_ingest_to_verify_only']:.2f}")
    print(f"  ingest time / storing unsigned:       {figures['ratio_ingest_to_store_unsigned']:.2f}")
    print(f"  national totals over {figures['nodes']:,.0f} nodes: {figures['summary_ms']:.0f} ms")
    if getattr(args, "json", False):
        emit_json("supervision", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
