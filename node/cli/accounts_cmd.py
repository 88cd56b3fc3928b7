"""`cpnode accounts list|show|verify|suspend|reinstate|close|events|federated|key|assertion|call`:
consumer accounts' lifecycle through the running node, and account interconnection (账号互通).

The lifecycle commands use the admin token (or an operator user's, `--token-file`). A consumer uses
`key` to make its client key, `assertion --token-file T --partner B --key K` to get its home node's
assertion for partner B, and `call --assertion A --key K URL` to call B in its own name with it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from node.cli.commands import add_command
from node.cli.common import (
    CliError,
    add_config_argument,
    add_handlers,
    print_fields,
    print_json,
    print_table,
    settings_from_args,
)
from node.cli.node_api import add_token_argument, call, consumer_token
from node.times import format_ms, format_ts

ACTIONS = ("suspend", "reinstate", "close")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode accounts`."""
    parser = add_command(
        commands,
        "accounts",
        description="Consumer accounts' lifecycle (verify, suspend, reinstate, close), the audit trail of "
        "every change, partners' consumers seen here, and a consumer's assertions for partners.",
    )
    sub = parser.add_subparsers(title="accounts commands", metavar="ACTION", required=True)
    listing = sub.add_parser("list", help="every consumer with its status and verification")
    show = sub.add_parser("show", help="one consumer: status, verification, balances, partners told")
    verify = sub.add_parser("verify", help="record the real-name verification verdict (the check is yours)")
    verify.add_argument("--verdict", choices=("verified", "rejected"), default="verified")
    verify.add_argument("--note", default="", help="what was checked (kept in the audit event)")
    parsers: list[tuple[argparse.ArgumentParser, Any]] = [
        (listing, run_list),
        (show, run_show),
        (verify, run_verify),
    ]
    helps = {
        "suspend": "suspend a consumer: its tokens and assertions are refused here and at partners",
        "reinstate": "make a suspended consumer active again",
        "close": (
            "close a consumer for good (needs a zero balance and no open orders or tasks); "
            "closing again finishes a close that stopped half-way"
        ),
    }
    for action in ACTIONS:
        parser_ = sub.add_parser(action, help=helps[action])
        parser_.add_argument("--reason", default="", help="why (kept in the audit event)")
        parser_.set_defaults(action=action)
        parsers.append((parser_, run_action))
    for parser_ in (show, verify, *(p for p, _ in parsers[3:])):
        parser_.add_argument("consumer", metavar="ID")
    events = sub.add_parser("events", help="the audit trail of account changes, oldest first")
    events.add_argument("--kind", choices=("consumer", "user", "federated"))
    events.add_argument("--subject", help="one account (consumer id, user name or consumer@node)")
    events.add_argument("--after", type=int, default=0, help="only events after this sequence number")
    events.add_argument("--limit", type=int, default=100)
    federated = sub.add_parser("federated", help="partners' consumers seen here (consumer@node)")
    federated.add_argument("--issuer", help="only those of this partner")
    parsers += [(events, run_events), (federated, run_federated)]
    add_handlers(parsers, add_token_argument)

    key = sub.add_parser("key", help="make a consumer client key (Ed25519, PEM, mode 0600)")
    key.add_argument("--out", type=Path, required=True, help="where to write the key (not overwritten)")
    key.set_defaults(handler=run_key)
    assertion = sub.add_parser("assertion", help="as a consumer: get the home node's assertion for a partner")
    assertion.add_argument("--partner", required=True, help="the partner node to use in your own name")
    assertion.add_argument("--key", type=Path, required=True, help="your client key (`accounts key`)")
    assertion.add_argument("--out", type=Path, required=True, help="where to write the assertion (JSON)")
    add_config_argument(assertion)
    add_token_argument(assertion)
    assertion.set_defaults(handler=run_assertion)
    remote = sub.add_parser("call", help="as a consumer: GET a partner's API route with an assertion")
    remote.add_argument("--assertion", type=Path, required=True)
    remote.add_argument("--key", type=Path, required=True)
    remote.add_argument("url", help="the partner's URL, e.g. http://127.0.0.1:8601/api/v1/tasks/ID/logs")
    remote.set_defaults(handler=run_call)


def _path(consumer: str, action: str = "") -> str:
    return f"/api/v1/accounts/{quote(consumer, safe='')}" + (f"/{action}" if action else "")


def _rows(rows: list[dict[str, Any]], title: str) -> None:
    print_table(
        title,
        ["consumer", "status", "verification", "verified by", "balance"],
        [
            [r["id"], r["status"], r["verification"]["status"], r["verification"]["by"] or "", r["balance"]]
            for r in rows
        ],
    )


def _one(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(row)
        return
    fields = [
        ("consumer", row["id"]),
        ("status", row["status"]),
        ("verification", row["verification"]["status"]),
        ("verified by", row["verification"]["by"] or ""),
        ("balance", row["balance"]),
        ("held", row["held"]),
    ]
    if "partners_told" in row:
        fields.append(
            ("partners told", ", ".join(f"{k}: {v}" for k, v in row["partners_told"].items()) or "none")
        )
    print_fields(fields)


def run_list(args: argparse.Namespace) -> int:
    """Handler of `cpnode accounts list`."""
    settings = settings_from_args(args)
    rows = call(settings, "GET", "/api/v1/accounts", token=consumer_token(args))["accounts"]
    if args.json:
        print_json(rows)
    else:
        _rows(rows, f"accounts at {settings.node.name}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Handler of `cpnode accounts show`."""
    settings = settings_from_args(args)
    _one(call(settings, "GET", _path(args.consumer), token=consumer_token(args)), args.json)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Handler of `cpnode accounts verify`."""
    settings = settings_from_args(args)
    body = {"verdict": args.verdict, "note": args.note}
    _one(call(settings, "POST", _path(args.consumer, "verify"), body, token=consumer_token(args)), args.json)
    return 0


def run_action(args: argparse.Namespace) -> int:
    """Handler of `cpnode accounts suspend|reinstate|close`."""
    settings = settings_from_args(args)
    body = {"reason": args.reason}
    _one(
        call(settings, "POST", _path(args.consumer, args.action), body, token=consumer_token(args)), args.json
    )
    return 0


def run_events(args: argparse.Namespace) -> int:
    """Handler of `cpnode accounts events`."""
    settings = settings_from_args(args)
    query = {"after": args.after, "limit": args.limit}
    query.update({k: v for k, v in (("kind", args.kind), ("subject", args.subject)) if v})
    rows = call(settings, "GET", f"/api/v1/account-events?{urlencode(query)}", token=consumer_token(args))[
        "events"
    ]
    if args.json:
        print_json(rows)
        return 0
    print_table(
        "account events",
        ["seq", "time", "actor", "account", "action", "detail"],
        [
            [e["seq"], format_ms(e["ts_ms"]), e["actor"], e["subject"], e["action"], _detail(e["detail"])]
            for e in rows
        ],
    )
    return 0


def _detail(detail: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in detail.items() if v not in ("", None))


def run_federated(args: argparse.Namespace) -> int:
    """Handler of `cpnode accounts federated`."""
    settings = settings_from_args(args)
    query = f"?{urlencode({'issuer': args.issuer})}" if args.issuer else ""
    rows = call(settings, "GET", f"/api/v1/federated-accounts{query}", token=consumer_token(args))["accounts"]
    if args.json:
        print_json(rows)
        return 0
    print_table(
        "partners' consumers",
        ["account", "status", "verification", "last seen", "checked"],
        [
            [
                r["id"],
                r["status"],
                r["verification"]["status"],
                format_ms(r["last_seen_ms"]),
                format_ms(r["checked_ms"]),
            ]
            for r in rows
        ],
    )
    return 0


def _read_key(path: Path) -> Any:
    from federation.errors import KeyFormatError
    from federation.keys import load_private_key_pem

    try:
        return load_private_key_pem(path.read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read the key file {path}: {exc.strerror}", 2) from None
    except KeyFormatError as exc:
        raise CliError(f"the key file {path}: {exc}", 2) from None


def run_key(args: argparse.Namespace) -> int:
    """Handler of `cpnode accounts key`."""
    from federation.keys import generate_signing_key, private_key_pem, public_key_text

    key = generate_signing_key()
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CliError(f"{args.out} exists; not overwriting a key", 2) from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_key_pem(key))
    print_fields([("key file", str(args.out)), ("public key", public_key_text(key.verify_key))])
    return 0


def run_assertion(args: argparse.Namespace) -> int:
    """Handler of `cpnode accounts assertion`."""
    from federation.keys import public_key_text

    settings = settings_from_args(args)
    token = consumer_token(args)
    if token is None:
        raise CliError("an assertion is a consumer's: give --token-file with the consumer's token", 2)
    key = _read_key(args.key)
    body = {"audience": args.partner, "public_key": public_key_text(key.verify_key)}
    document = call(settings, "POST", "/api/v1/account-assertions", body, token=token)
    args.out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print_fields(
        [
            ("assertion", str(args.out)),
            ("for", document["audience"]),
            ("expires", format_ts(document["expires_ts"])),
        ]
    )
    return 0


def run_call(args: argparse.Namespace) -> int:
    """Handler of `cpnode accounts call`."""
    from federation.assertions import present

    try:
        assertion = json.loads(args.assertion.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read the assertion {args.assertion}: {exc}", 2) from None
    headers = present(assertion, _read_key(args.key), "GET", args.url, b"", int(time.time()))
    request = urllib.request.Request(args.url, headers=headers, method="GET")  # noqa: S310 - the operator's URL
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the operator's URL
            print_json(json.loads(response.read() or b"null"))
    except urllib.error.HTTPError as exc:
        raise CliError(
            f"{args.url} answered {exc.code}: {exc.read().decode('utf-8', 'replace')[:500]}"
        ) from None
    except urllib.error.URLError as exc:
        raise CliError(f"cannot reach {args.url}: {exc.reason}") from None
    return 0
