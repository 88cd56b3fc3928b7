"""Connectors benchmarks, each against a baseline measured in the same run.

1. One node's plugin host with 200 simulated pools (cloudsim alpha adapters, one simulator process
   with 50 ms injected latency per API call): wall time to refresh every data source, concurrent
   and bounded, as a ratio to the slowest single data-source call (the baseline). Printed for the
   default bound (32) and for an unbounded refresh (200). Target at the default bound: ≤ 7×
   (200 pools in ⌈200/32⌉ = 7 waves).
2. Heartbeat handling for 500 registered remote plugins on a real node (HTTP, admin-registered,
   pointing at one plugin service): CPU per heartbeat request, as a ratio to a `/healthz` request
   measured the same way (baseline), and CPU per heartbeat inside the host alone.

Run: .venv/bin/python -m bench connectors
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from io import StringIO
from pathlib import Path

import aiohttp
import tomli_w

from connectors.host import HostSettings, PluginHost
from connectors.pools.local import LocalPool
from connectors.remote.server import plugin_app
from connectors.serving import start_app
from node.cli.main import main as cpnode
from node.config import load_settings
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


async def bench_refresh(url: str) -> None:
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
        await host.close()


async def bench_heartbeats(tmp: Path) -> None:
    """CPU per heartbeat for 500 remote plugins on a real node, vs /healthz."""
    with contextlib.redirect_stdout(StringIO()):
        cpnode(
            [
                "init",
                str(tmp / "node"),
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
    config = tmp / "node" / "node.toml"
    with config.open("a", encoding="utf-8") as handle:
        handle.write("\n[connectors]\nheartbeat_interval_s = 600\nrefresh_interval_s = 3600\n")
    server = NodeServer(load_settings(config, environ={}))
    await server.start()
    pool = LocalPool("shared", tmp / "pool", slots=1)
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
            f"heartbeats, {PLUGINS} plugins × {ROUNDS} rounds over HTTP: {heartbeat_us:.0f} µs CPU per heartbeat "
            f"(client and node in one process), /healthz baseline {healthz_us:.0f} µs, ratio {heartbeat_us / healthz_us:.2f}"
        )
    finally:
        await runner.cleanup()
        await pool.close()
        await server.stop()


async def bench_host_heartbeat() -> None:
    """CPU per heartbeat inside the plugin host alone (no HTTP)."""
    from connectors.host import HostedPlugin, _digest

    host = PluginHost()
    tokens = {}
    for index in range(PLUGINS):
        name = f"rp-{index}"
        tokens[name] = secrets.token_urlsafe(24)
        host._plugins[name] = HostedPlugin(
            name=name,
            kind="compute",
            source="remote",
            target="http://127.0.0.1:9",
            options={},
            version="1",
            plugin=LocalPool(name, Path(tempfile.gettempdir())),
            state="online",
            heartbeat_digest=_digest(tokens[name]),
        )
    started = time.process_time()
    for _ in range(ROUNDS * 10):
        for name, token in tokens.items():
            await host.heartbeat(name, token)
    per_us = (time.process_time() - started) / (ROUNDS * 10 * PLUGINS) * 1e6
    print(f"heartbeats inside the host, {PLUGINS} plugins: {per_us:.1f} µs CPU per heartbeat")


async def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-connectors-"))
    proc, url = start_cloudsim(tmp)
    try:
        await bench_refresh(url)
        await bench_heartbeats(tmp)
        await bench_host_heartbeat()
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
