"""Matching benchmark: `match` over 10,000 offers (half own, half from four partners) for demands
of each objective, with and without split, against a baseline measured in the same run: sorting
the same offers by price (`sorted` with a key), the least any ranking must do.

Each figure is the median of `ROUNDS` timed runs, each after a garbage collection.

Run: .venv/bin/python -m bench market
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.report import bench_parser, emit_json
from node.market import match, parse_demand
from node.offers import OfferRow

OFFERS = 10_000
ROUNDS = 15
CURRENCY = "CNY"
DEMANDS: dict[str, dict[str, Any]] = {
    "cost": {"units": 4, "hours": 10},
    "cost, constrained": {
        "units": 4,
        "hours": 10,
        "chip_vendor": "nvidia",
        "min_chips_per_unit": 4,
        "regions": ["beijing", "shanghai", "chengdu"],
        "tags": ["training"],
        "max_price_per_unit_hour": 3_000_000,
    },
    "performance": {"units": 4, "hours": 10, "objective": "performance"},
    "value": {"units": 4, "hours": 10, "objective": "value"},
    "value, split": {"units": 500, "hours": 10, "objective": "value", "split": True},
}


def offers(count: int, seed: int = 7) -> list[OfferRow]:
    """`count` merged-view rows: half own, half from four partners, of mixed chips, prices, scores."""
    rng = random.Random(seed)
    chips = [("nvidia", "A100"), ("nvidia", "H800"), ("huawei", "Ascend-910B"), ("nvidia", "L40S")]
    regions = ["beijing", "shanghai", "guangzhou", "chengdu", "wuhan"]
    rows: list[OfferRow] = []
    for index in range(count):
        source = "own:connectors" if index % 2 == 0 else f"partner:p{index % 4}"
        vendor, model = rng.choice(chips)
        age = 0 if source.startswith("own") else rng.randint(0, 600)
        rows.append(
            {
                "id": f"offer-{index}",
                "pool": f"pool-{index % 50}",
                "region": rng.choice(regions),
                "chip_vendor": vendor,
                "chip_model": model,
                "chips_per_unit": rng.choice([1, 2, 4, 8]),
                "cpus": 96,
                "memory_mib": 786_432,
                "storage_gib": 4_000,
                "free_units": rng.randint(0, 40),
                "price_per_unit_hour": rng.randint(10_000, 4_000_000),
                "currency": CURRENCY,
                "networks": ["rdma"],
                "tags": rng.sample(["training", "inference", "rendering"], 2),
                "metric_score": rng.choice([None, rng.randint(100, 3_000)]),
                "source": source,
                "partner": None if source.startswith("own") else source.removeprefix("partner:"),
                "age_s": age,
                "confirmed_age_s": age,
            }
        )
    return rows


def timed(run: Callable[[], object]) -> float:
    """Median seconds of `ROUNDS` runs, each after a garbage collection."""
    samples = []
    for _ in range(ROUNDS):
        gc.collect()
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    return bench_parser("Matching over 10,000 own and partner offers against a price sort.")


def main(argv: list[str] | None = None) -> int:
    """Time each demand against the price sort of the same offers; print JSON lines."""
    args = build_parser().parse_args(argv)
    collected: dict[str, Any] = {}
    rows = offers(OFFERS)
    baseline = timed(lambda: sorted(rows, key=lambda row: row["price_per_unit_hour"]))
    print(
        "baseline: sort by price", json.dumps({"offers": OFFERS, "ms": round(baseline * 1000, 2)}), flush=True
    )
    collected["baseline_sort_ms"] = round(baseline * 1000, 2)
    for name, body in DEMANDS.items():
        demand = parse_demand(body)
        result = match(demand, rows, CURRENCY)
        seconds = timed(lambda demand=demand: match(demand, rows, CURRENCY))  # type: ignore[misc]
        figures = {
            "offers": OFFERS,
            "matches": len(result.matches),
            "excluded": len(result.excluded),
            "plan_parts": None if result.plan is None else len(result.plan),
            "ms": round(seconds * 1000, 2),
            "ratio": round(seconds / baseline, 1),
        }
        print(f"match: {name:<18}", json.dumps(figures), flush=True)
        collected[name] = figures
    if args.json:
        emit_json("market", collected)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
