"""The availability model checked on the real node: the plan of configs/architecture/node.toml
deployed as role-split `cpnode run` processes, instances frozen at the rates the file assumes (one
independent snapshot per round), one request to every microservice per round.

For each scenario it prints the planner's analytic availability, its Monte Carlo estimate and 99 %
interval, the fraction of rounds the draw left up, the fraction the node served with its 99 %
interval, and the misses (a microservice the draw left up that did not serve). The ratio is the
measured fraction over the prediction; a scenario agrees when the two intervals meet. Everything stays on 127.0.0.1; SQLite unless --db-url.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from bench.report import bench_parser, emit_json
from tests.chaos.availability import AvailabilityReport, run_check


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    parser = bench_parser("Measured availability of the deployed plan against the planner's prediction.")
    parser.add_argument("--rounds", type=int, default=2000, help="rounds per scenario (the first runs 3x)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the failure draws")
    parser.add_argument("--db-url", default=None, help="database of the node (default: a SQLite file)")
    return parser


def _pct(value: float) -> str:
    return f"{100 * value:.3f} %"


def _print(report: AvailabilityReport) -> None:
    services = " | ".join("+".join(s) for m in report.plan.modules for s in m.services)
    print(f"deployed: {services}, {report.plan.instances} instance(s) each")
    for result in report.results:
        mc = result.monte_carlo
        low, high = result.interval
        print(f"\n{result.name} (backups {result.backups}, {result.rounds} rounds, {result.seconds:.0f} s)")
        print(f"  predicted       {_pct(result.predicted)}")
        print(
            f"  Monte Carlo     {_pct(mc.estimate)}  [{_pct(mc.low)}, {_pct(mc.high)}]  ({mc.trials} trials)"
        )
        print(f"  drawn up        {_pct(result.drawn_up / result.rounds)}")
        print(f"  measured        {_pct(result.measured)}  [{_pct(low)}, {_pct(high)}]")
        print(f"  misses          {result.misses} {result.missed or ''}")
        for note in result.notes[:10]:
            print(f"    {note}")
        print(f"  ratio           {result.measured / result.predicted:.4f} (measured / predicted)")
        print(f"  agrees          {'yes' if result.agrees else 'NO'}")
    for problem in report.problems:
        print(f"problem: {problem}")


def main(argv: list[str] | None = None) -> int:
    """Run the check; print each scenario; non-zero when a scenario disagrees or a process failed."""
    args = build_parser().parse_args(argv)
    if args.rounds < 1:
        print("--rounds must be at least 1", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cpnode-bench-availability-") as tmp:
        report = asyncio.run(run_check(Path(tmp), args.db_url, args.rounds, args.seed))
    _print(report)
    if args.json:
        emit_json("availability-check", report.to_dict())
    return 0 if report.problems == [] and all(r.agrees for r in report.results) else 1


if __name__ == "__main__":
    sys.exit(main())
