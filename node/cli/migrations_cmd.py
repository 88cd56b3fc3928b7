"""`cpnode migrations plan|start|list|show|follow|cancel|retry`: moving running pool instances to
another pool through the running node (admin token).

    cpnode migrations plan --from POOL --instance ID [--to POOL | --offer ID] [--bandwidth-mbps N]
    cpnode migrations start --from POOL --instance ID [--to POOL | --offer ID] [--follow]
    cpnode migrations follow ID        # live progress until it ends; exit 0 only if it completed

The node chooses the destination and the network path from fresh offers and the topology (or takes
the ones named), reserves the path, deploys the destination, checkpoints and stops the source, has
the data express move the state straight between the pools, verifies it, and starts the
destination from it. Any failure before the cutover rolls back and the source runs on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from node.cli.commands import add_command
from node.cli.common import (
    CliError,
    add_handlers,
    console,
    print_fields,
    print_json,
    print_output,
    print_table,
    settings_from_args,
)
from node.cli.node_api import call, events
from node.money import format_money
from node.times import format_ms

API = "/api/v1/migrations"
ENDS = {"completed", "rolled_back", "cancelled", "needs_attention"}
COLUMNS = ["migration", "state", "from", "to", "state bytes", "downtime", "reason"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode migrations`."""
    parser = add_command(
        commands, "migrations", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(title="migrations commands", metavar="ACTION", required=True)
    plan = sub.add_parser(
        "plan", help="rank the destinations for an instance, and say why others cannot take it"
    )
    start = sub.add_parser("start", help="start moving an instance (--follow: watch it until it ends)")
    for parser_ in (plan, start):
        parser_.add_argument(
            "--from", dest="source_pool", required=True, metavar="POOL", help="the source pool"
        )
        parser_.add_argument("--instance", required=True, metavar="ID", help="the instance to move")
        where = parser_.add_mutually_exclusive_group()
        where.add_argument("--to", dest="to_pool", metavar="POOL", help="move to this pool (its best offer)")
        where.add_argument(
            "--offer", dest="offer_id", metavar="ID", help="move to this offer (pool/region/flavor)"
        )
        parser_.add_argument(
            "--bandwidth-mbps", type=int, help="path bandwidth to reserve (default: [migration])"
        )
        parser_.add_argument(
            "--hours", type=int, default=1, help="hours the destination is priced for (default 1)"
        )
        parser_.add_argument(
            "--objective", choices=("cost", "time"), default="cost", help="how to rank destinations"
        )
        parser_.add_argument(
            "--state-bytes", type=int, help="the state's size if known (default: what it holds now)"
        )
    start.add_argument("--id", help="migration id (repeating a start with the same id is safe)")
    start.add_argument("--task", dest="task_id", help="the task whose instance this is")
    start.add_argument(
        "--follow", action="store_true", help="show progress until it ends; exit 0 only if completed"
    )
    listing = sub.add_parser("list", help="migrations, newest first")
    show = sub.add_parser("show", help="one migration with its path, progress and history")
    follow = sub.add_parser("follow", help="live progress until the migration ends; exit 0 only if completed")
    cancel = sub.add_parser("cancel", help="cancel a migration (before its cutover); the source runs on")
    retry = sub.add_parser("retry", help="run the undo of a migration that needs attention again")
    for parser_ in (show, follow, cancel, retry):
        parser_.add_argument("migration_id", metavar="ID")
    add_handlers(
        [
            (plan, run_plan),
            (start, run_start),
            (listing, run_list),
            (show, run_show),
            (follow, run_follow),
            (cancel, run_cancel),
            (retry, run_retry),
        ]
    )


def _ask(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source_pool": args.source_pool,
        "instance_id": args.instance,
        "hours": args.hours,
        "objective": args.objective,
    }
    for name in ("to_pool", "offer_id", "bandwidth_mbps", "state_bytes"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    return body


def _bytes(count: int | None) -> str:
    if count is None:
        return ""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} B"


def where(m: dict[str, Any]) -> str:
    if m.get("destination_pool") is None:
        return "(to be chosen)"
    return f"{m['destination_pool']}/{m['destination_region']}/{m['destination_flavor']}"


def run_plan(args: argparse.Namespace) -> int:
    """Handler of `cpnode migrations plan`."""
    settings = settings_from_args(args)
    plan = call(settings, "POST", f"{API}/plan", _ask(args))
    if args.json:
        print_json(plan)
        return 0
    rows = []
    for rank, c in enumerate(plan["candidates"], 1):
        route = " → ".join(c["route"]["hops"]) if c["route"] else "no path needed"
        rows.append(
            [
                rank,
                c["offer_id"],
                route,
                f"{c['transfer_ms'] / 1000:.1f} s",
                format_money(c["transfer_cost"], c["currency"]),
                format_money(c["run_cost"], c["currency"]),
                format_money(c["total_cost"], c["currency"]),
            ]
        )
    title = f"destinations for {args.instance} ({_bytes(plan['state_bytes'])} of state, {plan['bandwidth_mbps']} Mbit/s)"
    print_table(title, ["#", "offer", "path", "transfer", "transfer cost", "run cost", "total"], rows)
    out = console()
    for excluded in plan["excluded"]:
        if excluded["reason"] != "not_requested":
            out.print(
                f"left out {excluded['offer_id']}: {excluded['reason']} ({excluded['message']})", markup=False
            )
    return 0 if plan["candidates"] else 1


def run_start(args: argparse.Namespace) -> int:
    """Handler of `cpnode migrations start`."""
    settings = settings_from_args(args)
    body = _ask(args)
    for name in ("id", "task_id"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    migration = call(settings, "POST", API, body)
    if args.follow:
        return follow_migration(settings, migration["id"], args.json)
    if args.json:
        print_json(migration)
    else:
        console().print(
            f"migration {migration['id']}: {migration['source_pool']}/{migration['source_instance']} → "
            f"{where(migration)} ({migration['state']}); follow it with `cpnode migrations follow {migration['id']}`",
            markup=False,
        )
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Handler of `cpnode migrations list`."""
    settings = settings_from_args(args)
    migrations = call(settings, "GET", API)["migrations"]
    if args.json:
        print_json(migrations)
        return 0
    rows = [
        [
            m["id"],
            m["state"],
            f"{m['source_pool']}/{m['source_instance']}",
            where(m),
            _bytes(m["state_bytes"]),
            "" if m["downtime_ms"] is None else f"{m['downtime_ms'] / 1000:.1f} s",
            m["reason"] or "",
        ]
        for m in migrations
    ]
    print_table("migrations", COLUMNS, rows)
    return 0


def _print_migration(m: dict[str, Any], history: bool = True) -> None:
    progress = m.get("progress") or {}
    path = m.get("path")
    fields: list[tuple[str, Any]] = [
        ("migration", m["id"]),
        ("state", m["state"] + (f" ({m['reason']})" if m.get("reason") else "")),
        ("source", f"{m['source_pool']}/{m['source_instance']}"),
        (
            "destination",
            where(m) + (f" instance {m['destination_instance']}" if m.get("destination_instance") else ""),
        ),
        (
            "path",
            f"{path['id']}: {' → '.join(path['hops'])}, {path['bandwidth_mbps']} Mbit/s"
            + (f" (re-provisioned {m['path_reprovisions']}×)" if m["path_reprovisions"] else "")
            if path
            else "none",
        ),
        ("state bytes", _bytes(m["state_bytes"])),
        (
            "transferred",
            f"{_bytes(progress.get('bytes_done'))} of {_bytes(progress.get('bytes_total'))}"
            if progress
            else "",
        ),
        ("retries", progress.get("retries", "")),
        ("downtime", "" if m["downtime_ms"] is None else f"{m['downtime_ms'] / 1000:.2f} s"),
        ("last error", m.get("last_error") or ""),
        ("task", m.get("task_id") or ""),
        ("requested", format_ms(m.get("created_ms"))),
        ("updated", format_ms(m.get("updated_ms"))),
    ]
    print_fields(fields)
    for line in m.get("history", []) if history else []:
        what = line["to"] if line["event"] != "note" else "·"
        console().print(f"  {format_ms(line['at_ms'])} {what:<22} {line['detail']}", markup=False)


def run_show(args: argparse.Namespace) -> int:
    """Handler of `cpnode migrations show`."""
    settings = settings_from_args(args)
    migration = call(settings, "GET", f"{API}/{args.migration_id}")
    return print_output(args, migration, _print_migration)


def run_follow(args: argparse.Namespace) -> int:
    """Handler of `cpnode migrations follow`."""
    return follow_migration(settings_from_args(args), args.migration_id, args.json)


def _progress_line(event: dict[str, Any]) -> str:
    progress = event.get("progress") or {}
    line = str(event["state"])
    if event["state"] == "transferring" and progress.get("bytes_total"):
        done, total = progress["bytes_done"], progress["bytes_total"]
        eta = "" if progress.get("eta_ms") is None else f", ETA {progress['eta_ms'] / 1000:.0f} s"
        line += (
            f" {100 * done // total:3d}% {_bytes(done)} of {_bytes(total)} at {_bytes(progress['rate_bytes_per_s'])}/s"
            f"{eta}, chunks {progress['chunks_done']}/{progress['chunks_total']}, retries {progress['retries']}"
        )
    if event.get("last_error"):
        line += f" (last error: {event['last_error']})"
    return line


def follow_migration(settings: Any, migration_id: str, as_json: bool) -> int:
    """Print the migration's events until it rests: JSON lines; else each line of its history as it
    happens, and the transfer's progress as a live line on a terminal (elsewhere a line at most every
    two seconds). Exit 0 only if it completed."""
    state: str | None = None
    printed_at = 0.0
    live = not as_json and sys.stdout.isatty()
    out = console()
    status = out.status("", spinner="dots") if live else None
    if status is not None:
        status.start()
    try:
        for event in events(settings, f"{API}/{migration_id}/events"):
            if as_json:
                sys.stdout.write(json.dumps(event, sort_keys=True) + "\n")
                sys.stdout.flush()
            if event["kind"] == "transition":
                state = event["to"]
                if not as_json:
                    what = event["to"] if event["event"] != "note" else "·"
                    out.print(f"{migration_id}: {what:<22} {event['detail']}".rstrip(), markup=False)
                continue
            state = event["state"]
            if as_json or event["state"] != "transferring":
                continue
            line = f"{migration_id}: {_progress_line(event)}"
            if status is not None:
                status.update(line)
            elif time.monotonic() - printed_at >= 2:
                out.print(line, markup=False)
                printed_at = time.monotonic()
    finally:
        if status is not None:
            status.stop()
    if state is None:
        raise CliError(f"no events for migration {migration_id}")
    if not as_json:
        _print_migration(call(settings, "GET", f"{API}/{migration_id}"), history=False)
    return 0 if state == "completed" else 1


def _act(args: argparse.Namespace, action: str, note: str) -> int:
    settings = settings_from_args(args)
    migration = call(settings, "POST", f"{API}/{args.migration_id}/{action}")
    if args.json:
        print_json(migration)
    else:
        console().print(f"migration {migration['id']}: {migration['state']}{note}", markup=False)
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    """Handler of `cpnode migrations cancel`."""
    return _act(args, "cancel", "")


def run_retry(args: argparse.Namespace) -> int:
    """Handler of `cpnode migrations retry`."""
    return _act(args, "retry", " (undo running again)")
