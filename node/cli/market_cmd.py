"""`cpnode market match`: state a demand and see the offers of this node and its partners that
satisfy it, ranked, with the others excluded by reason (the running node's `POST /api/v1/match`).
The same demand flags order the best match: `cpnode orders place --match ...`."""

from __future__ import annotations

import argparse
from collections import defaultdict
from typing import Any

from node.cli.commands import add_command
from node.cli.common import (
    CliError,
    add_config_argument,
    add_json_argument,
    console,
    print_output,
    settings_from_args,
)
from node.cli.node_api import add_token_argument, call, consumer_token
from node.money import format_money, format_rate, format_score

# Flag → demand field, for the optional constraints (None: not stated).
_INT_FLAGS = (
    "min_chips_per_unit",
    "min_cpus",
    "min_memory_mib",
    "min_storage_gib",
    "min_metric_score",
    "max_age_s",
)
_LIST_FLAGS = (("region", "regions"), ("tag", "tags"), ("source", "sources"))
_SHOWN_EXCLUDED = 3


SOURCE_HELP = "allowed sources: own, partner, own:NAME, partner:NAME or a partner's name (repeat for several)"


def add_demand_arguments(
    parser: argparse._ActionsContainer, size: bool = True, source_help: str = SOURCE_HELP
) -> None:
    """Add the demand's flags (`--units` and `--hours` too unless the command has them already)."""
    if size:
        parser.add_argument("--units", type=int, required=True, help="units needed (at least 1)")
        parser.add_argument("--hours", type=int, required=True, help="hours needed (at least 1)")
    parser.add_argument("--chip-vendor", help="e.g. nvidia, huawei (case does not matter)")
    parser.add_argument("--chip-model", help="e.g. A100, Ascend-910B (case does not matter)")
    for name in _INT_FLAGS:
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=int,
            metavar="N",
            help="only partner offers whose catalog a sync round confirmed at most N seconds ago"
            if name == "max_age_s"
            else None,
        )
    parser.add_argument("--region", action="append", help="an allowed region (repeat for several)")
    parser.add_argument("--tag", action="append", help="a required tag (repeat for several)")
    parser.add_argument("--source", action="append", help=source_help)
    parser.add_argument(
        "--max-price", type=int, metavar="MINOR", help="highest price per unit-hour, minor units"
    )
    parser.add_argument("--currency", help="the demand's currency (the node's trading currency by default)")
    parser.add_argument(
        "--objective",
        choices=["cost", "performance", "value"],
        default="cost",
        help="cost: lowest price; performance: highest metric score; value: score per price",
    )
    parser.add_argument(
        "--split", action="store_true", help="allow several offers to share the units when none has them all"
    )
    add_strategy_arguments(parser)


def add_strategy_arguments(parser: argparse._ActionsContainer) -> None:
    """Add the scheduling flags: the strategy and what it reads (users' sites, data, run time)."""
    parser.add_argument(
        "--strategy",
        metavar="NAME[@VERSION]",
        help="rank by a strategy instead of --objective: cost, performance, value, nearest, coschedule, "
        "composite, or a registered one (`cpnode strategies list`)",
    )
    parser.add_argument(
        "--user-site",
        action="append",
        metavar="SITE[:WEIGHT]",
        help="a site the users reach the work from, with its share of traffic (repeat for several)",
    )
    parser.add_argument("--max-latency-ms", type=int, metavar="MS", help="bound on the latency to the users")
    parser.add_argument("--data-site", metavar="SITE", help="where the task's input data lives (coschedule)")
    parser.add_argument("--data-mb", type=int, metavar="MB", help="how big the input data is (coschedule)")
    parser.add_argument(
        "--compute-s", type=int, metavar="S", help="run time on an offer of metric score 1.00 (coschedule)"
    )


def _user_site(text: str) -> dict[str, Any]:
    site, _, weight = text.partition(":")
    if weight and not weight.isdigit():
        raise CliError(f"--user-site {text!r}: the weight after ':' must be a whole number", 2)
    return {"site": site, "weight": int(weight)} if weight else {"site": site}


def strategy_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The demand's scheduling fields from the flags (only what was stated)."""
    fields: dict[str, Any] = {}
    if getattr(args, "strategy", None):
        fields["strategy"] = args.strategy
    if getattr(args, "user_site", None):
        fields["user_sites"] = [_user_site(text) for text in args.user_site]
    if getattr(args, "max_latency_ms", None) is not None:
        fields["max_latency_ms"] = args.max_latency_ms
    if getattr(args, "data_site", None) or getattr(args, "data_mb", None) is not None:
        fields["data"] = {"site": args.data_site, "size_mb": args.data_mb}
    if getattr(args, "compute_s", None) is not None:
        fields["compute_s"] = args.compute_s
    return fields


def demand_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The demand's JSON object from the flags (only what was stated, plus objective and split)."""
    demand: dict[str, Any] = {"units": args.units, "hours": args.hours, "objective": args.objective}
    for name in ("chip_vendor", "chip_model", "currency", *_INT_FLAGS):
        if getattr(args, name) is not None:
            demand[name] = getattr(args, name)
    for flag, field in _LIST_FLAGS:
        if getattr(args, flag):
            demand[field] = list(getattr(args, flag))
    if args.max_price is not None:
        demand["max_price_per_unit_hour"] = args.max_price
    if args.split:
        demand["split"] = True
    return {**demand, **strategy_fields(args)}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode market`."""
    parser = add_command(
        commands,
        "market",
        description="Match a demand against the running node's merged offer view.",
    )
    sub = parser.add_subparsers(title="market commands", metavar="ACTION", required=True)
    matching = sub.add_parser("match", help="rank the offers that satisfy a demand; say why others do not")
    add_demand_arguments(matching)
    add_config_argument(matching)
    add_json_argument(matching)
    add_token_argument(matching)
    matching.set_defaults(handler=run_match)


def _aligned(columns: list[str], rows: list[list[str]]) -> list[str]:
    """Rows as text columns, never cut (offer ids and sources must stay whole to be copied)."""
    widths = [max(len(str(row[i])) for row in [columns, *rows]) for i in range(len(columns))]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [columns, *rows]
    ]


def print_result(result: dict[str, Any]) -> None:
    """Print a match answer: the ranked matches, the plan (with split), the exclusions by reason."""
    currency = result.get("currency", "")
    rows = [
        [
            str(rank),
            m["source"],
            m["offer_id"],
            f"{m['chip_vendor']} {m['chip_model']} ×{m['chips_per_unit']}",
            m["region"],
            str(m["free_units"]),
            format_score(m["metric_score"]),
            format_rate(m["price_per_unit_hour"], m["currency"], "unit-h"),
            format_money(m["total"], m["currency"]),
        ]
        for rank, m in enumerate(result["matches"], 1)
    ]
    columns = [
        "#",
        "source",
        "offer",
        "chips",
        "region",
        "free units",
        "score (A100 = 1.00)",
        "price per unit-hour",
        "total",
    ]
    demand = result["demand"]
    out = console()
    strategy = result.get("strategy")
    by = (
        f"strategy {strategy['name']}@{strategy['version']} ({strategy['kind']})"
        if strategy
        else demand["objective"]
    )
    total = result.get("candidates", len(rows))
    count = (
        f"{total} candidates, the first {len(rows)} shown"
        if strategy
        else f"{total} matches" + (f", the first {len(rows)} shown" if total > len(rows) else "")
    )
    out.print(f"{count} for {demand['units']} units × {demand['hours']} h, by {by}", markup=False)
    for line in _aligned(columns, rows) if rows else []:
        out.print(line, markup=False)
    if strategy:
        print_explanations(result)
    out = console()
    if "plan" in result:
        if result["plan_covers"]:
            parts = ", ".join(f"{p['units']} × {p['offer_id']} ({p['source']})" for p in result["plan"])
            out.print(f"plan: {parts}; total {format_money(result['plan_total'], currency)}", markup=False)
        else:
            out.print("plan: the matching offers' free units cannot cover the demand", markup=False)
    by_reason: dict[str, list[str]] = defaultdict(list)
    for excluded in result["excluded"]:
        by_reason[excluded["reason"]].append(f"{excluded['offer_id']} ({excluded['source']})")
    # A strategy's answer counts every exclusion by reason but lists only the first of each.
    counts = result.get("excluded_by_reason") or {r: len(o) for r, o in by_reason.items()}
    if by_reason:
        out.print(f"excluded: {sum(counts.values())}", markup=False)
    for reason, offers in by_reason.items():
        count = counts.get(reason, len(offers))
        more = f", and {count - _SHOWN_EXCLUDED} more" if count > _SHOWN_EXCLUDED else ""
        out.print(f"  {reason:<22} {count:>4}: {', '.join(offers[:_SHOWN_EXCLUDED])}{more}", markup=False)


def _terms(explain: dict[str, Any]) -> str:
    parts = []
    for key, value in explain.items():
        if isinstance(value, dict) and "scaled" in value:
            parts.append(f"{key} {value['scaled']:.3f}×{value['weight']:g}")
        elif isinstance(value, dict):
            parts.append(f"{key} " + ", ".join(f"{k} {v:g}" for k, v in value.items()))
        elif isinstance(value, list):
            parts.append(f"{key} {' → '.join(map(str, value))}")
        elif value is not None:
            parts.append(f"{key} {value}")
    return "; ".join(parts)


def print_explanations(result: dict[str, Any]) -> None:
    """Each shown candidate's site and terms, then the nearest misses of a latency bound."""
    out = console()
    out.print("why, in order:", markup=False)
    for rank, m in enumerate(result["matches"], 1):
        out.print(
            f"  {rank}. {m['offer_id']} at {m['site'] or 'no site'}: {_terms(m['explain'])}", markup=False
        )
    for miss in result.get("nearest_misses", []):
        out.print(
            f"  nearest miss: {miss['offer_id']} at {miss['site']}: {_terms(miss['explain'])}", markup=False
        )


def run_match(args: argparse.Namespace) -> int:
    """Handler of `cpnode market match`."""
    settings = settings_from_args(args)
    result = call(settings, "POST", "/api/v1/match", demand_from_args(args), token=consumer_token(args))
    return print_output(args, result, print_result)
