"""`cpnode statements issue|list|show|export|verify`: billing statements of consumer and partner
accounts for a closed UTC month.

`issue`, `list`, `show` and `export` open the configured database (like `cpnode ledger`) and sign
with the node's key; `verify` needs only the statement file, an audit bundle of the same month
(`cpnode ledger export --period YYYY-MM`) and the node's public key.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.cli.commands import add_command
from node.cli.common import (
    CliError,
    add_handler,
    print_fields,
    print_json,
    print_table,
    settings_from_args,
)
from node.money import format_money

if TYPE_CHECKING:
    from node.statements.store import Statement

FORMATS = ("json", "csv", "html")


def _who(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--consumer", metavar="ID", help="only this consumer's statement")
    group.add_argument("--partner", metavar="NAME", help="only this partner node's statement")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode statements`."""
    parser = add_command(
        commands,
        "statements",
        description="Signed monthly statements: per consumer and partner account, for a closed UTC month, "
        "numbered without gaps and never changed once issued.",
    )
    sub = parser.add_subparsers(title="statements commands", metavar="ACTION", required=True)
    issue = sub.add_parser(
        "issue",
        help="issue the statements of a closed month (all consumers and partners, or one)",
        description="Issue the statement of a closed UTC month for every consumer and partner account, or "
        "for the one named. An account's missing earlier months are issued first, so numbers have no gaps; "
        "a statement already issued is returned as stored.",
    )
    issue.add_argument("--period", required=True, metavar="YYYY-MM", help="the UTC month, e.g. 2026-11")
    _who(issue)
    add_handler(issue, run_issue)
    listing = sub.add_parser("list", help="issued statements, newest first")
    listing.add_argument("--period", metavar="YYYY-MM", help="only this month")
    _who(listing)
    add_handler(listing, run_list)
    show = sub.add_parser("show", help="one statement with its lines")
    show.add_argument("statement", metavar="ID", help="ACCOUNT:NUMBER, as `statements list` shows it")
    add_handler(show, run_show)
    export = sub.add_parser(
        "export", help="write a statement (or a month's) as JSON (the signed document), CSV and HTML"
    )
    export.add_argument(
        "statement", metavar="ID", nargs="?", help="ACCOUNT:NUMBER, as `statements list` shows it"
    )
    export.add_argument("--period", metavar="YYYY-MM", help="instead of an ID: every statement of this month")
    export.add_argument(
        "--out", type=Path, required=True, help="directory to write into (created if missing)"
    )
    export.add_argument(
        "--format", choices=[*FORMATS, "all"], default="all", help="which form to write (default: all three)"
    )
    add_handler(export, run_export)
    verify = sub.add_parser(
        "verify",
        help="check a statement against the audit bundle of its month, offline",
        description="Check every line, the balances, the signature and the numbering of a statement "
        "against an audit bundle of the same month (`cpnode ledger export --period YYYY-MM`), with the "
        "node's public key only. Exit 0 verified, 1 not (naming the line or file), 2 bad arguments.",
    )
    verify.add_argument("file", type=Path, metavar="STATEMENT", help="the statement's JSON file")
    verify.add_argument("--bundle", type=Path, required=True, metavar="DIR", help="the month's audit bundle")
    verify.add_argument("--key", required=True, help="the node's public key, ed25519:<base64url>")
    verify.add_argument(
        "--previous", type=Path, metavar="PREV", help="the account's previous statement: check the chain too"
    )
    add_handler(verify, run_verify, config=False)


def _account(args: argparse.Namespace) -> str | None:
    if args.consumer is not None:
        return f"consumer:{args.consumer}"
    if args.partner is not None:
        return f"partner:{args.partner}"
    return None


def _rows(statements: list[Statement]) -> list[list[Any]]:
    return [
        [
            s.id,
            s.period,
            s.kind,
            s.lines,
            format_money(s.opening_balance, s.currency),
            format_money(s.closing_balance, s.currency),
        ]
        for s in statements
    ]


COLUMNS = ["statement", "period", "kind", "lines", "opening", "closing"]


def run_issue(args: argparse.Namespace) -> int:
    """Handler of `cpnode statements issue`."""
    import ledger
    from node.cli.ledger_common import ledger_database, node_key
    from node.errors import CodedError
    from node.statements import store

    settings = settings_from_args(args)
    origin, key = node_key(settings)
    with ledger_database(settings) as engine:
        try:
            issued = store.issue(
                engine, key, origin, args.period, consumer=args.consumer, partner=args.partner
            )
        except (CodedError, ledger.RequestError) as exc:
            raise CliError(str(exc)) from None
    if args.json:
        print_json([{**s.summary(), "issued_now": created} for s, created in issued])
    else:
        print_table(
            f"statements for {args.period}",
            [*COLUMNS, "issued"],
            [
                [*row, "now" if created else "before"]
                for row, (_, created) in zip(_rows([s for s, _ in issued]), issued, strict=True)
            ],
        )
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Handler of `cpnode statements list`."""
    from node.cli.ledger_common import ledger_database
    from node.statements import store

    with ledger_database(settings_from_args(args)) as engine:
        statements = store.list_statements(engine, account=_account(args), period=args.period)
    if args.json:
        print_json([s.summary() for s in statements])
    else:
        print_table("statements", COLUMNS, _rows(statements))
    return 0


def _get(args: argparse.Namespace) -> Statement:
    from node.cli.ledger_common import ledger_database
    from node.statements import store
    from node.statements.errors import UnknownStatement

    with ledger_database(settings_from_args(args)) as engine:
        try:
            return store.get_statement(engine, args.statement)
        except UnknownStatement as exc:
            raise CliError(str(exc)) from None


def run_show(args: argparse.Namespace) -> int:
    """Handler of `cpnode statements show`."""
    from node.statements.render import line_rows

    statement = _get(args)
    doc = statement.doc()
    if args.json:
        print_json(doc)
        return 0
    money = doc["currency"]
    print_fields(
        [
            ("statement", statement.id),
            ("holder", f"{doc['holder']['kind']} {doc['holder']['name']}"),
            ("period", doc["period"]),
            ("opening balance", format_money(doc["opening_balance"], money)),
            ("closing balance", format_money(doc["closing_balance"], money)),
            ("held at close", format_money(doc["held_at_close"], money)),
            ("previous", doc["previous_sha256"] or "none (the account's first)"),
        ]
    )
    print_table("lines", ["#", "time (UTC)", "kind", "transfer", "amount", "balance"], line_rows(doc))
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Handler of `cpnode statements export`."""
    from node.cli.ledger_common import ledger_database
    from node.statements import store
    from node.statements.render import file_name, render

    if (args.statement is None) == (args.period is None):
        raise CliError("give a statement ID or --period YYYY-MM (every statement of the month)", 2)
    if args.period is None:
        statements = [_get(args)]
    else:
        with ledger_database(settings_from_args(args)) as engine:
            statements = store.list_statements(engine, period=args.period, limit=10**9, documents=True)
    formats = FORMATS if args.format == "all" else (args.format,)
    written = []
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for statement in statements:
            for form in formats:
                path = args.out / file_name(statement.id, form)
                path.write_bytes(render(statement.document or b"", form))
                written.append(str(path))
    except OSError as exc:
        raise CliError(f"cannot write into {args.out}: {exc.strerror}") from None
    if args.json:
        print_json({"statements": [s.id for s in statements], "files": written})
    else:
        print_fields([("statements", len(statements)), *(("wrote", path) for path in written)])
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Handler of `cpnode statements verify` (no config, node, database or network)."""
    import ledger
    from node.cli.ledger_common import key_argument, verification_failed

    key = key_argument(args.key)
    if not args.bundle.is_dir():
        raise CliError(f"{args.bundle} is not a directory", 2)
    try:
        data = args.file.read_bytes()
        previous = None if args.previous is None else args.previous.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {exc.filename}: {exc.strerror}", 2) from None
    try:
        report = ledger.verify_statement(data, args.bundle, key, previous)
    except ledger.AuditError as exc:
        return verification_failed(exc, args.json, where="where")
    if args.json:
        print_json({"ok": True, **report.to_dict()})
    else:
        print_fields([("verified", "OK"), *report.to_dict().items()])
    return 0
