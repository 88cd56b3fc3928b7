"""National scale: a hundred nodes federating on this machine, each a light node (the real peer API
and catalog sync over its own SQLite file; `bench/national_node.py`) in worker processes.

1. Partial mesh: N nodes, each partnered with D others (a random D-regular graph). Per node and
   sync round: CPU (both ends of every poll: signing, verifying, replay check, session, head,
   catalog), bytes on the wire, memory; in a steady round and in one where every node changed a
   price. Then every node syncs on its own timer (interval I, random phase) and a price changes at
   a random node: the time until every partner holds the new catalog, in intervals (target ≤ 2).
2. Growth with the number of partners: a hub node in this process with P partners (P from 10 to
   N): its own CPU per round (polling P partners and answering their P polls), bytes, memory; the
   exponent of a power-law fit for each, and the share of one core at the default interval (60 s;
   target < 10 % with 100 partners).
3. The star: the hub becomes an aggregator relaying every partner's catalog to every other one
   (`federation.relay`), each issuer's signature intact and checked by every receiver. Per round
   CPU and bytes of the aggregator, steady and with one issuer's price changed; the time until a
   price change reaches every other partner through the aggregator (target ≤ 2 intervals).

Baselines in the same run: the interval (convergence is given in intervals) and one core (CPU per
round at the default interval). Run: .venv/bin/python -m bench national [--json] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.national_cluster import Cluster, random_regular_graph
from bench.national_node import LightNode, migrated_template
from bench.report import bench_parser, emit_json
from federation.partners import Agreement
from federation.sync import run_round

DEFAULT_INTERVAL_S = 60.0


def fit_exponent(xs: list[float], ys: list[float]) -> float:
    """Slope of log(y) over log(x) by least squares: y ∝ x^slope."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.mean(lx), statistics.mean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum((a - mx) ** 2 for a in lx)


def cpu_s() -> float:
    """CPU seconds of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_kib() -> int:
    """Resident memory of this process now."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() // 1024


async def measured_rounds(cluster: Cluster, rounds: int, change: bool) -> dict[str, float]:
    """CPU and bytes per node per round over `rounds` rounds of every node (prices changed first if `change`)."""
    before = await cluster.stats()
    for _ in range(rounds):
        if change:
            await cluster.broadcast("price")
        outcomes = await cluster.round()
        assert set(outcomes) <= {"ok", "unchanged"}, outcomes
    after = await cluster.stats()
    count = len(cluster.nodes) * rounds
    served = sum(after["served_bytes"].values()) - sum(before["served_bytes"].values())
    return {"cpu_ms": (after["cpu_s"] - before["cpu_s"]) / count * 1000, "bytes": served / count}


async def convergence(
    cluster: Cluster, trials: int, seed: int, audience: dict[str, list[str]], via: str | None = None
) -> list[float]:
    """Change a price at a random issuer `trials` times; for each, seconds until every node in its
    audience holds a newer catalog of it (directly, or relayed by `via`). Loops must be running."""
    rng = random.Random(seed)
    worst = []
    for _ in range(trials):
        issuer = rng.choice(sorted(audience))
        holders = audience[issuer]
        held = {h: await cluster.version_held(h, issuer, via) for h in holders}
        await cluster.worker_of(issuer).call("price", nodes=[issuer])
        seen = await cluster.wait_versions(holders, issuer, held, via, timeout_s=4 * cluster.interval_s)
        worst.append(max(seen.values()) if len(seen) == len(holders) else math.inf)
    return worst


async def bench_mesh(cluster: Cluster, degree: int, rounds: int, trials: int) -> dict[str, Any]:
    """Scenario 1."""
    names = sorted(cluster.nodes)
    edges = random_regular_graph(len(names), degree, seed=7)
    for a, b in edges:
        await cluster.link(names[a], names[b])
    audience: dict[str, list[str]] = {name: [] for name in names}
    for a, b in edges:
        audience[names[a]].append(names[b])
        audience[names[b]].append(names[a])
    await cluster.round()  # logins and first catalogs
    await cluster.round()
    stats = await cluster.stats()
    steady = await measured_rounds(cluster, rounds, change=False)
    changed = await measured_rounds(cluster, rounds, change=True)
    await cluster.broadcast("loops", run=True, interval_s=cluster.interval_s, seed=1)
    await asyncio.sleep(cluster.interval_s * 1.5)
    times = await convergence(cluster, trials, seed=3, audience=audience)
    await cluster.broadcast("loops", run=False, interval_s=0, seed=0)
    failures = (await cluster.stats())["failures"]
    per_node_mib = (stats["rss_kib"] - cluster.baseline_rss_kib) / len(names) / 1024
    return {
        "nodes": len(names),
        "degree": degree,
        "steady_cpu_ms_per_node_round": round(steady["cpu_ms"], 2),
        "steady_cpu_ms_per_node_partner_round": round(steady["cpu_ms"] / degree, 3),
        "steady_bytes_per_node_round": round(steady["bytes"]),
        "changed_cpu_ms_per_node_round": round(changed["cpu_ms"], 2),
        "changed_cpu_ms_per_node_partner_round": round(changed["cpu_ms"] / degree, 3),
        "changed_bytes_per_node_round": round(changed["bytes"]),
        "memory_mib_per_node": round(per_node_mib, 2),
        "memory_kib_per_node_partner": round(per_node_mib * 1024 / degree, 1),
        "interval_s": cluster.interval_s,
        "convergence_s": [round(t, 2) for t in times],
        "convergence_intervals_max": round(max(times) / cluster.interval_s, 2),
        "target_intervals": 2,
        "sync_failures": failures,
    }


async def hub_round(hub: LightNode, cluster: Cluster, partners: list[str], change: bool) -> dict[str, float]:
    """One round of the hub: it polls its partners and they poll it; its CPU and the bytes both ways."""
    if change:
        hub.offers.change_price()
        await cluster.broadcast("price")
    before_cpu, before_served = cpu_s(), hub.served_bytes
    before_remote = await cluster.stats()
    results = await run_round(hub.service, force=True)
    assert all(r.outcome in ("ok", "unchanged") for r in results), [
        r for r in results if r.outcome not in ("ok", "unchanged")
    ][:2]
    outcomes = await cluster.round(partners, partner=hub.name)
    assert set(outcomes) <= {"ok", "unchanged"}, outcomes
    after_remote = await cluster.stats()
    remote = sum(after_remote["served_bytes"][n] - before_remote["served_bytes"][n] for n in partners)
    return {"cpu_ms": (cpu_s() - before_cpu) * 1000, "bytes": hub.served_bytes - before_served + remote}


async def link_hub(cluster: Cluster, hub: LightNode, names: list[str]) -> None:
    """Make the hub and each named node partners of each other."""
    for name in names:
        info = cluster.nodes[name]
        hub.pin(name, info.url, info.public_key)
    await cluster.pin([(name, hub.name, hub.url, hub.public_key, {}) for name in names])


async def bench_hub(
    cluster: Cluster, hub: LightNode, sizes: list[int], rounds: int
) -> tuple[dict[str, Any], list[str]]:
    """Scenario 2; returns the figures and the hub's partners (the largest size)."""
    names = sorted(cluster.nodes)
    linked: list[str] = []
    base_rss = rss_kib()
    rows = []
    for size in sizes:
        await link_hub(cluster, hub, names[len(linked) : size])
        linked = names[:size]
        for _ in range(2):  # logins, first catalogs, then steady
            await hub_round(hub, cluster, linked, change=False)
        steady = [await hub_round(hub, cluster, linked, change=False) for _ in range(rounds)]
        changed = [await hub_round(hub, cluster, linked, change=True) for _ in range(rounds)]
        rows.append(
            {
                "partners": size,
                "steady_cpu_ms": round(statistics.median(r["cpu_ms"] for r in steady), 1),
                "steady_bytes": round(statistics.median(r["bytes"] for r in steady)),
                "changed_cpu_ms": round(statistics.median(r["cpu_ms"] for r in changed), 1),
                "changed_bytes": round(statistics.median(r["bytes"] for r in changed)),
                "memory_mib": round((rss_kib() - base_rss) / 1024, 2),
            }
        )
        print("hub", json.dumps(rows[-1]), flush=True)
    xs = [float(r["partners"]) for r in rows]
    figures: dict[str, Any] = {"rows": rows}
    for key in ("steady_cpu_ms", "steady_bytes", "changed_cpu_ms", "changed_bytes", "memory_mib"):
        ys = [max(float(r[key]), 1e-3) for r in rows]
        figures[f"exponent_{key}"] = round(fit_exponent(xs, ys), 2)
    top = rows[-1]
    figures["core_share_at_60s_steady"] = round(top["steady_cpu_ms"] / 1000 / DEFAULT_INTERVAL_S, 4)
    figures["core_share_at_60s_all_changed"] = round(top["changed_cpu_ms"] / 1000 / DEFAULT_INTERVAL_S, 4)
    figures["target_core_share"] = 0.10
    return figures, linked


async def bench_star(
    cluster: Cluster,
    hub: LightNode,
    partners: list[str],
    rounds: int,
    trials: int,
    hub_interval_factor: float,
) -> dict[str, Any]:
    """Scenario 3: the hub relays every partner's catalog to every other partner; its own sync runs
    every `hub_interval_factor` intervals in the timed run."""
    for name in partners:
        info = cluster.nodes[name]
        hub.pin(name, info.url, info.public_key, Agreement(relay=("*",)))
        await cluster.pin([(name, hub.name, hub.url, hub.public_key, {"republish": True})])
    grouped = [
        [n, other, cluster.nodes[other].public_key] for n in partners for other in partners if other != n
    ]
    for start in range(0, len(grouped), 2000):
        by_worker: dict[int, list[list[str]]] = {}
        for item in grouped[start : start + 2000]:
            by_worker.setdefault(cluster.nodes[item[0]].worker, []).append(item)
        await asyncio.gather(*(cluster.workers[w].call("issuers", issuers=i) for w, i in by_worker.items()))
    started = time.monotonic()
    results = await run_round(hub.service, force=True)  # the partners' catalogs, now re-publishable
    assert all(r.outcome in ("ok", "unchanged") for r in results), results[:2]
    # Each partner first fetches every other partner's catalog through the hub; ten at a time, as
    # partners whose timers are spread over the interval would.
    for start in range(0, len(partners), 10):
        outcomes = await cluster.round(partners[start : start + 10], partner=hub.name)
        assert set(outcomes) <= {"ok", "unchanged"}, outcomes
    first_s = time.monotonic() - started
    await hub_round(hub, cluster, partners, change=False)
    relayed = await cluster.version_held(partners[0], partners[1], via=hub.name)
    assert relayed > 0, "relayed catalogs did not arrive"
    steady = [await hub_round(hub, cluster, partners, change=False) for _ in range(rounds)]
    one_changed = []
    for index in range(rounds):
        await cluster.worker_of(partners[index]).call("price", nodes=[partners[index]])
        one_changed.append(await hub_round(hub, cluster, partners, change=False))
    hub_interval_s = cluster.interval_s * hub_interval_factor
    loop_task = asyncio.create_task(_hub_loop(hub, hub_interval_s))
    await cluster.broadcast("loops", run=True, interval_s=cluster.interval_s, seed=2)
    await asyncio.sleep(cluster.interval_s * 1.5)
    audience = {name: [other for other in partners if other != name] for name in partners}
    times = await convergence(cluster, trials, seed=5, audience=audience, via=hub.name)
    await cluster.broadcast("loops", run=False, interval_s=0, seed=0)
    loop_task.cancel()
    return {
        "partners": len(partners),
        "relayed_catalogs_held": len(partners) * (len(partners) - 1),
        "setup_rounds_s": round(first_s, 1),
        "steady_cpu_ms": round(statistics.median(r["cpu_ms"] for r in steady), 1),
        "steady_bytes": round(statistics.median(r["bytes"] for r in steady)),
        "one_issuer_changed_cpu_ms": round(statistics.median(r["cpu_ms"] for r in one_changed), 1),
        "one_issuer_changed_bytes": round(statistics.median(r["bytes"] for r in one_changed)),
        "interval_s": cluster.interval_s,
        "hub_interval_s": hub_interval_s,
        "convergence_s": [round(t, 2) for t in times],
        "convergence_intervals_max": round(max(times) / cluster.interval_s, 2),
        "target_intervals": 2,
    }


async def _hub_loop(hub: LightNode, interval_s: float) -> None:
    """The hub's sync every `interval_s` from a random phase, at a fixed rate as the node's scheduler runs it."""
    await asyncio.sleep(random.uniform(0, interval_s))
    next_at = time.monotonic()
    while True:
        await run_round(hub.service)
        next_at += interval_s
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    parser = bench_parser("National scale: a partial mesh of light nodes, growth with partners, the star.")
    parser.add_argument("--nodes", type=int, default=100, help="light nodes in the mesh (default 100)")
    parser.add_argument("--degree", type=int, default=8, help="partners per node in the mesh (default 8)")
    parser.add_argument("--offers", type=int, default=40, help="offers per node (default 40)")
    parser.add_argument("--workers", type=int, default=4, help="worker processes (default 4)")
    parser.add_argument("--interval", type=float, default=10.0, help="sync interval for the timed runs, s")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per figure (default 3)")
    parser.add_argument("--trials", type=int, default=5, help="price changes timed per scenario (default 5)")
    parser.add_argument("--quick", action="store_true", help="30 nodes, degree 4, 2 s interval: a smoke run")
    parser.add_argument(
        "--hub-interval-factor",
        type=float,
        default=1.0,
        help="the aggregator syncs every FACTOR intervals in the star's timed run (default 1)",
    )
    parser.add_argument(
        "--scenarios", default="mesh,growth,star", help="comma-separated subset of mesh, growth, star"
    )
    return parser


async def main(argv: list[str] | None = None) -> int:
    """Run the three scenarios and print their figures."""
    args = build_parser().parse_args(argv)
    if args.quick:
        args.nodes, args.degree, args.interval, args.rounds, args.trials = 30, 4, 2.0, 2, 2
    sizes = sorted({s for s in (10, 25, 50, args.nodes) if s <= args.nodes})
    with tempfile.TemporaryDirectory(prefix="cpnode-bench-national-") as tmp:
        folder = Path(tmp)
        template = migrated_template(folder)
        cluster = Cluster(folder, template, args.interval)
        names = [f"n{index:03d}" for index in range(args.nodes)]
        hub = LightNode("hub", folder, template, args.offers, 10_000, args.interval)
        figures: dict[str, Any] = {}
        try:
            await cluster.start(args.workers, names, args.offers)
            await hub.start()
            chosen = set(args.scenarios.split(","))
            if "mesh" in chosen:
                figures["mesh"] = await bench_mesh(cluster, args.degree, args.rounds, args.trials)
                print("mesh", json.dumps(figures["mesh"]), flush=True)
            partners = sorted(cluster.nodes)
            if "growth" in chosen:
                figures["growth"], partners = await bench_hub(cluster, hub, sizes, args.rounds)
                print(
                    "growth",
                    json.dumps({k: v for k, v in figures["growth"].items() if k != "rows"}),
                    flush=True,
                )
            else:
                await link_hub(cluster, hub, partners)
            if "star" in chosen:
                figures["star"] = await bench_star(
                    cluster, hub, partners, args.rounds, args.trials, args.hub_interval_factor
                )
                print("star", json.dumps(figures["star"]), flush=True)
        finally:
            await hub.stop()
            await cluster.stop()
    if args.json:
        emit_json("national", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
