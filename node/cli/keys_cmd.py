"""`cpnode keys show|rotate|deny`: the node's keys and the deny-list of compromised peer keys."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from node.cli.commands import add_command
from node.cli.common import (
    CliError,
    add_handler,
    node_database,
    print_fields,
    print_json,
    print_table,
    settings_from_args,
)
from node.times import format_ts

# Loaded by the handlers that use them, so this command's `--help` stays light.
if TYPE_CHECKING:
    from node.config import Settings
    from node.identity import Identity


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode keys`."""
    parser = add_command(
        commands,
        "keys",
        description="The node's Ed25519 keys and the deny-list.",
    )
    sub = parser.add_subparsers(title="keys commands", metavar="ACTION", required=True)
    show = sub.add_parser("show", help="active and retired keys, and the deny-list")
    add_handler(show, run_show)
    rotate = sub.add_parser(
        "rotate",
        help="replace the node's key with a new one endorsed by the old",
        description="Make a new key; the old one stays in the key document as retired (so what it signed "
        "still verifies) and endorses the new one, so partners follow without re-pinning. A running node "
        "picks the new key up within a second.",
    )
    add_handler(rotate, run_rotate)
    deny = sub.add_parser("deny", help="never accept a key id again (compromised key)")
    deny.add_argument("kid", metavar="KEY_ID", help="key id, ed25519:<16 chars>")
    deny.add_argument("--reason", default="compromised", help="why (kept with the entry)")
    add_handler(deny, run_deny)


def _identity(args: argparse.Namespace) -> tuple[Settings, Identity]:
    from node.identity import IdentityError, load_identity

    settings = settings_from_args(args)
    try:
        return settings, load_identity(settings)
    except IdentityError as exc:
        raise CliError(str(exc)) from None


def run_show(args: argparse.Namespace) -> int:
    """Handler of `cpnode keys show`."""
    from federation import store

    settings, identity = _identity(args)
    with node_database(settings) as engine:
        denied = store.list_denied(engine)
    keys = [record.to_json() for record in identity.records().values()]
    if args.json:
        print_json(
            {
                "node": identity.name,
                "key_id": identity.key_id,
                "public_key": identity.public_key,
                "fingerprint": identity.fingerprint,
                "keys": keys,
                "denied": denied,
            }
        )
        return 0
    print_fields(
        [
            ("node", identity.name),
            ("key id", identity.key_id),
            ("public key", identity.public_key),
            ("fingerprint", identity.fingerprint),
        ]
    )
    print_table(
        "keys",
        ["key id", "status", "valid from", "retired"],
        [[k["kid"], k["status"], format_ts(k["valid_from_ts"]), format_ts(k["retired_ts"])] for k in keys],
    )
    print_table(
        "deny-list",
        ["key id", "reason", "since"],
        [[d["kid"], d["reason"], format_ts(d["denied_ts"])] for d in denied],
    )
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    """Handler of `cpnode keys rotate`."""
    from node.identity import IdentityError, rotate_identity

    settings = settings_from_args(args)
    try:
        old, new = rotate_identity(settings, int(time.time()))
    except (IdentityError, OSError) as exc:
        raise CliError(f"cannot rotate the key: {exc}") from None
    result = {
        "node": new.name,
        "retired_key_id": old.key_id,
        "key_id": new.key_id,
        "public_key": new.public_key,
        "fingerprint": new.fingerprint,
    }
    if args.json:
        print_json(result)
    else:
        print_fields(
            [
                ("node", new.name),
                ("retired key", old.key_id),
                ("new key id", new.key_id),
                ("public key", new.public_key),
                ("fingerprint", new.fingerprint),
            ]
        )
    return 0


def run_deny(args: argparse.Namespace) -> int:
    """Handler of `cpnode keys deny`."""
    from federation import store
    from federation.keys import KEY_ID_CHARS, PREFIX

    kid = str(args.kid)
    if not kid.startswith(PREFIX) or len(kid) != len(PREFIX) + KEY_ID_CHARS:
        raise CliError(f"key id must look like {PREFIX}<{KEY_ID_CHARS} chars>, got {kid!r}", exit_code=2)
    settings = settings_from_args(args)
    with node_database(settings) as engine:
        added = store.deny_key(engine, kid, args.reason, int(time.time()))
    if args.json:
        print_json({"key_id": kid, "added": added})
    else:
        print_fields([("denied", kid), ("new entry", "yes" if added else "no (already denied)")])
    return 0
