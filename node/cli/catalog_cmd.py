"""`cpnode catalog sync|show`: pull partners' catalogs now, and show the merged offer view."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from node.cli.commands import add_command
from node.cli.common import (
    CliError,
    add_handlers,
    node_database,
    print_json,
    print_table,
    settings_from_args,
)
from node.cli.node_api import call
from node.money import format_rate

if TYPE_CHECKING:
    from node.config import Settings


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode catalog`."""
    parser = add_command(commands, "catalog")
    sub = parser.add_subparsers(title="catalog commands", metavar="ACTION", required=True)
    sync = sub.add_parser("sync", help="log in to every partner and fetch changed catalogs now")
    show = sub.add_parser(
        "show",
        help="own and partner offers with their source and age (asks the running node)",
        description="The running node's merged offer view, as GET /api/v1/offers shows it: own offers "
        "(config, pools) with free units net of open reservations, and every partner's accepted catalog.",
    )
    show.add_argument("--partner", default=None, help="only this partner's offers")
    add_handlers([(sync, run_sync), (show, run_show)])


async def sync_catalogs(settings: Settings) -> list[dict[str, Any]]:
    """Log in to every partner and fetch changed catalogs now, into the database of `settings`."""
    # The federation client and the database are loaded to sync, not to show the view or for --help.
    from federation.service import FederationService
    from federation.sync import run_round
    from node.identity import IdentityError, load_identity
    from node.peering.component import static_keys

    try:
        identity = load_identity(settings)
    except IdentityError as exc:
        raise CliError(str(exc)) from None
    with node_database(settings) as engine:
        service = FederationService(
            static_keys(identity), engine, settings.federation.protocol_settings(), lambda: ""
        )
        try:
            results = await run_round(service, force=True)
        finally:
            await service.close()
    return [
        {"partner": r.partner, "outcome": r.outcome, "version": r.version, "error": r.error} for r in results
    ]


def run_sync(args: argparse.Namespace) -> int:
    """Handler of `cpnode catalog sync`."""
    settings = settings_from_args(args)
    rows = asyncio.run(sync_catalogs(settings))
    if args.json:
        print_json(rows)
    else:
        print_table(
            "catalog sync",
            ["partner", "outcome", "version", "error"],
            [[r["partner"], r["outcome"], r["version"], r["error"]] for r in rows],
        )
    return 0 if all(r["outcome"] in ("ok", "unchanged") for r in rows) else 1


def run_show(args: argparse.Namespace) -> int:
    """Handler of `cpnode catalog show`: the running node's merged offer view (`GET /api/v1/offers`),
    so pool offers and free units net of reservations show exactly as partners and consumers see them."""
    settings = settings_from_args(args)
    query = "" if args.partner is None else "?" + urlencode({"partner": args.partner})
    try:
        rows = call(settings, "GET", f"/api/v1/offers{query}")["offers"]
    except CliError as exc:
        raise CliError(f"catalog show asks the running node for its offer view: {exc}") from None
    if args.json:
        print_json(rows)
        return 0
    print_table(
        f"offers seen by {settings.node.name}",
        ["source", "offer", "pool", "chip", "free units", "price per unit-hour", "catalog age (s)"],
        [
            [
                r["source"],
                r["id"],
                r["pool"],
                f"{r['chip_vendor']} {r['chip_model']}",
                r["free_units"],
                format_rate(r["price_per_unit_hour"], r["currency"], "unit-h"),
                r["age_s"],
            ]
            for r in rows
        ],
    )
    return 0
