"""`cpnode pools list|register|gateway-code`: the node's pools, their offers, signed registration
codes for compute identifiers, and single-use codes that let a gateway host join as a pool."""

from __future__ import annotations

import argparse
from typing import Any

from node.cli.commands import add_command
from node.cli.common import (
    add_handler,
    print_json,
    print_table,
    settings_from_args,
)
from node.cli.node_api import call
from node.money import format_rate, format_score
from node.times import format_ts


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode pools ...`."""
    parser = add_command(commands, "pools")
    sub = parser.add_subparsers(title="pool commands", metavar="ACTION", required=True)

    listing = sub.add_parser("list", help="offers of every pool with scores and compute identifiers")
    add_handler(listing, run_list)

    reg = sub.add_parser("register", help="issue a signed registration code for a pool's compute identifier")
    reg.add_argument("name", help="pool name")
    reg.add_argument("--identifier", help="identifier to register (default: the pool's first offer's)")
    add_handler(reg, run_register)

    code = sub.add_parser(
        "gateway-code", help="issue a short-lived, single-use code for `cpnode gateway` to join as pool NAME"
    )
    code.add_argument("name", help="the pool name the gateway registers under")
    code.add_argument("--ttl-s", type=int, default=600, help="seconds the code may be used in (60–86400)")
    add_handler(code, run_gateway_code)


def run_list(args: argparse.Namespace) -> int:
    """Print pools and their offers."""
    data = call(settings_from_args(args), "GET", "/api/v1/pools")
    if args.json:
        print_json(data)
        return 0
    print_table(
        "pools",
        ("pool", "state", "version", "offers", "free"),
        [(p["name"], p["state"], p["version"], p["offers"], p["free_units"]) for p in data["pools"]],
    )
    rows: list[tuple[Any, ...]] = [
        (
            o["offer_id"],
            o["chip_model"],
            o["chips"],
            o["free"],
            format_rate(o["price_minor_per_hour"], o["currency"], "unit-h"),
            format_score(o["score_static_milli"]),
            format_score(o["score_composite_milli"]),
            o["identifier"] or "",
        )
        for o in data["offers"]
    ]
    print_table(
        "offers",
        (
            "offer",
            "chip",
            "chips",
            "free units",
            "price per unit-hour",
            "static score (A100 = 1.00)",
            "composite score",
            "identifier",
        ),
        rows,
    )
    return 0


def run_register(args: argparse.Namespace) -> int:
    """Print a signed registration code for a pool."""
    body = {"identifier": args.identifier} if args.identifier else {}
    data = call(settings_from_args(args), "POST", f"/api/v1/pools/{args.name}/registration", body)
    if args.json:
        print_json(data)
    else:
        print(f"pool       : {data['pool']}\nidentifier : {data['identifier']}\ncode       : {data['code']}")
    return 0


def run_gateway_code(args: argparse.Namespace) -> int:
    """Print a gateway code and the command that uses it."""
    body = {"pool": args.name, "ttl_s": args.ttl_s}
    data = call(settings_from_args(args), "POST", "/api/v1/gateway/codes", body)
    if args.json:
        print_json(data)
    else:
        print(
            f"pool    : {data['pool']}\nexpires : {format_ts(data['expires_ts'])}\ncode    : {data['code']}"
        )
        print(f"\non the host to add, run:\n  {data['command']}")
    return 0
