"""`cpnode supervision nodes|summary|history`: a supervisor's registered nodes, national totals
and the history of one node's reports (read from the supervisor's database)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from node.cli.commands import add_command
from node.cli.common import (
    CliError,
    add_handlers,
    database_from_args,
    int_between,
    print_fields,
    print_output,
    print_table,
)
from node.cli.pinned import add_pinned_arguments, pin, unpin
from node.times import format_ts


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode supervision`."""
    parser = add_command(
        commands,
        "supervision",
        description="For a node run with `--roles supervisor`: it accepts reports only from the "
        "nodes registered here, and flags those whose reports stop or contradict their catalogs.",
    )
    sub = parser.add_subparsers(title="supervision commands", metavar="ACTION", required=True)
    nodes = sub.add_parser("nodes", help="register, list and remove the nodes that report here")
    nodes_sub = nodes.add_subparsers(title="nodes commands", metavar="ACTION", required=True)
    add = nodes_sub.add_parser("add", help="register a node by name, URL and public key")
    add_pinned_arguments(add, "node", url_required=False)
    listing = nodes_sub.add_parser("list", help="registered nodes with their last report and flags")
    remove = nodes_sub.add_parser("remove", help="stop accepting a node's reports (its history stays)")
    remove.add_argument("name", metavar="NAME")
    summary = sub.add_parser("summary", help="national totals by region and chip family, and flagged nodes")
    history = sub.add_parser("history", help="one node's reports, newest first")
    history.add_argument("name", metavar="NAME")
    history.add_argument(
        "--limit", type=int_between(1, 500), default=20, help="how many reports (default 20, at most 500)"
    )
    add_handlers(
        [
            (add, run_add),
            (listing, run_list),
            (remove, run_remove),
            (summary, run_summary),
            (history, run_history),
        ]
    )


def run_add(args: argparse.Namespace) -> int:
    """Handler of `cpnode supervision nodes add`."""
    return pin(args, "nodes_t")


def run_remove(args: argparse.Namespace) -> int:
    """Handler of `cpnode supervision nodes remove`."""
    return unpin(args, "nodes_t")


def _summary(args: argparse.Namespace) -> dict[str, Any]:
    from node.supervision import store
    from node.supervision.totals import summary

    with database_from_args(args) as (settings, engine):
        nodes = store.latest_reports(engine)
    return summary(nodes, settings.node.name, int(time.time()), settings.supervision.stale_intervals)


def _percent(bp: int) -> str:
    return f"{bp / 100:.1f}%"


def run_list(args: argparse.Namespace) -> int:
    """Handler of `cpnode supervision nodes list`."""
    data = _summary(args)
    return print_output(
        args,
        {"nodes": data["nodes"]},
        lambda _: print_table(
            "registered nodes",
            ["node", "region", "last report", "received", "pools", "flags"],
            [
                [
                    n["node"],
                    n["region"],
                    n["last_seq"],
                    format_ts(n["last_received_ts"]),
                    len(n["pools"]),
                    ", ".join(n["flags"]),
                ]
                for n in data["nodes"]
            ],
        ),
    )


def run_summary(args: argparse.Namespace) -> int:
    """Handler of `cpnode supervision summary`."""
    data = _summary(args)
    return print_output(args, data, _print_summary)


def _print_summary(data: dict[str, Any]) -> None:
    from node.money import format_money

    totals = data["totals"]
    print_fields(
        [
            ("supervisor", data["supervisor"]),
            ("registered nodes", data["registered_nodes"]),
            ("reporting nodes", totals["reporting_nodes"]),
            ("flagged", ", ".join(data["flagged"]) or "none"),
        ]
    )
    print_table(
        "national totals",
        [
            "region",
            "chip family",
            "nodes",
            "pools",
            "chips",
            "free chips",
            "CPUs",
            "free CPUs",
            "utilisation",
        ],
        [
            [
                row["region"],
                row["chip_family"],
                row["nodes"],
                row["pools"],
                row["capacity_chips"],
                row["free_chips"],
                row["capacity_cpus"],
                row["free_cpus"],
                _percent(row["utilisation_bp"]),
            ]
            for row in totals["by_region_chip"]
        ],
    )
    if totals["trades"]:
        print_table(
            "trades in each node's latest period",
            ["currency", "orders", "order amount", "sales", "sales amount", "unit-hours"],
            [
                [
                    t["currency"],
                    t["orders"],
                    format_money(t["order_amount"], t["currency"]),
                    t["sales"],
                    format_money(t["sales_amount"], t["currency"]),
                    t["unit_hours"],
                ]
                for t in totals["trades"]
            ],
        )
    for node in data["nodes"]:
        if node["flags"]:
            detail = "; ".join(node["check"]["detail"]) if "contradicts_catalog" in node["flags"] else ""
            print_fields([(node["node"], ", ".join(node["flags"]) + (f": {detail}" if detail else ""))])


def run_history(args: argparse.Namespace) -> int:
    """Handler of `cpnode supervision history`."""
    from node.supervision import store, tables

    with database_from_args(args) as (_settings, engine):
        if store.get_pinned(engine, tables.nodes_t, args.name) is None:
            raise CliError(
                f"no node called {args.name!r} is registered (see `cpnode supervision nodes list`)"
            )
        rows = store.history(engine, args.name, args.limit)
    return print_output(
        args,
        {"node": args.name, "count": len(rows), "reports": rows},
        lambda _: print_table(
            f"reports of {args.name}",
            ["seq", "issued", "received", "period", "pools", "chips", "free chips"],
            [
                [
                    r["seq"],
                    format_ts(r["issued_ts"]),
                    format_ts(r["received_ts"]),
                    f"{format_ts(r['period_start_ts'])} – {format_ts(r['period_end_ts'])}",
                    len(r["pools"]),
                    sum(p["capacity_chips"] for p in r["pools"]),
                    sum(p["free_chips"] for p in r["pools"]),
                ]
                for r in rows
            ],
        ),
    )
