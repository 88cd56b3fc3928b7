"""Pinning a peer by name, URL and public key: what `cpnode supervisors add|remove` (supervisors
this node reports to) and `cpnode supervision nodes add|remove` (nodes that report here) share."""

from __future__ import annotations

import argparse
import time

from node.cli.common import (
    CliError,
    database_from_args,
    node_database,
    print_fields,
    print_output,
    settings_from_args,
)
from node.cli.partners_args import checked_url


def add_pinned_arguments(parser: argparse.ArgumentParser, what: str, url_required: bool = True) -> None:
    """NAME, --url and --key of a supervisor or a supervised node."""
    parser.add_argument("name", metavar="NAME", help=f"the {what}'s node name")
    url_help = f"the {what}'s base URL" + (
        "" if url_required else " (without it, its catalog is not checked)"
    )
    parser.add_argument("--url", required=url_required, default="", help=url_help)
    parser.add_argument("--key", required=True, help=f"the {what}'s public key, ed25519:<base64url>")


def pin(args: argparse.Namespace, table_name: str) -> int:
    """Add a supervisor (`sup_supervisors`) or a supervised node (`sup_nodes`) from the arguments."""
    from federation.errors import FederationError
    from federation.keys import fingerprint, parse_public_key
    from node.config_fields import check_public_key
    from node.supervision import store, tables

    try:
        check_public_key(args.key)
    except ValueError as exc:
        raise CliError(f"--key: {exc}", exit_code=2) from None
    settings = settings_from_args(args)  # every argument checked before the database is opened
    url = checked_url(args.url.rstrip("/"), settings) if args.url else ""
    try:
        pinned = store.Pinned(args.name, url, args.key)
    except FederationError as exc:
        raise CliError(str(exc), exit_code=2) from None
    with node_database(settings) as engine:
        try:
            store.add_pinned(engine, getattr(tables, table_name), pinned, int(time.time()))
        except FederationError as exc:
            raise CliError(str(exc)) from None
    fp = fingerprint(parse_public_key(args.key))
    return print_output(
        args,
        {**pinned.to_json(), "fingerprint": fp},
        lambda _: print_fields(
            [("name", pinned.name), ("url", url or "none"), ("fingerprint", fp), ("source", pinned.source)]
        ),
    )


def unpin(args: argparse.Namespace, table_name: str) -> int:
    """Remove a CLI-added supervisor or supervised node."""
    from federation.errors import FederationError
    from node.supervision import store, tables

    with database_from_args(args) as (_settings, engine):
        try:
            store.remove_pinned(engine, getattr(tables, table_name), args.name)
        except FederationError as exc:
            raise CliError(str(exc)) from None
    return print_output(args, {"removed": args.name}, lambda _: print_fields([("removed", args.name)]))
