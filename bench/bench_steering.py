"""Steering benchmark: what the node's `/svc/{name}/` entry adds to calling a replica directly.

A real `cpnode run` process with a `local` pool and one service of one echo replica
(configs/tasks/echo_replica.py, a standard-library HTTP server). In the same run, alternating
blocks of requests go (a) straight to the replica's endpoint (the baseline) and (b) through the
node's steering entry, each over one kept-alive connection:

1. latency: B blocks of N sequential GETs each way; printed: p50 and p99 of each, the added p50 and
   p99 (proxy − direct; issue 14 targets a p50 overhead ≤ 1 ms on loopback) and their ratio;
2. throughput: C concurrent clients for S seconds each way; requests/s of each and their ratio.

Run: .venv/bin/python -m bench steering [--json] [--blocks B] [--requests N] [--clients C] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.report import bench_parser, emit_json, percentile
from node.config import load_settings
from node.launcher import NodeProcess
from node.resources import config_file
from node.runfile import read_admin_token
from tests.support.nodes import make_node_dir


def _node(tmp: Path) -> tuple[Path, NodeProcess]:
    """A node with one local pool and quick service health rounds, started."""
    config = make_node_dir(tmp, "bench", operator="bench", region="bench")
    with config.open("a", encoding="utf-8") as handle:
        handle.write(
            '\n[services]\nhealth_interval_s = 0.5\n\n[[pools]]\nname = "cpu"\nplugin = "local"\nsite = "beijing"\n'
            'options = { root = "pools/cpu", slots = 2, price_minor_per_slot_hour = 3600 }\n'
        )
    process = NodeProcess(config)
    process.start()
    return config, process


async def _serving(http: aiohttp.ClientSession, timeout_s: float = 120) -> str:
    """Wait for the service's replica to be healthy; its endpoint."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with http.get("/api/v1/services/bench") as response:
            service: dict[str, Any] = await response.json()
        healthy = [r for r in service["replica_list"] if r.get("healthy")]
        if healthy:
            return str(healthy[0]["endpoint"])
        if time.monotonic() > deadline:
            raise TimeoutError(f"no healthy replica: {service['replica_list']}")
        await asyncio.sleep(0.1)


async def _block(session: aiohttp.ClientSession, url: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        async with session.get(url) as response:
            await response.read()
            assert response.status == 200, response.status
        times.append((time.perf_counter() - started) * 1000)
    return times


async def latency(
    direct_url: str, proxy_url: str, floor_url: str, blocks: int, requests: int
) -> dict[str, float]:
    """Part 1: sequential requests, alternating blocks direct, through the proxy, and to the node's
    own `/healthz` (what any request to the node costs, for reference)."""
    direct: list[float] = []
    proxied: list[float] = []
    floor: list[float] = []
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        await _block(session, direct_url, 20)  # warm both connections up
        await _block(session, proxy_url, 20)
        for _ in range(blocks):
            direct += await _block(session, direct_url, requests)
            proxied += await _block(session, proxy_url, requests)
            floor += await _block(session, floor_url, requests)
    f50 = percentile(floor, 0.5)
    d50, d99 = percentile(direct, 0.5), percentile(direct, 0.99)
    p50, p99 = percentile(proxied, 0.5), percentile(proxied, 0.99)
    print(
        f"latency over {len(direct)} requests each: direct p50 {d50:.3f} ms (p99 {d99:.3f}); "
        f"through /svc p50 {p50:.3f} ms (p99 {p99:.3f}); added p50 {p50 - d50:.3f} ms "
        f"(target ≤ 1 ms), p99 {p99 - d99:.3f} ms; ratio p50 {p50 / d50:.2f}×; "
        f"the node's own /healthz p50 {f50:.3f} ms"
    )
    return {
        "direct_p50_ms": round(d50, 3),
        "direct_p99_ms": round(d99, 3),
        "proxy_p50_ms": round(p50, 3),
        "proxy_p99_ms": round(p99, 3),
        "added_p50_ms": round(p50 - d50, 3),
        "added_p99_ms": round(p99 - d99, 3),
        "ratio_p50": round(p50 / d50, 2),
        "node_healthz_p50_ms": round(f50, 3),
    }


async def _rate(url: str, clients: int, seconds: float) -> float:
    done = 0
    end = time.monotonic() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.monotonic() < end:
            async with session.get(url) as response:
                await response.read()
                assert response.status == 200, response.status
            done += 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        started = time.monotonic()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        return done / (time.monotonic() - started)


async def throughput(direct_url: str, proxy_url: str, clients: int, seconds: float) -> dict[str, float]:
    """Part 2: concurrent clients, direct then through the proxy."""
    direct = await _rate(direct_url, clients, seconds)
    proxied = await _rate(proxy_url, clients, seconds)
    print(
        f"{clients} clients for {seconds:g} s: direct {direct:.0f} requests/s, through /svc {proxied:.0f} "
        f"requests/s; ratio {proxied / direct:.2f}×"
    )
    return {"direct_rps": round(direct), "proxy_rps": round(proxied), "ratio": round(proxied / direct, 2)}


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    parser = bench_parser("Steering: the /svc entry against calling the replica directly.")
    parser.add_argument("--blocks", type=int, default=10, help="alternating blocks of part 1")
    parser.add_argument("--requests", type=int, default=200, help="requests per block")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients of part 2")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long each side of part 2 runs")
    return parser


async def main(argv: list[str] | None = None) -> int:
    """Start the node and the service, run both parts, print their figures."""
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-steering-") as temporary:
        config, process = _node(Path(temporary))
        try:
            token = read_admin_token(load_settings(config, environ={}))
            headers = {"Authorization": f"Bearer {token}"}
            spec = {
                "program": {"command": [sys.executable, str(config_file("tasks", "echo_replica.py"))]},
                "resources": {"units": 1, "hours": 1, "chip_model": "cpu"},
            }
            async with aiohttp.ClientSession(process.url, headers=headers) as http:
                await http.post("/api/v1/consumers", json={"id": "alice"})
                await http.post("/api/v1/consumers/alice/deposits", json={"amount": 10**9})
                body = {"name": "bench", "spec": spec, "replicas": 1, "consumer": "alice"}
                async with http.post("/api/v1/services", json=body) as response:
                    assert response.status == 201, await response.text()
                endpoint = await _serving(http)
            direct_url, proxy_url = f"{endpoint}/who", f"{process.url}/svc/bench/who"
            figures = {
                "latency": await latency(
                    direct_url, proxy_url, f"{process.url}/healthz", args.blocks, args.requests
                ),
                "throughput": await throughput(direct_url, proxy_url, args.clients, args.seconds),
            }
        finally:
            process.stop()
    if args.json:
        emit_json("steering", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
