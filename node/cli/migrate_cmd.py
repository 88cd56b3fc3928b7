"""`cpnode migrate TASK_ID`: move a running task, through the running node (admin token).

    cpnode migrate TASK_ID --to POOL [--follow]            another pool of this node
    cpnode migrate TASK_ID --offer ID [--follow]           the pool of this node's offer ID
    cpnode migrate TASK_ID --to-node PARTNER [--follow]    a partner's pool, bought as a task order
    cpnode migrate TASK_ID [--auto] [--follow]             the best pool of this node
    cpnode migrate list | status ID | cancel ID            the migrations, one of them, cancel one

The task's program is checkpointed, its state streamed by the data express straight from its
pool's storage to the destination's (to a partner's with a credential the partner issues for that
migration only), and started there; the task follows it: its log, outputs, stop and metering
continue on the destination. Moved to a partner, the run here is settled up to the cutover and the
run there is settled from the partner's usage record. Any failure before the cutover rolls back
and the task runs on where it was. `cpnode migrations show|follow|cancel|retry ID` act on the
migration too.
"""

from __future__ import annotations

import argparse
from typing import Any

from node.cli.commands import add_command
from node.cli.common import add_config_argument, add_json_argument, console, print_json, settings_from_args
from node.cli.migrations_cmd import API, follow_migration, run_cancel, run_list, run_show, where
from node.cli.node_api import call


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode migrate`."""
    parser = add_command(
        commands, "migrate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "task_id", metavar="TASK_ID", help="the running task to move (or list, status, cancel)"
    )
    parser.add_argument("migration_id", metavar="ID", nargs="?", help="the migration of status or cancel")
    to = parser.add_mutually_exclusive_group()
    to.add_argument(
        "--auto", action="store_true", help="move to the best pool of this node (the default without --to)"
    )
    to.add_argument("--to", dest="to_pool", metavar="POOL", help="move to this pool of this node")
    to.add_argument("--to-node", dest="to_node", metavar="PARTNER", help="move to this partner's pool")
    parser.add_argument(
        "--offer", dest="offer_id", metavar="ID", help="the destination offer (a partner's, with --to-node)"
    )
    parser.add_argument("--bandwidth-mbps", type=int, help="bandwidth to reserve or cap the transfer at")
    parser.add_argument("--id", help="migration id (repeating a migrate with the same id is safe)")
    parser.add_argument(
        "--follow", action="store_true", help="show progress until it ends; exit 0 only if completed"
    )
    add_config_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(handler=run)


def body_of(args: argparse.Namespace) -> dict[str, Any]:
    """The migration request for the command's arguments."""
    body: dict[str, Any] = {"task_id": args.task_id}
    for name in ("to_pool", "to_node", "offer_id", "bandwidth_mbps", "id"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    return body


VERBS = {"list": run_list, "status": run_show, "cancel": run_cancel}


def run(args: argparse.Namespace) -> int:
    """Handler of `cpnode migrate` (`list`, `status ID` and `cancel ID` act on migrations)."""
    verb = VERBS.get(args.task_id)
    if verb is not None:
        if (args.migration_id is None) != (args.task_id == "list"):
            wanted = "takes no ID" if args.task_id == "list" else "needs the migration's ID"
            console().print(f"cpnode migrate {args.task_id} {wanted}", markup=False)
            return 2
        return verb(args)
    if args.migration_id is not None:
        console().print(f"cpnode migrate TASK_ID takes one task, not {args.migration_id!r} too", markup=False)
        return 2
    settings = settings_from_args(args)
    migration = call(settings, "POST", API, body_of(args))
    if args.follow:
        return follow_migration(settings, migration["id"], args.json)
    if args.json:
        print_json(migration)
        return 0
    destination = f"{migration['partner']}'s pool" if migration.get("partner") else where(migration)
    console().print(
        f"task {args.task_id}: migration {migration['id']} to {destination} ({migration['state']}); "
        f"follow it with `cpnode migrations follow {migration['id']}`",
        markup=False,
    )
    return 0
