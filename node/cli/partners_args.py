"""Argument handling the `partners` command needs: partner URL checks and the options that make up an agreement."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from node.cli.common import CliError

# Loaded by the handlers that use them, so this command's `--help` stays light.
if TYPE_CHECKING:
    from federation.partners import Agreement
    from node.config import Settings


def checked_url(url: str, settings: Settings) -> str:
    """`url` if its host resolves only to allowed addresses (see federation.partners), else CliError."""
    from federation.errors import FederationError
    from node.peering.partners import check_partner_url

    try:
        return check_partner_url(url, settings.federation.allow_networks)
    except (FederationError, ValueError) as exc:
        raise CliError(str(exc)) from None


def add_agreement_arguments(parser: argparse.ArgumentParser, *, keep_unset: bool = False) -> None:
    """Options that make up a partner's agreement; with `keep_unset`, an option not given keeps its value."""

    def default(value: object) -> object:
        return None if keep_unset else value

    parser.add_argument(
        "--pools", default=default(""), help="comma-separated pools the partner sees (empty: all)"
    )
    parser.add_argument(
        "--tags", default=default(""), help="comma-separated offer tags the partner sees (empty: all)"
    )
    parser.add_argument(
        "--markup-bp", type=int, default=default(0), help="price markup in basis points (1000 = +10%%)"
    )
    parser.add_argument(
        "--price",
        action="append",
        default=default([]),
        metavar="OFFER_OR_POOL=MINOR_UNITS",
        help="explicit price per unit-hour for an offer id or pool (repeatable; replaces the list)",
    )
    parser.add_argument("--credit-limit", type=int, default=default(0), help="credit limit in minor units")
    parser.add_argument("--currency", default=default("CNY"), help="agreement currency (default CNY)")
    parser.add_argument(
        "--republish",
        choices=["yes", "no"],
        default=default("no"),
        help="may the partner re-publish our catalog to its own partners (an aggregator; default no)",
    )
    parser.add_argument(
        "--relay",
        default=default(""),
        metavar="NAME,..",
        help="partners whose re-publishable catalogs this partner may fetch through us ('*': all; empty: none)",
    )


def agreement_from_args(args: argparse.Namespace, base: Agreement | None = None) -> Agreement:
    """The agreement the options describe (options left unset keep `base`'s values); CliError naming a bad one."""
    from federation.errors import FederationError
    from federation.partners import Agreement

    data: dict[str, Any] = base.to_json() if base is not None else {}
    if args.price is not None:
        prices: dict[str, int] = {}
        for item in args.price:
            name, _, value = item.partition("=")
            if not name or not value.isdigit():
                raise CliError(f"--price must be OFFER_OR_POOL=MINOR_UNITS, got {item!r}", exit_code=2)
            prices[name] = int(value)
        data["price_list"] = prices
    if args.pools is not None:
        data["pools"] = [p for p in args.pools.split(",") if p]
    if args.tags is not None:
        data["tags"] = [t for t in args.tags.split(",") if t]
    if args.relay is not None:
        data["relay"] = [name for name in args.relay.split(",") if name]
    if args.republish is not None:
        data["republish"] = args.republish == "yes"
    for option, key in (
        ("markup_bp", "markup_bp"),
        ("credit_limit", "credit_limit"),
        ("currency", "currency"),
    ):
        if getattr(args, option) is not None:
            data[key] = getattr(args, option)
    try:
        return Agreement.from_json(data)
    except FederationError as exc:
        raise CliError(str(exc), exit_code=2) from None
