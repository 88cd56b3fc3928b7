"""`cpnode users create|list|show|token|verify|suspend|reinstate|close`: the node's operator users
(roles admin, operator, auditor; node.http.permissions says what each may do), each with its own
token, through the running node with the admin token (or an admin user's, `--token-file`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import quote

from node.cli.commands import add_command
from node.cli.common import (
    add_config_argument,
    add_json_argument,
    print_fields,
    print_json,
    print_table,
    settings_from_args,
)
from node.cli.node_api import add_token_argument, call, consumer_token

HELPS = {
    "show": "one user: role, status, verification",
    "token": "issue the user a new token (printed once; the old one stops working)",
    "verify": "record the user's real-name verification verdict",
    "suspend": "suspend a user: its token is refused at once on every replica",
    "reinstate": "make a suspended user active again",
    "close": "close a user for good",
}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode users`."""
    parser = add_command(
        commands,
        "users",
        description="Operator users with roles admin (everything), operator (day-to-day, no user "
        "management) and auditor (read-only: ledger, audit, accounts). The admin token stays the "
        "bootstrap admin.",
    )
    sub = parser.add_subparsers(title="users commands", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="create a user with a role and print its token once")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--role", choices=("admin", "operator", "auditor"), required=True)
    create.set_defaults(handler=run_create)
    listing = sub.add_parser("list", help="every user with its role and status")
    listing.set_defaults(handler=run_list)
    parsers = [create, listing]
    for action, help_ in HELPS.items():
        parser_ = sub.add_parser(action, help=help_)
        parser_.add_argument("name", metavar="NAME")
        if action == "verify":
            parser_.add_argument("--verdict", choices=("verified", "rejected"), default="verified")
            parser_.add_argument("--note", default="")
        elif action in ("suspend", "reinstate", "close"):
            parser_.add_argument("--reason", default="")
        parser_.set_defaults(handler=run_action, action=action)
        parsers.append(parser_)
    for parser_ in parsers:
        add_config_argument(parser_)
        add_json_argument(parser_)
        add_token_argument(parser_)


def _show(user: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(user)
        return
    fields = [
        ("user", user.get("id", user.get("name"))),
        ("role", user.get("role", "")),
        ("status", user.get("status", "")),
        ("verification", user.get("verification", {}).get("status", "")),
    ]
    if "token" in user:
        fields.append(("token", user["token"]))
    print_fields([(k, v) for k, v in fields if v != ""])
    if "token" in user:
        sys.stderr.write("The token is shown only this once: hand it to the user now.\n")


def run_create(args: argparse.Namespace) -> int:
    """Handler of `cpnode users create`."""
    settings = settings_from_args(args)
    body = {"name": args.name, "role": args.role}
    _show(call(settings, "POST", "/api/v1/users", body, token=consumer_token(args)), args.json)
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Handler of `cpnode users list`."""
    settings = settings_from_args(args)
    rows = call(settings, "GET", "/api/v1/users", token=consumer_token(args))["users"]
    if args.json:
        print_json(rows)
        return 0
    print_table(
        f"users of {settings.node.name}",
        ["user", "role", "status", "verification"],
        [[u["id"], u["role"], u["status"], u["verification"]["status"]] for u in rows],
    )
    return 0


def run_action(args: argparse.Namespace) -> int:
    """Handler of `cpnode users show|token|verify|suspend|reinstate|close`."""
    settings = settings_from_args(args)
    path = f"/api/v1/users/{quote(args.name, safe='')}"
    token = consumer_token(args)
    if args.action == "show":
        _show(call(settings, "GET", path, token=token), args.json)
        return 0
    body: dict[str, Any] = {}
    if args.action == "verify":
        body = {"verdict": args.verdict, "note": args.note}
    elif args.action != "token":
        body = {"reason": args.reason}
    _show(call(settings, "POST", f"{path}/{args.action}", body, token=token), args.json)
    return 0
