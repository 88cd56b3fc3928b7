"""`cpnode plan`: availability-aware grouping of sub-modules into microservices, and `plan sweep`.

cpnode plan --architecture FILE [--availability A] [--backups K] [--target T]
            [--strategy optimal|none|full|paper] [--json] [--out PLAN.json]
cpnode plan --node ...        the node's own roles (configs/architecture/node.toml)
cpnode plan sweep [--out DIR] the paper's Table 1 and Figures 9–10 as CSV and plots
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TypeVar

from node.availability import (
    STRATEGIES,
    Architecture,
    AvailabilityError,
    Plan,
    format_percent,
    load_architecture,
    make_plan,
    simulate,
)
from node.availability.grouping import DEFAULT_EXACT_LIMIT
from node.availability.paper import PAPER_BACKUPS
from node.cli.commands import add_command
from node.cli.common import CliError, add_json_argument, print_fields, print_json, print_table
from node.cli.plan_files import shipped_architecture

DEFAULT_BACKUPS = PAPER_BACKUPS
DEFAULT_TARGET = 0.9999
_T = TypeVar("_T")


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _backups(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be 0–100, got {text}")
    return value


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode plan` and `cpnode plan sweep`."""
    parser = add_command(
        commands,
        "plan",
        description="Group each module's sub-modules into microservices (each run as backups + 1 "
        "instances) so the platform meets the target availability with as few microservices as possible.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--architecture", type=Path, metavar="FILE", help="architecture TOML file")
    source.add_argument("--node", action="store_true", help="plan the node's own roles (shipped node.toml)")
    parser.add_argument(
        "--availability",
        type=_probability,
        metavar="A",
        help="default availability of sub-modules given by name",
    )
    parser.add_argument(
        "--backups",
        type=_backups,
        metavar="K",
        help=f"backup instances per microservice (default: file or {DEFAULT_BACKUPS})",
    )
    parser.add_argument(
        "--target",
        type=_probability,
        metavar="T",
        help=f"platform availability target (default: file or {DEFAULT_TARGET})",
    )
    parser.add_argument(
        "--strategy",
        "--method",
        dest="strategy",
        choices=STRATEGIES,
        default="optimal",
        help="planning method",
    )
    parser.add_argument(
        "--exact-limit",
        type=int,
        default=DEFAULT_EXACT_LIMIT,
        metavar="N",
        help=f"largest module grouped exactly; larger ones use the bounded heuristic (default {DEFAULT_EXACT_LIMIT})",
    )
    parser.add_argument(
        "--monte-carlo", type=int, default=0, metavar="TRIALS", help="also check the plan by simulation"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the simulation (default 0)")
    parser.add_argument("--out", type=Path, metavar="FILE", help="also write the plan as JSON to FILE")
    add_json_argument(parser)
    parser.set_defaults(handler=run_plan)

    from node.cli.plan_sweep import register_sweep  # the sweep's output code is only needed here

    register_sweep(parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND"))


def read_architecture(args: argparse.Namespace) -> Architecture:
    """The architecture named by `--architecture` or `--node`, with `--availability` applied."""
    path = shipped_architecture("node") if getattr(args, "node", False) else args.architecture
    if path is None:
        raise CliError("give --architecture FILE or --node (or use `cpnode plan sweep`)", exit_code=2)
    try:
        return load_architecture(path, args.availability)
    except AvailabilityError as exc:
        raise CliError(str(exc), exit_code=2) from None


def _first(*values: _T | None) -> _T:
    """The first value that is not None (command line, then file, then default)."""
    return next(value for value in values if value is not None)


def plan_rows(plan: Plan) -> list[tuple[str, int, str, str]]:
    """One table row per microservice: module, service number, sub-modules, module availability."""
    rows = []
    for module in plan.modules:
        for number, service in enumerate(module.services, start=1):
            shown = format_percent(module.availability) + ("" if module.exact else " (heuristic)")
            rows.append((module.name, number, ", ".join(service), shown if number == 1 else ""))
    return rows


def run_plan(args: argparse.Namespace) -> int:
    """Handler of `cpnode plan`."""
    architecture = read_architecture(args)
    backups = _first(args.backups, architecture.backups, DEFAULT_BACKUPS)
    target = _first(args.target, architecture.target, DEFAULT_TARGET)
    try:
        plan = make_plan(architecture, args.strategy, backups, target, args.exact_limit)
        check = simulate(architecture, plan, args.monte_carlo, args.seed) if args.monte_carlo else None
    except AvailabilityError as exc:
        raise CliError(str(exc), exit_code=2) from None
    data = plan.to_dict()
    if check is not None:
        data["monte_carlo"] = {
            "trials": check.trials,
            "estimate": check.estimate,
            "interval": [check.low, check.high],
            "confidence": check.confidence,
            "agrees": check.contains(plan.availability),
        }
    if args.out is not None:
        try:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot write {args.out}: {exc.strerror}") from None
    if args.json:
        print_json(data)
        return 0
    print_fields(
        [
            ("architecture", plan.architecture),
            ("strategy", plan.strategy),
            ("backups", f"{plan.backups} ({plan.instances} instances per microservice)"),
            ("target", f"{format_percent(plan.target)} %"),
            ("availability", f"{format_percent(plan.availability)} %"),
            ("microservices", plan.microservices),
            ("meets target", "yes" if plan.meets_target else "NO"),
            ("exact", "yes" if plan.exact else "no (bounded heuristic used)"),
        ]
    )
    print_table(None, ["module", "#", "sub-modules", "module availability %"], plan_rows(plan))
    if check is not None:
        print_fields(
            [
                ("monte carlo", f"{format_percent(check.estimate)} % over {check.trials:,} trials"),
                ("99 % interval", f"[{format_percent(check.low)}, {format_percent(check.high)}] %"),
                ("agrees", "yes" if check.contains(plan.availability) else "NO"),
            ]
        )
    for note in plan.notes:
        print_fields([("note", note)])
    if args.out is not None:
        print_fields([("plan written to", args.out)])
    return 0
