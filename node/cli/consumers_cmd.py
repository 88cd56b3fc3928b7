"""`cpnode consumers create|deposit|list|show`: consumer accounts and their deposits, through the
running node's admin API (a consumer's account is `consumer:<id>` in the ledger, never overdrawn)."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from node.cli.common import (
    add_config_argument,
    add_json_argument,
    print_json,
    print_table,
    settings_from_args,
)
from node.cli.node_api import call

COLUMNS = ["consumer", "currency", "balance", "held", "available"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode consumers`."""
    parser = commands.add_parser("consumers", help="consumer accounts and deposits")
    sub = parser.add_subparsers(title="consumers commands", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="open a consumer account (idempotent)")
    deposit = sub.add_parser("deposit", help="record money paid in by a consumer")
    deposit.add_argument("--amount", type=int, required=True, help="integer minor units")
    deposit.add_argument("--id", help="deposit id; repeating a deposit with the same id is safe")
    show = sub.add_parser("show", help="one consumer's balance")
    for parser_ in (create, deposit, show):
        parser_.add_argument("consumer", metavar="ID")
    listing = sub.add_parser("list", help="every consumer's balance")
    for parser_, handler in (
        (create, run_create),
        (deposit, run_deposit),
        (show, run_show),
        (listing, run_list),
    ):
        add_config_argument(parser_)
        add_json_argument(parser_)
        parser_.set_defaults(handler=handler)


def _print(rows: list[dict[str, Any]], title: str, as_json: bool) -> None:
    if as_json:
        print_json(rows if len(rows) != 1 else rows[0])
        return
    print_table(
        title, COLUMNS, [[r["id"], r["currency"], r["balance"], r["held"], r["available"]] for r in rows]
    )


def run_create(args: argparse.Namespace) -> int:
    """Handler of `cpnode consumers create`."""
    settings = settings_from_args(args)
    _print([call(settings, "POST", "/api/v1/consumers", {"id": args.consumer})], "consumer", args.json)
    return 0


def run_deposit(args: argparse.Namespace) -> int:
    """Handler of `cpnode consumers deposit`."""
    settings = settings_from_args(args)
    body: dict[str, Any] = {"amount": args.amount}
    if args.id:
        body["id"] = args.id
    path = f"/api/v1/consumers/{quote(args.consumer, safe='')}/deposits"
    _print([call(settings, "POST", path, body)], "deposit recorded", args.json)
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Handler of `cpnode consumers show`."""
    settings = settings_from_args(args)
    _print(
        [call(settings, "GET", f"/api/v1/consumers/{quote(args.consumer, safe='')}")], "consumer", args.json
    )
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Handler of `cpnode consumers list`."""
    settings = settings_from_args(args)
    rows = call(settings, "GET", "/api/v1/consumers")["consumers"]
    if args.json:
        print_json(rows)
    else:
        _print(rows, f"consumers at {settings.node.name}", False)
    return 0
