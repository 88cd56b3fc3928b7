"""`cpnode db upgrade|status|check`: apply or inspect the versioned schema migrations, and find
what an older database may hold that the node no longer leaves behind."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from node.cli.commands import add_command
from node.cli.common import (
    CliError,
    add_handler,
    print_json,
    print_table,
    settings_from_args,
)

# Loaded by the handlers that use them, so this command's `--help` stays light.
if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from node.config import Settings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode db`."""
    parser = add_command(commands, "db", description="Apply or inspect schema migrations.")
    sub = parser.add_subparsers(title="db commands", metavar="COMMAND", required=True)
    up = sub.add_parser("upgrade", help="apply every pending migration (also done at start-up)")
    add_handler(up, run_upgrade)
    status = sub.add_parser("status", help="show each schema branch's current and latest revision")
    add_handler(status, run_status)
    check = sub.add_parser(
        "check",
        help="find consumers left active or suspended whose ledger account is closed (exit 1 if any is left)",
    )
    check.add_argument(
        "--repair",
        action="store_true",
        help="mark those with nothing left on them closed, as their ledger is",
    )
    add_handler(check, run_check)


def connect(settings: Settings) -> Engine:
    """An engine for the configured database, or a CliError saying why it is unreachable."""
    from node.db import DatabaseError, check_database, make_engine

    engine = make_engine(settings.database_url, busy_timeout_ms=settings.database.busy_timeout_ms)
    try:
        check_database(engine)
    except DatabaseError as exc:
        engine.dispose()
        raise CliError(str(exc)) from None
    return engine


def version_rows(engine: Engine) -> list[dict[str, str | None]]:
    """Per schema branch: current revision, latest revision, and whether it is up to date."""
    from node.db import schema_versions
    from node.db.migrate import head_revisions

    heads = head_revisions()
    current = schema_versions(engine)
    return [
        {
            "branch": branch,
            "current": current.get(branch),
            "latest": head,
            "state": "up to date" if current.get(branch) == head else "behind",
        }
        for branch, head in sorted(heads.items())
    ]


def _show(args: argparse.Namespace, engine: Engine) -> None:
    rows = version_rows(engine)
    if args.json:
        print_json(rows)
    else:
        print_table(
            "schema",
            ["branch", "current", "latest", "state"],
            [[r["branch"], r["current"] or "-", r["latest"], r["state"]] for r in rows],
        )


def run_upgrade(args: argparse.Namespace) -> int:
    """Handler of `cpnode db upgrade`."""
    from node.db import upgrade

    engine = connect(settings_from_args(args))
    try:
        upgrade(engine)
        _show(args, engine)
    finally:
        engine.dispose()
    return 0


def run_status(args: argparse.Namespace) -> int:
    """Handler of `cpnode db status`: exit 1 when a branch is behind."""
    engine = connect(settings_from_args(args))
    try:
        _show(args, engine)
        behind = any(row["state"] != "up to date" for row in version_rows(engine))
    finally:
        engine.dispose()
    return 1 if behind else 0


def run_check(args: argparse.Namespace) -> int:
    """Handler of `cpnode db check`: each consumer whose ledger account is closed while it is not,
    with what to do (repaired with `--repair` when nothing is left on it); exit 1 if any is left."""
    from node.accounts.closing import closed_ledger_consumers, repair
    from node.accounts.lifecycle import AccountStateError

    engine = connect(settings_from_args(args))
    try:
        rows = []
        for found in closed_ledger_consumers(engine):
            outcome = found.advice()
            if args.repair:
                try:
                    outcome = f"marked {repair(engine, found, 'cpnode db check').status}"
                except AccountStateError as exc:
                    outcome = str(exc)
            rows.append({"consumer": found.consumer, "status": found.status, "outcome": outcome})
    finally:
        engine.dispose()
    if args.json:
        print_json({"closed_ledger_consumers": rows})
    elif rows:
        print_table(
            "consumers whose ledger account is closed",
            ["consumer", "status", "outcome"],
            [[r["consumer"], r["status"], r["outcome"]] for r in rows],
        )
    else:
        print("no consumer is left active or suspended with a closed ledger account")
    return 1 if any(not r["outcome"].startswith("marked") for r in rows) else 0
