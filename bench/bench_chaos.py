"""Chaos under load: the load a node held while its replicas and its partner were killed and its
database connections cut, the faults injected, and the requests lost (must be 0).

The scenario is tests.chaos (three replicas of `beijing` over one PostgreSQL behind a loopback
balancer, the partner `shanghai`, consumers placing, settling and cancelling orders with retries).
The baseline is the same load on a fresh cluster without faults, measured first in the same run;
the ratio is operations per second under chaos over that. Needs PostgreSQL
(CPNODE_TEST_POSTGRES_URL or --postgres-url); everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.report import bench_parser, emit_json
from tests.chaos.scenario import ChaosReport, ChaosSettings, run_chaos


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    parser = bench_parser("Chaos under load: load held, faults injected, requests lost.")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (each run)")
    parser.add_argument("--consumers", type=int, default=8, help="concurrent consumers")
    parser.add_argument("--seed", type=int, default=1, help="seed of the load and the fault schedule")
    parser.add_argument("--no-baseline", action="store_true", help="skip the fault-free baseline run")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("CPNODE_TEST_POSTGRES_URL", ""),
        help="PostgreSQL server to create the nodes' schemas in (default: $CPNODE_TEST_POSTGRES_URL)",
    )
    return parser


async def _run(postgres_url: str, settings: ChaosSettings) -> ChaosReport:
    with tempfile.TemporaryDirectory(prefix="cpnode-bench-chaos-") as tmp:
        return await run_chaos(Path(tmp), postgres_url, settings)


def _print(title: str, report: ChaosReport) -> None:
    figures = report.figures
    print(f"\n{title}: {report.settings.consumers} consumers, {report.settings.duration_s:g} s of load")
    print(f"  operations        {report.load['operations']} ({figures['operations_per_s']}/s)")
    for outcome, count in report.load["outcomes"].items():
        print(f"    {outcome:<16}{count}")
    print(
        f"  retried           {report.load['retried_operations']} operations, {report.load['attempts']} attempts"
    )
    for answer, count in report.load["transient"].items():
        print(f"    {answer:<30}{count}")
    print(f"  latency           median {figures['median_operation_s']} s, p99 {figures['p99_operation_s']} s")
    print(f"  faults            {report.faults or 'none'}; database connections cut {report.database_cuts}")
    print(f"  orders            {figures['orders']}, sales {figures['sales']}, charged {figures['charged']}")
    print(f"  requests lost     {report.lost}")
    print(f"  problems          {len(report.problems)}")
    for problem in report.problems[:20]:
        print(f"    - {problem.splitlines()[0]}")


def main(argv: list[str] | None = None) -> int:
    """Run the baseline, then the chaos run; print both; non-zero when anything was lost or wrong."""
    args = build_parser().parse_args(argv)
    if not args.postgres_url:
        print(
            "bench chaos needs PostgreSQL: set CPNODE_TEST_POSTGRES_URL or pass --postgres-url",
            file=sys.stderr,
        )
        return 2
    common = {"duration_s": args.duration, "consumers": args.consumers, "seed": args.seed}
    baseline = None
    if not args.no_baseline:
        baseline = asyncio.run(_run(args.postgres_url, ChaosSettings(**common, faults=False)))
        _print("baseline (no faults)", baseline)
    chaos = asyncio.run(_run(args.postgres_url, ChaosSettings(**common)))
    _print("chaos", chaos)
    figures: dict[str, Any] = {"chaos": chaos.to_dict(), "lost": chaos.lost, "problems": len(chaos.problems)}
    if baseline is not None:
        ratio = chaos.figures["operations_per_s"] / max(baseline.figures["operations_per_s"], 1e-9)
        figures.update(baseline=baseline.to_dict(), ratio_operations_per_s=round(ratio, 2))
        print(f"\nratio: operations/s under chaos over the fault-free baseline = {ratio:.2f}")
    print("\nfault log:")
    for line in chaos.fault_log:
        print(f"  {line}")
    if args.json:
        emit_json("chaos", figures)
    failed = chaos.problems or (baseline is not None and baseline.problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
