"""Migration benchmark: the shipped training program (128 MiB of state) moved mid-run between two
local pools by a node process, against the same move done by hand in the same run.

- through the node: `POST /api/v1/migrations` to a `cpnode run` process whose pools run beside it
  (out-of-process plugins served by this process, as `cpnode gateway` runs them) and whose network
  plugin reserves a path on `cpnode-netsim`; every step of figure 6, each stored before it acts.
- baseline: the same steps called directly on the pools and the express, no node, no path, nothing
  stored: create and deploy the destination, checkpoint the source and have its storage build the
  manifest, stop the source, one express job with that manifest, start the destination from the
  state, delete the source.
- downtime: from the source's stop returning to the destination's program starting (the pool's
  `started_ms`); total: from the request to the source deleted. Rounds alternate (baseline, node, ...)
  after a warm-up of each; medians, and their ratio.
- the node process's TCP bytes during its migrations (`ss`, as tests/migration measure it) against
  the state bytes it had moved: the node carries JSON, never state.

Run: .venv/bin/python -m bench migration [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.report import bench_parser, emit_json
from connectors.contract import InstanceSpec, Program
from connectors.express import JobSpec
from connectors.express.endpoints import StorageClient
from connectors.pools.local import LocalPool
from connectors.remote.server import PluginService
from node.config import load_settings
from node.runfile import read_admin_token
from tests.migration.sockets import SocketMeter
from tests.support.express import ExpressProcess
from tests.support.nodes import NodeProcess, make_node_dir
from tests.support.sims import BIN, CONFIGS, SimProcess

MIB = 1 << 20
CHUNK_BYTES = 4 * MIB  # the express's default, and the node's ([migration] chunk_mib)
TASKS = Path(__file__).resolve().parent.parent / "configs" / "tasks"
TRAIN_ARGS = (
    "--steps",
    "100000",
    "--hidden",
    "8192",
    "--features",
    "2048",
    "--samples",
    "256",
    "--batch",
    "8",
)
STEPS = (
    "planned",
    "path_provisioning",
    "destination_deploying",
    "source_quiescing",
    "transferring",
    "verifying",
    "cutover",
)
SPEC = InstanceSpec(name="train", region_id="local", flavor_id="local-1")
PROGRAM = Program(
    command=[sys.executable, str(TASKS / "train_numpy.py"), *TRAIN_ARGS],
    env={"OPENBLAS_NUM_THREADS": "1", "TRAIN_SEED": "7"},
)


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    parser = bench_parser("Migration of the training program through a node, against the same steps by hand.")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each, alternating (default 3)")
    return parser


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {timeout_s} s")
        await asyncio.sleep(0.02)


def now_ms() -> int:
    """UTC epoch milliseconds (the pools' clock)."""
    return int(time.time() * 1000)


class Setup:
    """The express, the network simulator, the node and the two pools it migrates between."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.express = ExpressProcess(base / "express")
        self.netsim = SimProcess(
            [str(BIN / "cpnode-netsim"), "--config", str(CONFIGS / "network" / "default.toml")]
        )
        self.node: NodeProcess | None = None
        self.pools = (LocalPool("pool-a", base / "a", slots=2), LocalPool("pool-b", base / "b", slots=2))
        self.services: list[PluginService] = []
        self.session: aiohttp.ClientSession | None = None
        self.url = ""
        self.headers: dict[str, str] = {}

    async def start(self) -> None:
        """Start everything; return once the node sees both pools and the network plugin online."""
        await asyncio.to_thread(self.express.start)
        await asyncio.to_thread(self.netsim.start)
        config = make_node_dir(
            self.base,
            "node-a",
            extra_toml=f"""
[connectors]
call_timeout_s = 60

[[pools]]
name = "net"
plugin = "netsim"
options = {{ url = "{self.netsim.url}", token = "netsim-demo-token" }}

[migration]
express_url = "{self.express.url}"
express_token_path = "{self.express.token_file}"
network = "net"
bandwidth_mbps = 10000
sites = {{ pool-a = "beijing", pool-b = "shanghai" }}
checkpoint_timeout_s = 120
poll_interval_s = 0.05
supervise_every_s = 0.2
""",
        )
        self.node = NodeProcess(config)
        self.url = await asyncio.to_thread(self.node.start)
        token = read_admin_token(load_settings(config, environ={}))
        self.headers = {"Authorization": f"Bearer {token}"}
        self.session = aiohttp.ClientSession(headers=self.headers)
        for pool in self.pools:
            service = PluginService(pool, self.url, token)
            await service.start(register_first=True)
            self.services.append(service)

        async def online() -> bool:
            plugins = (await self.call("GET", "/api/v1/plugins"))["plugins"]
            return {p["name"] for p in plugins if p["state"] == "online"} >= {"pool-a", "pool-b", "net"}

        await _until(online, 60)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """One call to the node's API."""
        assert self.session is not None
        async with self.session.request(method, self.url + path, json=body) as response:
            answer = await response.json()
            if response.status >= 300:
                raise RuntimeError(f"{method} {path}: {response.status} {answer}")
            return answer

    async def stop(self) -> None:
        """Stop everything."""
        if self.session is not None:
            await self.session.close()
        if self.node is not None:
            await asyncio.to_thread(self.node.stop)
        for service in self.services:
            await service.close()
        await asyncio.to_thread(self.netsim.stop)
        await asyncio.to_thread(self.express.stop)


async def running_program(setup: Setup) -> str:
    """The training program started on pool A, past its first 50 steps."""
    pool = setup.pools[0]
    source = await pool.create_instance(SPEC)
    await pool.deploy(source.id, PROGRAM)
    await pool.start_instance(source.id)

    async def trained_a_while() -> bool:
        return b"step 50 " in (await pool.logs(source.id, 0, 1 << 20)).data()

    await _until(trained_a_while)
    return source.id


async def by_hand(setup: Setup) -> dict[str, float]:
    """The baseline: the same steps called directly, in figure 6's order, nothing stored."""
    pool_a, pool_b = setup.pools
    source_id = await running_program(setup)
    started = time.monotonic()
    target = await pool_b.create_instance(SPEC)
    await pool_b.deploy(target.id, PROGRAM)
    checkpoint = await pool_a.checkpoint(source_id, timeout_s=120)
    async with aiohttp.ClientSession() as session:  # as the node does: the manifest before the stop
        manifest = await StorageClient(session, checkpoint.storage, "source").manifest(CHUNK_BYTES)
    await pool_a.stop_instance(source_id)
    stopped_ms = now_ms()
    async with setup.express.client() as client:
        destination = await pool_b.storage_endpoint(target.id)
        job = await client.create(
            JobSpec(source=checkpoint.storage, destination=destination, manifest=manifest)
        )
        done = await client.wait(job.id, timeout_s=600)
    assert done.state == "completed", done.error
    await pool_b.start_instance(target.id, restore=True)

    async def running() -> bool:
        return (await pool_b.get_instance(target.id)).state == "running"

    await _until(running)
    begun = (await pool_b.get_instance(target.id)).started_ms
    assert begun is not None
    await pool_a.delete_instance(source_id)
    total_s = time.monotonic() - started
    await pool_b.delete_instance(target.id)
    state = sum(f.size_bytes for f in checkpoint.files)
    return {"downtime_s": (begun - stopped_ms) / 1000, "total_s": total_s, "state_bytes": state}


async def through_node(setup: Setup, meter_pid: int) -> dict[str, float]:
    """One migration through the node; its downtime, total time and the node's TCP bytes."""
    source_id = await running_program(setup)
    meter = SocketMeter({"node": meter_pid})
    await meter.start()
    started = time.monotonic()
    body = {"source_pool": "pool-a", "instance_id": source_id, "to_pool": "pool-b"}
    migration = await setup.call("POST", "/api/v1/migrations", body)
    assert setup.session is not None
    async with setup.session.get(f"{setup.url}/api/v1/migrations/{migration['id']}/events") as stream:
        async for _line in stream.content:  # the stream ends when the migration rests
            pass
    total_s = time.monotonic() - started
    moved = await meter.stop()
    done = await setup.call("GET", f"/api/v1/migrations/{migration['id']}")
    assert done["state"] == "completed", done
    await setup.pools[1].delete_instance(done["destination_instance"])
    at = {line["to"]: line["at_ms"] for line in done["history"] if line["event"] != "note"}
    steps = {
        f"{state}_s": (at[following] - at[state]) / 1000
        for state, following in zip(STEPS, [*STEPS[1:], "completed"], strict=True)
    }
    return {
        **steps,
        "downtime_s": done["downtime_ms"] / 1000,
        "total_s": total_s,
        "state_bytes": done["state_bytes"],
        "node_tcp_bytes": moved["node"],
    }


async def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the figures; with --json end with them as one JSON line."""
    args = build_parser().parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="bench-migration-"))
    setup = Setup(base)
    runs: dict[str, list[dict[str, float]]] = {"by_hand": [], "node": []}
    try:
        await setup.start()
        assert setup.node is not None
        assert setup.node.proc is not None
        pid = setup.node.proc.pid
        await by_hand(setup)  # warm-up rounds: imports, page cache, the pools' first measurements
        await through_node(setup, pid)
        for round_ in range(args.rounds):
            for name in ("by_hand", "node"):
                result = await (by_hand(setup) if name == "by_hand" else through_node(setup, pid))
                runs[name].append(result)
                print(f"round {round_ + 1} {name}: {result}", flush=True)
    finally:
        await setup.stop()
        shutil.rmtree(base, ignore_errors=True)
    figures: dict[str, Any] = {}
    for name, results in runs.items():
        figures[f"{name}_downtime_s"] = round(statistics.median(r["downtime_s"] for r in results), 3)
        figures[f"{name}_total_s"] = round(statistics.median(r["total_s"] for r in results), 3)
    for step in STEPS:
        figures[f"node_{step}_s"] = round(statistics.median(r[f"{step}_s"] for r in runs["node"]), 3)
    figures["state_mib"] = round(runs["node"][0]["state_bytes"] / MIB, 1)
    figures["downtime_ratio"] = round(figures["node_downtime_s"] / figures["by_hand_downtime_s"], 2)
    figures["total_ratio"] = round(figures["node_total_s"] / figures["by_hand_total_s"], 2)
    node_bytes = max(r["node_tcp_bytes"] for r in runs["node"])
    figures["node_tcp_bytes_max"] = int(node_bytes)
    figures["node_bytes_per_state_byte"] = round(node_bytes / runs["node"][0]["state_bytes"], 5)
    print(
        f"training state {figures['state_mib']} MiB; downtime: node {figures['node_downtime_s']} s, by hand "
        f"{figures['by_hand_downtime_s']} s (ratio {figures['downtime_ratio']}); total: node "
        f"{figures['node_total_s']} s, by hand {figures['by_hand_total_s']} s (ratio {figures['total_ratio']}); "
        f"node TCP bytes per migration ≤ {node_bytes} ({figures['node_bytes_per_state_byte']} per state byte)"
    )
    if args.json:
        emit_json("migration", figures)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
