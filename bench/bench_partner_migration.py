"""Migration to a partner's pool: a running task (the local pool's counter with 64 MiB of state)
moved from node `a`'s pool to partner `b`'s pool, against the same task moved between two pools of
`a` in the same run (the baseline), with two real node processes and the data express.

- cross-node: `POST /api/v1/migrations {"task_id", "to_node": "b"}`: the order, the partner's
  prepare, the credential, the express writing into `b`'s pool storage, start, cutover;
- baseline: `{"task_id", "to_pool": "spare"}`: the same steps within `a`, no order, no peer calls.
- downtime (source stopped → destination running) and total (request → completed), medians of
  alternating rounds, and their ratios cross-node / baseline;
- both node processes' TCP bytes during the cross-node migrations (`ss`, as tests/migration
  measure it) against the state bytes moved: the nodes carry JSON, never state. The pools run
  outside the nodes (served by this process as `cpnode gateway` serves them), so their storage
  endpoints' bytes are not the nodes'.

Run: .venv/bin/python -m bench partner-migration [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import bench_parser, emit_json
from connectors.pools.local import LocalPool
from connectors.remote.server import PluginService
from node.config import load_settings
from node.runfile import read_admin_token
from tests.migration.partners import (
    counter_task,
    pair_up,
    resting,
    start_partners,
    submit_running,
    wait_migration,
)
from tests.migration.sockets import SocketMeter
from tests.support.express import ExpressProcess
from tests.support.tasks import PRICE
from tests.tasks.processes import ProcNode, stop_all

STATE_BYTES = 64 << 20


async def one(a: ProcNode, b: ProcNode, to: dict[str, str]) -> dict[str, float]:
    """Move a fresh task as `to` says; its downtime, total time and both nodes' TCP bytes."""
    task = await asyncio.to_thread(submit_running, a, counter_task(STATE_BYTES))
    assert a.process.proc is not None
    assert b.process.proc is not None
    meter = SocketMeter({"a": a.process.proc.pid, "b": b.process.proc.pid})
    await meter.start()
    started = time.monotonic()
    status, migration = await asyncio.to_thread(
        a.api, "POST", "/api/v1/migrations", {"task_id": task["id"], **to}
    )
    assert status == 201, migration
    done = await asyncio.to_thread(wait_migration, a, migration["id"], resting, 300)
    total_s = time.monotonic() - started
    moved = await meter.stop()
    assert done["state"] == "completed", done
    await asyncio.to_thread(a.api, "POST", f"/api/v1/tasks/{task['id']}/stop")
    await asyncio.to_thread(a.released, task["id"], 120)
    return {
        "downtime_s": done["downtime_ms"] / 1000,
        "total_s": total_s,
        "state_bytes": done["state_bytes"],
        "a_tcp_bytes": moved["a"],
        "b_tcp_bytes": moved["b"],
    }


async def serve_pools(base: Path, a: ProcNode, b: ProcNode) -> list[PluginService]:
    """`a`'s pools `cpu` and `spare` (twice the price) and `b`'s pool `cpu` (twice the price) as
    out-of-process plugins served by this process (as `cpnode gateway` serves them), registered with
    their nodes: their storage endpoints are not in the node processes, whose bytes are measured."""
    services = []
    for node, pool in (
        (a, LocalPool("cpu", base / "pool-a-cpu", slots=2, price_minor_per_slot_hour=PRICE)),
        (a, LocalPool("spare", base / "pool-a-spare", slots=2, price_minor_per_slot_hour=2 * PRICE)),
        (b, LocalPool("cpu", base / "pool-b-cpu", slots=2, price_minor_per_slot_hour=2 * PRICE)),
    ):
        token = read_admin_token(load_settings(node.config, environ={}))
        service = PluginService(pool, node.url, token)
        await service.start(register_first=True)
        services.append(service)
    for node, names in ((a, {"cpu", "spare"}), (b, {"cpu"})):
        deadline = time.monotonic() + 60
        while True:
            _status, plugins = await asyncio.to_thread(node.api, "GET", "/api/v1/plugins")
            if {p["name"] for p in plugins["plugins"] if p["state"] == "online"} >= names:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.name}'s pools did not come online: {plugins}")
            await asyncio.sleep(0.2)
    return services


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    parser = bench_parser("A task migrated to a partner's pool, against the same move within one node.")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each, alternating (default 3)")
    return parser


async def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the figures; with --json end with them as one JSON line."""
    args = build_parser().parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="bench-partner-migration-"))
    express = ExpressProcess(base / "express")
    kinds = {"within": {"to_pool": "spare"}, "partner": {"to_node": "b"}}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in kinds}
    nodes: tuple[ProcNode, ...] = ()
    services: list[PluginService] = []
    try:
        express.start()
        nodes = a, b = await asyncio.to_thread(start_partners, base, express, "", "", None, chunk_mib=4)
        services = await serve_pools(base, a, b)
        await asyncio.to_thread(pair_up, a, b)
        for to in kinds.values():  # warm-up of each
            await one(a, b, to)
        for round_ in range(args.rounds):
            for name, to in kinds.items():
                result = await one(a, b, to)
                runs[name].append(result)
                print(f"round {round_ + 1} {name}: {result}", flush=True)
    finally:
        for service in services:
            await service.close()
        stop_all(*nodes)
        express.stop()
        shutil.rmtree(base, ignore_errors=True)
    figures: dict[str, Any] = {"state_mib": STATE_BYTES >> 20}
    for name, results in runs.items():
        for what in ("downtime_s", "total_s"):
            figures[f"{name}_{what}"] = round(statistics.median(r[what] for r in results), 3)
    figures["downtime_ratio"] = round(figures["partner_downtime_s"] / figures["within_downtime_s"], 2)
    figures["total_ratio"] = round(figures["partner_total_s"] / figures["within_total_s"], 2)
    for side in ("a", "b"):
        most = max(r[f"{side}_tcp_bytes"] for r in runs["partner"])
        figures[f"{side}_tcp_bytes_max"] = int(most)
        figures[f"{side}_bytes_per_state_byte"] = round(most / runs["partner"][0]["state_bytes"], 5)
    print(
        f"{figures['state_mib']} MiB of state; downtime: to the partner {figures['partner_downtime_s']} s, "
        f"within the node {figures['within_downtime_s']} s (ratio {figures['downtime_ratio']}); total: "
        f"{figures['partner_total_s']} s vs {figures['within_total_s']} s (ratio {figures['total_ratio']}); "
        f"TCP bytes per state byte: node a {figures['a_bytes_per_state_byte']}, node b {figures['b_bytes_per_state_byte']}"
    )
    if args.json:
        emit_json("partner-migration", figures)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
