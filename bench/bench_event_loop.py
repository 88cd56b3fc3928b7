"""`cpnode run` on uvloop against the standard asyncio loop (`http.event_loop`), in the same run.

For each loop in turn, round after round (asyncio, uvloop, asyncio, ...), a fresh node process is
started on a folder made as `tests.support.nodes.make_node_dir` makes them, and a client in this
process sends it requests with `--in-flight` in flight over keep-alive connections on loopback:
`GET /healthz` (HTTP and the middleware chain only) and `GET /api/v1/orders?limit=1` with the admin
token (authentication, a trip to a database thread, a JSON answer). Reported per loop and route:
requests per second and the node's CPU per request (user + system, /proc), medians over the rounds,
and uvloop's ratio to asyncio for each. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.bench_cli import process_cpu_s
from bench.report import bench_parser, emit_json
from node.config import load_settings
from node.launcher import NodeProcess
from node.runfile import read_admin_token
from tests.support.nodes import make_node_dir

LOOPS = ("asyncio", "uvloop")
ROUTES = {"healthz": "/healthz", "orders": "/api/v1/orders?limit=1"}
CHECKOUT = Path(__file__).resolve().parents[1]
WARM_UP = 200  # requests before each measurement: connections opened, code paths warm


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    parser = bench_parser("cpnode run on uvloop against the standard asyncio loop, alternated.")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each loop (alternating)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per route and round")
    parser.add_argument("--in-flight", type=int, default=32, help="requests in flight")
    return parser


async def _rate(http: aiohttp.ClientSession, path: str, count: int, in_flight: int) -> float:
    """Requests per second for `count` GETs of `path` with `in_flight` in flight (each must be 200)."""
    gate = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with gate, http.get(path) as response:
            await response.read()
            assert response.status == 200, response.status

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (time.perf_counter() - started)


async def one_round(folder: Path, loop: str, requests: int, in_flight: int) -> dict[str, dict[str, float]]:
    """Start a node on `loop` in `folder`, measure each route, stop it: per route, its requests per
    second and the node's CPU microseconds per request."""
    config = make_node_dir(folder, "alpha")
    node = NodeProcess(config, env={"CPNODE_HTTP_EVENT_LOOP": loop, "PYTHONPATH": str(CHECKOUT)})
    url = await asyncio.to_thread(node.start)
    try:
        assert node.proc is not None
        token = read_admin_token(load_settings(config, environ={}))
        headers = {"Authorization": f"Bearer {token}"}
        figures: dict[str, dict[str, float]] = {}
        async with aiohttp.ClientSession(url, headers=headers) as http:
            for route, path in ROUTES.items():
                await _rate(http, path, WARM_UP, in_flight)
                cpu = process_cpu_s(node.proc.pid)
                rate = await _rate(http, path, requests, in_flight)
                used = process_cpu_s(node.proc.pid) - cpu
                figures[route] = {"requests_per_s": rate, "cpu_us_per_request": 1e6 * used / requests}
        return figures
    finally:
        await asyncio.to_thread(node.stop)


async def run(rounds: int, requests: int, in_flight: int) -> dict[str, Any]:
    """Alternating rounds of each loop; medians per loop and route, and uvloop's ratios to asyncio."""
    seen: dict[str, dict[str, list[dict[str, float]]]] = {loop: {r: [] for r in ROUTES} for loop in LOOPS}
    with tempfile.TemporaryDirectory(prefix="cpnode-bench-loop-") as tmp:
        for index in range(rounds):
            for loop in LOOPS if index % 2 == 0 else LOOPS[::-1]:
                figures = await one_round(Path(tmp) / f"{loop}-{index}", loop, requests, in_flight)
                for route, values in figures.items():
                    seen[loop][route].append(values)
                print(
                    loop, json.dumps({r: {k: round(v, 1) for k, v in f.items()} for r, f in figures.items()})
                )
    out: dict[str, Any] = {"rounds": rounds, "requests": requests, "in_flight": in_flight}
    for route in ROUTES:
        medians = {
            loop: {
                key: round(statistics.median(v[key] for v in seen[loop][route]), 1)
                for key in ("requests_per_s", "cpu_us_per_request")
            }
            for loop in LOOPS
        }
        out[route] = {
            **medians,
            "rate_ratio": round(
                medians["uvloop"]["requests_per_s"] / medians["asyncio"]["requests_per_s"], 3
            ),
            "cpu_ratio": round(
                medians["uvloop"]["cpu_us_per_request"] / medians["asyncio"]["cpu_us_per_request"], 3
            ),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    args = build_parser().parse_args(argv)
    figures = asyncio.run(run(args.rounds, args.requests, args.in_flight))
    for route in ROUTES:
        print(f"{route:8s}", json.dumps(figures[route]), flush=True)
    if args.json:
        emit_json("event-loop", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
