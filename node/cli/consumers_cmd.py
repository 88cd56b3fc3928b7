"""`cpnode consumers create|deposit|list|show|token|tokens|revoke-token`: consumer accounts, their
deposits and their API tokens, through the running node's admin API (a consumer's account is
`consumer:<id>` in the ledger, never overdrawn; a token lets the consumer use `/api/v1/orders` and
`cpnode orders --token-file` for its own orders)."""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import quote

from node.cli.commands import add_command
from node.cli.common import (
    add_handlers,
    print_fields,
    print_json,
    print_table,
    settings_from_args,
)
from node.cli.node_api import call
from node.money import format_money
from node.times import format_ms

COLUMNS = ["consumer", "balance", "held", "available"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode consumers`."""
    parser = add_command(commands, "consumers")
    sub = parser.add_subparsers(title="consumers commands", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="open a consumer account (idempotent)")
    deposit = sub.add_parser("deposit", help="record money paid in by a consumer")
    deposit.add_argument("--amount", type=int, required=True, help="integer minor units")
    deposit.add_argument("--id", help="deposit id; repeating a deposit with the same id is safe")
    show = sub.add_parser("show", help="one consumer's balance")
    token = sub.add_parser(
        "token",
        help="issue a new API token for a consumer (printed once; the node keeps only its hash)",
        description="Issue a new API token for an existing consumer. The token is printed this once; "
        "the consumer uses it as 'Authorization: Bearer TOKEN' or with `cpnode orders --token-file`.",
    )
    tokens = sub.add_parser("tokens", help="a consumer's tokens: id, created, revoked (never the secret)")
    revoke = sub.add_parser("revoke-token", help="revoke one of a consumer's tokens")
    for parser_ in (create, deposit, show, token, tokens, revoke):
        parser_.add_argument("consumer", metavar="ID")
    revoke.add_argument("token_id", metavar="TOKEN_ID", help="the token's id, as `consumers tokens` lists it")
    listing = sub.add_parser("list", help="every consumer's balance")
    add_handlers(
        [
            (create, run_create),
            (deposit, run_deposit),
            (show, run_show),
            (listing, run_list),
            (token, run_token),
            (tokens, run_tokens),
            (revoke, run_revoke_token),
        ]
    )


def _print(rows: list[dict[str, Any]], title: str, as_json: bool) -> None:
    if as_json:
        print_json(rows if len(rows) != 1 else rows[0])
        return
    print_table(
        title,
        COLUMNS,
        [
            [r["id"], *(format_money(r[key], r["currency"]) for key in ("balance", "held", "available"))]
            for r in rows
        ],
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


def _tokens_path(consumer: str) -> str:
    return f"/api/v1/consumers/{quote(consumer, safe='')}/tokens"


def run_token(args: argparse.Namespace) -> int:
    """Handler of `cpnode consumers token`."""
    settings = settings_from_args(args)
    issued = call(settings, "POST", _tokens_path(args.consumer), {})
    if args.json:
        print_json(issued)
        return 0
    print_fields(
        [
            ("consumer", issued["consumer"]),
            ("token id", issued["id"]),
            ("created", format_ms(issued["created_ts"])),
            ("token", issued["token"]),
        ]
    )
    sys.stderr.write("The token is shown only this once: hand it to the consumer now.\n")
    return 0


def run_tokens(args: argparse.Namespace) -> int:
    """Handler of `cpnode consumers tokens`."""
    settings = settings_from_args(args)
    rows = call(settings, "GET", _tokens_path(args.consumer))["tokens"]
    if args.json:
        print_json(rows)
        return 0
    print_table(
        f"tokens of {args.consumer}",
        ["token id", "created", "revoked"],
        [[r["id"], format_ms(r["created_ts"]), format_ms(r["revoked_ts"])] for r in rows],
    )
    return 0


def run_revoke_token(args: argparse.Namespace) -> int:
    """Handler of `cpnode consumers revoke-token`."""
    settings = settings_from_args(args)
    path = f"{_tokens_path(args.consumer)}/{quote(args.token_id, safe='')}/revoke"
    row = call(settings, "POST", path, {})
    if args.json:
        print_json(row)
        return 0
    print_fields(
        [("consumer", row["consumer"]), ("token id", row["id"]), ("revoked", format_ms(row["revoked_ts"]))]
    )
    return 0
