"""Scheduling benchmark: one demand over 100,000 offers (own and partners') for each strategy, against
a NumPy lower bound measured in the same run: the same offers' columns scored with bare array
operations (a free-units and price filter, the strategy's measure gathered by site, the first 20 found by
argpartition and sorted),
with no rules, exclusions or explanations.

The columns (node.market.columns) are built once per offer view and timed apart; each figure is the
median of 15 runs after a garbage collection. Target: ≤ 100 ms per demand.

Then the same demands end to end (bench.scheduling_api): through the HTTP API of a real node process
whose database holds the 100,000 offers (own and six partners' catalogs), with its offer columns
cached (node.market.offer_cache): p50 and p99 per demand against the NumPy lower bound of the run.

A demand without a strategy (`PLAIN`) is timed both ways in the same run: the market's matching
offer by offer over the rows (the path such demands took before) and over the columns
(node.market.column_match, what the API now does); through the API its p50 is printed too (its
answer lists every match and exclusion, so it is mostly the answer's size).

Run: .venv/bin/python -m bench scheduling [--no-api] [--requests N]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench import scheduling_api
from bench.bench_market import offers, timed
from bench.report import bench_parser, emit_json
from connectors.network.contract import Link, Topology
from node.market import parse_demand
from node.market.column_match import match_columns
from node.market.columns import OfferColumns, build_columns
from node.market.matching import match
from node.market.placement import place
from node.market.strategy_spec import builtin
from node.network.view import NetworkView, merge
from node.offers import OfferRow

OFFERS = 100_000
CURRENCY = "CNY"
SITES = [f"site-{n:02d}" for n in range(31)]  # one per province
USERS = [{"site": "site-03", "weight": 5}, {"site": "site-17", "weight": 2}, {"site": "site-29", "weight": 1}]
DEMANDS: dict[str, dict[str, Any]] = {
    "cost": {"units": 4, "hours": 10, "strategy": "cost"},
    "nearest": {"units": 4, "hours": 10, "strategy": "nearest", "user_sites": USERS, "max_latency_ms": 40},
    "coschedule": {
        "units": 4,
        "hours": 10,
        "strategy": "coschedule",
        "data": {"site": "site-11", "size_mb": 50_000},
        "compute_s": 3600,
    },
    "composite": {"units": 4, "hours": 10, "strategy": "composite", "user_sites": USERS},
}
# A demand without a strategy: the market's matching, whose answer lists every match and exclusion.
PLAIN: dict[str, Any] = {"units": 4, "hours": 10, "max_price_per_unit_hour": 412_000}


def national(seed: int = 3) -> NetworkView:
    """A ring of 31 sites with random chords: 2–20 ms links, 1–100 Gbit/s, 0–9 per GB."""
    rng = random.Random(seed)
    pairs = [(SITES[n], SITES[(n + 1) % len(SITES)]) for n in range(len(SITES))]
    pairs += [tuple(rng.sample(SITES, 2)) for _ in range(40)]  # type: ignore[misc]
    links = [
        Link(
            id=f"l{n}",
            a=a,
            b=b,
            bandwidth_mbps=100_000,
            free_mbps=rng.randint(1_000, 100_000),
            latency_us=rng.randint(2_000, 20_000),
            cost_minor_per_gb=rng.randint(0, 9),
        )
        for n, (a, b) in enumerate(pairs)
    ]
    return merge({"backbone": Topology(sites=SITES, links=links)})


def sited(rows: list[OfferRow], seed: int = 5) -> list[OfferRow]:
    """The rows, each declaring one of the sites."""
    rng = random.Random(seed)
    for row in rows:
        row["networks"] = [rng.choice(SITES)]
    return rows


def lower_bound(name: str, columns: OfferColumns, view: NetworkView, units: int) -> Callable[[], object]:
    """The bare NumPy scoring of the same offers for strategy `name` (the least any ranking does)."""
    price = columns.numbers["price_per_unit_hour"]
    free = columns.numbers["free_units"]
    score = columns.score
    per_site = np.zeros(len(columns.sites))
    if name in ("nearest", "composite"):
        reach = view.latencies_us(str(USERS[0]["site"]))
        per_site = np.array([reach.get(s, 10**9) for s in columns.sites], np.float64)
    elif name == "coschedule":
        reach = view.latencies_us("site-11")
        per_site = np.array([reach.get(s, 10**9) for s in columns.sites], np.float64)

    def run() -> object:
        keep = np.flatnonzero((free >= units) & (price > 0))
        if name == "cost":
            measure = price[keep].astype(np.float64)
        elif name == "nearest":
            measure = per_site[columns.site_codes[keep]]
        elif name == "coschedule":
            measure = per_site[columns.site_codes[keep]] + 3.6e9 / np.maximum(score[keep], 1)
        else:
            measure = price[keep] / price.max() + per_site[columns.site_codes[keep]] / per_site.max()
        first = np.argpartition(measure, 20)[:20]
        return keep[first[np.argsort(measure[first], kind="stable")]]

    return run


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    parser = bench_parser("One demand over 100,000 offers per strategy, against a NumPy lower bound.")
    parser.add_argument("--offers", type=int, default=OFFERS, help="how many offers (default 100,000)")
    parser.add_argument("--own", type=int, default=4_000, help="of them the node's own, through the API")
    parser.add_argument("--requests", type=int, default=30, help="demands per strategy through the API")
    parser.add_argument("--no-api", action="store_true", help="skip the part through a node's HTTP API")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Time each strategy against its NumPy lower bound over the same offers; print JSON lines."""
    args = build_parser().parse_args(argv)
    rows, view = sited(offers(args.offers)), national()
    started = time.perf_counter()
    columns = build_columns(rows)
    built_ms = round((time.perf_counter() - started) * 1000, 1)
    print(
        "columns built once per offer view", json.dumps({"offers": args.offers, "ms": built_ms}), flush=True
    )
    collected: dict[str, Any] = {"offers": args.offers, "columns_ms": built_ms}
    for name, body in DEMANDS.items():
        demand = parse_demand(body)
        strategy = builtin(name)
        result = place(strategy, demand, columns, view, CURRENCY)
        seconds = timed(lambda s=strategy, d=demand: place(s, d, columns, view, CURRENCY))  # type: ignore[misc]
        baseline = timed(lower_bound(name, columns, view, demand.units))
        figures = {
            "candidates": result.candidate_count,
            "excluded": sum(result.excluded_by_reason.values()),
            "ms": round(seconds * 1000, 2),
            "numpy_ms": round(baseline * 1000, 2),
            "ratio": round(seconds / baseline, 1),
            "within_100ms": seconds <= 0.1,
        }
        print(f"place: {name:<11}", json.dumps(figures), flush=True)
        collected[name] = figures
    plain = parse_demand(PLAIN)
    answer = match_columns(plain, columns, CURRENCY)
    per_offer = timed(lambda: match(plain, rows, CURRENCY))
    over_columns = timed(lambda: match_columns(plain, columns, CURRENCY))
    figures = {
        "matches": len(answer.matches),
        "excluded": len(answer.excluded),
        "per_offer_ms": round(per_offer * 1000, 1),
        "columns_ms": round(over_columns * 1000, 1),
        "speedup": round(per_offer / over_columns, 2),
    }
    print("match: no strategy", json.dumps(figures), flush=True)
    collected["plain"] = figures
    if not args.no_api:
        collected["api"] = scheduling_api.run(
            args.offers, args.own, DEMANDS, view, SITES, lower_bound, args.requests, CURRENCY, PLAIN
        )
    if args.json:
        emit_json("scheduling", collected)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
