"""`cpnode whoami`: who a token names on the running node (the admin token by default, or the one in
`--token-file`): its role, and the user or consumer it belongs to."""

from __future__ import annotations

import argparse

from node.cli.commands import add_command
from node.cli.common import (
    add_handler,
    print_fields,
    print_json,
    settings_from_args,
)
from node.cli.node_api import add_token_argument, call, consumer_token


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode whoami`."""
    parser = add_command(
        commands,
        "whoami",
        description="Ask the running node who a token names: its role (admin, operator, auditor, "
        "consumer, federated) and the user or consumer it belongs to.",
    )
    add_token_argument(parser)
    add_handler(parser, run)


def describe(who: dict[str, object]) -> str:
    """One line naming the caller: `user alice (auditor)`, `the admin token (admin)`, `consumer bob`."""
    role = who.get("role") or ("admin" if who.get("admin") else "consumer")
    if who.get("consumer"):
        return f"consumer {who['consumer']} ({role})"
    if who.get("user"):
        return f"user {who['user']} ({role})"
    return f"the admin token ({role})"


def run(args: argparse.Namespace) -> int:
    """Handler of `cpnode whoami`."""
    who = call(settings_from_args(args), "GET", "/api/v1/whoami", token=consumer_token(args))
    if args.json:
        print_json(who)
        return 0
    print_fields(
        [
            ("caller", describe(who)),
            ("role", who.get("role")),
            ("user", who.get("user")),
            ("consumer", who.get("consumer")),
        ]
    )
    return 0
