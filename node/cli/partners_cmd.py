"""`cpnode partners add|list|remove|discovered|trust`: who this node trusts, and on which terms."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from node.cli.commands import add_command
from node.cli.common import (
    CliError,
    add_handlers,
    node_database,
    print_fields,
    print_json,
    print_table,
    settings_from_args,
)
from node.cli.partners_args import add_agreement_arguments, agreement_from_args, checked_url
from node.money import format_money
from node.times import format_ts

# Loaded by the handlers that use them, so this command's `--help` stays light.
if TYPE_CHECKING:
    pass


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode partners`."""
    parser = add_command(
        commands,
        "partners",
        description="Partners are trusted only by an operator's decision.",
    )
    sub = parser.add_subparsers(title="partners commands", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="pin a partner by name, URL and public key")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--url", action="append", required=True, help="partner base URL (repeatable)")
    add.add_argument("--key", required=True, help="the partner's public key, ed25519:<base64url>")
    add_agreement_arguments(add)
    update = sub.add_parser(
        "update",
        help="change a partner's URLs or agreement in place (options not given are kept)",
        description="Change the URLs or agreement of a partner pinned with `partners add` or "
        "`partners trust`; its key, session and catalog are kept. Partners from node.toml are "
        "changed in node.toml.",
    )
    update.add_argument("name", metavar="NAME")
    update.add_argument(
        "--url", action="append", default=None, help="new base URL (repeatable; replaces all)"
    )
    add_agreement_arguments(update, keep_unset=True)
    listing = sub.add_parser("list", help="partners with their link state and catalog")
    remove = sub.add_parser("remove", help="forget a partner added here (config ones live in node.toml)")
    remove.add_argument("name", metavar="NAME")
    discovered = sub.add_parser("discovered", help="nodes seen by discovery (untrusted candidates)")
    trust = sub.add_parser("trust", help="pin a discovered node after comparing its fingerprint")
    trust.add_argument("name", metavar="NAME")
    trust.add_argument(
        "--fingerprint", required=True, help="SHA256:... as the partner's operator read it to you"
    )
    add_agreement_arguments(trust)
    add_handlers(
        [
            (add, run_add),
            (update, run_update),
            (listing, run_list),
            (remove, run_remove),
            (discovered, run_discovered),
            (trust, run_trust),
        ]
    )


def _pin(args: argparse.Namespace, partner_urls: list[str], key: str, source: str) -> int:
    from federation import store
    from federation.errors import FederationError
    from federation.keys import fingerprint, parse_public_key
    from federation.partners import Partner

    settings = settings_from_args(args)
    urls = tuple(checked_url(url, settings) for url in partner_urls)
    try:
        partner = Partner(args.name, urls, key, agreement_from_args(args), source=source)
    except FederationError as exc:
        raise CliError(str(exc), exit_code=2) from None
    with node_database(settings) as engine:
        try:
            store.add_partner(engine, partner, int(time.time()))
        except FederationError as exc:
            raise CliError(str(exc)) from None
    fp = fingerprint(parse_public_key(key))
    if args.json:
        print_json(
            {
                "name": partner.name,
                "urls": list(urls),
                "fingerprint": fp,
                "agreement": partner.agreement.to_json(),
            }
        )
    else:
        print_fields(
            [("partner", partner.name), ("urls", ", ".join(urls)), ("fingerprint", fp), ("source", source)]
        )
    return 0


def run_add(args: argparse.Namespace) -> int:
    """Handler of `cpnode partners add`."""
    from node.config_fields import check_public_key

    try:
        check_public_key(args.key)
    except ValueError as exc:
        raise CliError(f"--key: {exc}", exit_code=2) from None
    return _pin(args, args.url, args.key, "cli")


def run_update(args: argparse.Namespace) -> int:
    """Handler of `cpnode partners update`."""
    from federation import store
    from federation.errors import FederationError
    from federation.partners import Partner

    settings = settings_from_args(args)
    with node_database(settings) as engine:
        current = store.get_partner(engine, args.name)
        if current is None:
            raise CliError(f"no partner called {args.name!r} (see `cpnode partners list`)")
        if current.source == "config":
            raise CliError(f"partner {args.name!r} comes from the config file; change it there")
        urls = tuple(checked_url(url, settings) for url in args.url) if args.url else current.urls
        try:
            partner = Partner(
                current.name,
                urls,
                current.public_key,
                agreement_from_args(args, current.agreement),
                source=current.source,
            )
        except FederationError as exc:
            raise CliError(str(exc), exit_code=2) from None
        try:
            store.add_partner(engine, partner, int(time.time()), replace=True)
        except FederationError as exc:
            raise CliError(str(exc)) from None
    if args.json:
        print_json({"name": partner.name, "urls": list(urls), "agreement": partner.agreement.to_json()})
    else:
        agreement = partner.agreement
        print_fields(
            [
                ("partner", partner.name),
                ("urls", ", ".join(urls)),
                ("credit limit", format_money(agreement.credit_limit, agreement.currency)),
                ("markup", f"{agreement.markup_bp} bp"),
                ("pools", ", ".join(agreement.pools) or "all"),
                ("tags", ", ".join(agreement.tags) or "all"),
            ]
        )
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Handler of `cpnode partners list`."""
    from node.peering.partners import partner_rows

    settings = settings_from_args(args)
    with node_database(settings) as engine:
        rows = partner_rows(engine, int(time.time()))
    if args.json:
        print_json(rows)
    else:
        print_table(
            "partners",
            ["name", "url", "status", "last synced", "catalog", "offers", "source", "last error"],
            [
                [
                    r["name"],
                    r["urls"][0],
                    r["status"],
                    format_ts(r["last_success_ts"]),
                    r["catalog_version"],
                    r["offers"],
                    r["source"],
                    r["last_error"],
                ]
                for r in rows
            ],
        )
    return 0


def run_remove(args: argparse.Namespace) -> int:
    """Handler of `cpnode partners remove`."""
    from federation import store
    from federation.errors import FederationError

    settings = settings_from_args(args)
    with node_database(settings) as engine:
        try:
            store.remove_partner(engine, args.name)
        except FederationError as exc:
            raise CliError(str(exc)) from None
    if args.json:
        print_json({"removed": args.name})
    else:
        print_fields([("removed", args.name)])
    return 0


def run_discovered(args: argparse.Namespace) -> int:
    """Handler of `cpnode partners discovered`."""
    from node.peering.partners import discovered_rows

    settings = settings_from_args(args)
    with node_database(settings) as engine:
        rows = discovered_rows(engine)
    if args.json:
        print_json(rows)
    else:
        print_table(
            "discovered nodes (untrusted until `cpnode partners trust`)",
            ["name", "url", "fingerprint", "trusted", "last seen"],
            [
                [r["name"], r["url"], r["fingerprint"], r["trusted"], format_ts(r["last_seen_ts"])]
                for r in rows
            ],
        )
    return 0


def run_trust(args: argparse.Namespace) -> int:
    """Handler of `cpnode partners trust`."""
    from federation.errors import FederationError
    from node.peering.partners import discovered_candidate

    settings = settings_from_args(args)
    with node_database(settings) as engine:
        try:
            candidate = discovered_candidate(engine, args.name, args.fingerprint)
        except FederationError as exc:
            raise CliError(f"{exc} (see `cpnode partners discovered`)") from None
    return _pin(args, [candidate["url"]], candidate["public_key"], "discovery")
