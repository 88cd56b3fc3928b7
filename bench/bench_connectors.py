"""Connectors benchmarks, each against a baseline measured in the same run.

1. One node's plugin host with 200 simulated pools (cloudsim alpha adapters, one simulator process
   with 50 ms injected latency per API call): wall time to refresh every data source, concurrent
   and bounded, as a ratio to the slowest single data-source call (the baseline). Printed for the
   default bound (32) and for an unbounded refresh (200). Target at the default bound: ≤ 7×
   (200 pools in ⌈200/32⌉ = 7 waves).
2. Heartbeat handling for 500 registered remote plugins on a real node (HTTP, admin-registered,
   pointing at one plugin service): CPU per heartbeat request, as a ratio to a `/healthz` request
   measured the same way (baseline). Each heartbeat is one UPDATE of the stored last-seen time, so
   that every replica of the connectors role sees it; SQLite, and PostgreSQL when a URL is given.
3. Heartbeats inside the plugin host alone (no HTTP): stored (one UPDATE each, SQLite and
   PostgreSQL) against kept in process memory (how one process did it before replicas shared the
   database), CPU and wall time per heartbeat; and what a replica's health round costs when
   nothing changed (sync with the database and heartbeat ages of 500 plugins).

Run: .venv/bin/python -m bench connectors   (PostgreSQL: CPNODE_BENCH_POSTGRES_URL=postgresql+psycopg://...)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from io import StringIO
from pathlib import Path
from typing import Any

import aiohttp
import tomli_w

from bench.bench_ledger import postgres_schema
from bench.report import bench_parser, emit_json
from connectors.host import HostSettings, PluginHost
from connectors.hosted import hosted_from_row, token_digest
from connectors.pools.local import LocalPool
from connectors.remote.server import plugin_app
from connectors.serving import start_app
from connectors.store import PluginRow, PluginStore
from node.cli.main import main as cpnode
from node.config import load_settings
from node.db import make_engine, upgrade
from node.service import NodeServer, read_admin_token

ROOT = Path(__file__).resolve().parents[1]
POOLS = 200
PLUGINS = 500
ROUNDS = 10
LATENCY_MS = 50


def start_cloudsim(tmp: Path) -> tuple[subprocess.Popen[str], str]:
    """A cloudsim (alpha) process with injected latency; returns it and its URL."""
    data = tomllib.loads((ROOT / "configs" / "cloudsim" / "alpha.toml").read_text(encoding="utf-8"))
    data["faults"]["latency_ms"] = LATENCY_MS
    inventory = tmp / "alpha.toml"
    inventory.write_text(tomli_w.dumps(data), encoding="utf-8")
    (tmp / "storage").mkdir()
    argv = [
        str(Path(sys.executable).parent / "cpnode-cloudsim"),
        "--inventory",
        str(inventory),
        "--storage-dir",
        str(tmp / "storage"),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.strip().rsplit(" ", 1)[-1]


async def bench_refresh(url: str, figures: dict[str, Any]) -> None:
    """Refresh 200 pools' data sources at two concurrency bounds."""
    for bound in (32, POOLS):
        host = PluginHost(settings=HostSettings(call_timeout_s=60, refresh_concurrency=bound))
        options = {"url": url, "access_key": "AK-alpha-demo", "secret_key": "alpha-demo-secret"}
        await asyncio.gather(
            *(host.add_entry_point(f"pool-{i}", "cloudsim-alpha", options) for i in range(POOLS))
        )
        await host.refresh()  # warm: tokens issued, connections open
        report = await host.refresh()
        ok = sum(1 for good, _ms, _err in report.results.values() if good)
        ratio = report.wall_ms / report.slowest_ms
        print(
            f"refresh {POOLS} pools, bound {bound:3d}: wall {report.wall_ms:7.0f} ms, slowest single call "
            f"{report.slowest_ms} ms (each call = 5 paged API requests × {LATENCY_MS} ms injected), "
            f"ratio {ratio:.2f}, {ok}/{POOLS} ok"
        )
        figures[f"refresh_bound_{bound}"] = {
            "wall_ms": round(report.wall_ms),
            "slowest_ms": report.slowest_ms,
            "ratio": round(ratio, 2),
            "ok": ok,
        }
        await host.close()


async def bench_heartbeats(tmp: Path, db_url: str | None, label: str, figures: dict[str, Any]) -> None:
    """CPU per heartbeat for 500 remote plugins on a real node, vs /healthz."""
    folder = tmp / f"node-{label}"
    args = ["init", str(folder), "--name", "bench", "--operator", "Bench", "--region", "Local", "--port", "0"]
    with contextlib.redirect_stdout(StringIO()):
        cpnode([*args, *(["--db", db_url] if db_url else [])])
    config = folder / "node.toml"
    with config.open("a", encoding="utf-8") as handle:
        handle.write("\n[connectors]\nheartbeat_interval_s = 600\nrefresh_interval_s = 3600\n")
    server = NodeServer(load_settings(config, environ={}))
    await server.start()
    pool = LocalPool("shared", tmp / f"pool-{label}", slots=1)
    await pool.start()
    call_token = secrets.token_urlsafe(24)
    runner, plugin_url = await start_app(plugin_app(pool, call_token))
    admin = {"Authorization": f"Bearer {read_admin_token(server.settings)}"}
    tokens: dict[str, str] = {}
    try:
        async with aiohttp.ClientSession() as session:
            for index in range(PLUGINS):
                body = {"name": f"rp-{index}", "url": plugin_url, "call_token": call_token}
                async with session.post(f"{server.url}/api/v1/plugins", json=body, headers=admin) as response:
                    tokens[body["name"]] = (await response.json())["heartbeat_token"]

            async def measure(path: str, headers_for: dict[str, dict[str, str]], method: str) -> float:
                started = time.process_time()
                for _ in range(ROUNDS):
                    for name, headers in headers_for.items():
                        async with session.request(
                            method, f"{server.url}{path.format(name=name)}", headers=headers
                        ) as r:
                            await r.read()
                            assert r.status == 200, r.status
                return (time.process_time() - started) / (ROUNDS * len(headers_for)) * 1e6

            beats = {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}
            heartbeat_us = await measure("/api/v1/plugins/{name}/heartbeat", beats, "POST")
            healthz_us = await measure("/healthz", {name: {} for name in tokens}, "GET")
        print(
            f"heartbeats, {PLUGINS} plugins × {ROUNDS} rounds over HTTP, {label}: {heartbeat_us:.0f} µs CPU per "
            f"heartbeat (client and node in one process), /healthz baseline {healthz_us:.0f} µs, "
            f"ratio {heartbeat_us / healthz_us:.2f}"
        )
        figures[f"http_heartbeat_{label.lower()}"] = {
            "heartbeat_cpu_us": round(heartbeat_us),
            "healthz_cpu_us": round(healthz_us),
            "ratio": round(heartbeat_us / healthz_us, 2),
        }
    finally:
        await runner.cleanup()
        await pool.close()
        await server.stop()


def remote_row(name: str, token: str) -> PluginRow:
    """A registered remote plugin as stored."""
    return PluginRow(
        name=name,
        kind="compute",
        source="remote",
        target="http://127.0.0.1:9",
        options={},
        version="1",
        state="online",
        call_token="call",
        heartbeat_token_sha256=token_digest(token),
        registered_ms=1,
        state_changed_ms=1,
        last_seen_ms=1,
        last_error="",
        generation=secrets.token_hex(8),
    )


async def beat_all(host: PluginHost, tokens: dict[str, str], rounds: int) -> tuple[float, float]:
    """CPU and wall µs per heartbeat over `rounds` rounds of every plugin."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        for name, token in tokens.items():
            await host.heartbeat(name, token)
    count = rounds * len(tokens)
    return (time.process_time() - cpu) / count * 1e6, (time.perf_counter() - wall) / count * 1e6


async def bench_host_heartbeat(tmp: Path, postgres_url: str | None, figures: dict[str, Any]) -> None:
    """CPU per heartbeat inside the plugin host alone: stored (one UPDATE) vs kept in memory."""
    tokens = {f"rp-{index}": secrets.token_urlsafe(24) for index in range(PLUGINS)}
    memory = PluginHost()
    for name, token in tokens.items():
        memory._plugins[name] = hosted_from_row(remote_row(name, token))
    memory_cpu, _wall = await beat_all(memory, tokens, ROUNDS * 10)
    print(
        f"heartbeats inside the host, {PLUGINS} plugins, kept in memory: {memory_cpu:.1f} µs CPU per heartbeat"
    )
    figures["host_heartbeat_memory_cpu_us"] = round(memory_cpu, 1)
    urls = {"SQLite": f"sqlite:///{tmp / 'heartbeats.db'}"}
    with contextlib.ExitStack() as stack:
        if postgres_url:
            urls["PostgreSQL"] = stack.enter_context(postgres_schema(postgres_url))
        for label, url in urls.items():
            engine = make_engine(url)
            upgrade(engine)
            store = PluginStore(engine)
            for name, token in tokens.items():
                store.save(remote_row(name, token))
            stored = PluginHost(store)
            cpu, wall = await beat_all(stored, tokens, ROUNDS)
            print(
                f"heartbeats inside the host, {PLUGINS} plugins, stored ({label}, one UPDATE each): "
                f"{cpu:.0f} µs CPU, {wall:.0f} µs wall per heartbeat; ratio to memory {cpu / memory_cpu:.0f}× CPU"
            )
            figures[f"host_heartbeat_{label.lower()}"] = {
                "cpu_us": round(cpu),
                "wall_us": round(wall),
                "ratio_to_memory": round(cpu / memory_cpu, 1),
            }
            await stored.sync()  # the first round loads every plugin here
            started, began = time.process_time(), time.perf_counter()
            for _ in range(ROUNDS):
                await stored.sync()
                await stored.check_heartbeats()
            print(
                f"health round of a replica that changes nothing ({label}, {PLUGINS} plugins: sync + heartbeat "
                f"ages): {(time.process_time() - started) / ROUNDS * 1000:.1f} ms CPU, "
                f"{(time.perf_counter() - began) / ROUNDS * 1000:.1f} ms wall"
            )
            await stored.close()
            engine.dispose()


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    return bench_parser("Connectors: refresh of 200 simulated pools; heartbeats of 500 plugins.")


async def main(argv: list[str] | None = None) -> int:
    """Run every measurement; with --json end with their figures as one JSON line."""
    args = build_parser().parse_args(argv)
    figures: dict[str, Any] = {}
    postgres_url = os.environ.get("CPNODE_BENCH_POSTGRES_URL") or os.environ.get("CPNODE_TEST_POSTGRES_URL")
    tmp = Path(tempfile.mkdtemp(prefix="bench-connectors-"))
    proc, url = start_cloudsim(tmp)
    try:
        await bench_refresh(url, figures)
        await bench_heartbeats(tmp, None, "SQLite", figures)
        if postgres_url:
            with postgres_schema(postgres_url) as schema_url:
                await bench_heartbeats(tmp, schema_url, "PostgreSQL", figures)
        else:
            print("PostgreSQL skipped: set CPNODE_BENCH_POSTGRES_URL=postgresql+psycopg://USER@HOST/DB")
        await bench_host_heartbeat(tmp, postgres_url, figures)
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        emit_json("connectors", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
