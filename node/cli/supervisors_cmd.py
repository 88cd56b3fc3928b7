"""`cpnode supervisors add|list|remove`: the supervisors this node reports to, and its reports."""

from __future__ import annotations

import argparse
from typing import Any

from node.cli.commands import add_command
from node.cli.common import add_handlers, database_from_args, int_between, print_output, print_table
from node.cli.pinned import add_pinned_arguments, pin, unpin
from node.times import format_ts


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode supervisors`."""
    parser = add_command(
        commands,
        "supervisors",
        description="A node sends each of its supervisors a signed report of its pools and trades "
        "every [supervision] report_interval_s. Supervisors from node.toml ([[supervisors]]) are "
        "listed with source 'config'.",
    )
    sub = parser.add_subparsers(title="supervisors commands", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="pin a supervisor by name, URL and public key")
    add_pinned_arguments(add, "supervisor")
    listing = sub.add_parser("list", help="supervisors with the reports made, sent, pending and refused")
    remove = sub.add_parser("remove", help="stop reporting to a supervisor added here (its reports stay)")
    remove.add_argument("name", metavar="NAME")
    reports = sub.add_parser(
        "reports", help="the reports made for a supervisor, newest first, and their delivery"
    )
    reports.add_argument("name", metavar="NAME")
    reports.add_argument(
        "--limit", type=int_between(1, 1000), default=20, help="how many reports (default 20, at most 1000)"
    )
    add_handlers([(add, run_add), (listing, run_list), (remove, run_remove), (reports, run_reports)])


def run_add(args: argparse.Namespace) -> int:
    """Handler of `cpnode supervisors add`."""
    return pin(args, "supervisors_t")


def run_remove(args: argparse.Namespace) -> int:
    """Handler of `cpnode supervisors remove`."""
    return unpin(args, "supervisors_t")


def run_list(args: argparse.Namespace) -> int:
    """Handler of `cpnode supervisors list`."""
    from node.supervision import store, tables

    with database_from_args(args) as (_settings, engine):
        supervisors = store.list_pinned(engine, tables.supervisors_t)
        overview = store.outbox_overview(engine)
    rows: list[dict[str, Any]] = []
    for supervisor in supervisors:
        reports = overview.get(supervisor.name, {})
        rows.append(
            {
                **supervisor.to_json(),
                "last_seq": reports.get("last_seq", 0),
                "sent": reports.get("sent", 0),
                "pending": reports.get("pending", 0),
                "refused": reports.get("refused", 0),
                "last_sent_ts": reports.get("last_sent_ts"),
                "last_error": reports.get("last_error"),
            }
        )
    columns = ["name", "url", "source", "last_seq", "sent", "pending", "refused", "last_error"]
    return print_output(
        args,
        {"supervisors": rows},
        lambda _: print_table(
            "supervisors",
            ["name", "url", "source", "last report", "sent", "pending", "refused", "last error"],
            [[r[column] for column in columns] for r in rows],
        ),
    )


def run_reports(args: argparse.Namespace) -> int:
    """Handler of `cpnode supervisors reports`."""
    from node.supervision import store

    with database_from_args(args) as (_settings, engine):
        rows = store.made_for(engine, args.name, args.limit)
    return print_output(
        args,
        {"supervisor": args.name, "reports": rows},
        lambda _: print_table(
            f"reports made for {args.name}",
            ["seq", "made", "state", "attempts", "error"],
            [
                [r["seq"], format_ts(r["created_ts"]), r["state"], r["attempts"], r["last_error"]]
                for r in rows
            ],
        ),
    )
