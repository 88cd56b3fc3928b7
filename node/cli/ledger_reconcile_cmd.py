"""`cpnode ledger summary|reconcile|discrepancies|correct`: reconciling trades with a partner node.

Each node signs its per-window summary of the trades it shares with a partner (a federation signed
document). `summary` writes ours to a file; `reconcile` fetches the partner's signed summary over
the peer API (`POST /fed/v1/ledger/summary`), or takes it from a file with `--their`, checks its
signature against the partner's pinned keys (or `--their-key`), diffs it with ours by trade id and
records the discrepancies; `correct` settles one with a new correcting transfer.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.cli.common import (
    CliError,
    add_handlers,
    print_json,
    print_table,
    settings_from_args,
)
from node.money import format_money
from node.times import format_ms

# Loaded by the handlers that use them, so this command's `--help` stays light.
if TYPE_CHECKING:
    from nacl.signing import VerifyKey

    import ledger
    from node.config import Settings

DAY_MS = 24 * 3600 * 1000


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the reconciliation commands under `cpnode ledger`."""
    summary = sub.add_parser("summary", help="write our signed summary of the trades with a partner")
    _window_arguments(summary)
    summary.add_argument("--out", type=Path, required=True, help="file to write the signed summary to")
    reconcile = sub.add_parser(
        "reconcile", help="fetch the partner's signed summary, diff it with ours and record discrepancies"
    )
    _window_arguments(reconcile)
    reconcile.add_argument(
        "--their", type=Path, help="the partner's signed summary from a file, instead of fetching it"
    )
    reconcile.add_argument("--their-key", help="the partner's public key, if it is not pinned as a partner")
    reconcile.add_argument("--report", type=Path, help="also write the report to this file")
    listing = sub.add_parser("discrepancies", help="recorded discrepancies")
    listing.add_argument("--partner")
    listing.add_argument("--open", action="store_true", help="only those not corrected yet")
    correct = sub.add_parser("correct", help="settle a discrepancy with a correcting transfer")
    correct.add_argument("discrepancy", type=int, metavar="DISCREPANCY_ID")
    correct.add_argument("--id", required=True, help="the correcting transfer's id")
    correct.add_argument("--from", dest="debit", required=True)
    correct.add_argument("--to", dest="credit", required=True)
    correct.add_argument("--amount", type=int, required=True)
    correct.add_argument("--currency", required=True)
    add_handlers(
        [
            (summary, run_summary),
            (reconcile, run_reconcile),
            (listing, run_list),
            (correct, run_correct),
        ]
    )


def _window_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--partner", required=True, help="the partner node's name")
    parser.add_argument("--window", help="FROM/TO (ISO 8601 or epoch ms); default: yesterday, UTC")
    parser.add_argument(
        "--margin-s", type=int, default=300, help="clock skew tolerated at the window's edges"
    )


def window_from_args(args: argparse.Namespace) -> ledger.Window:
    """The reconciliation window named on the command line (yesterday UTC by default)."""
    import ledger
    from node.cli.ledger_common import parse_time_ms

    if args.window is None:
        today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        end = int(today.timestamp() * 1000)
        return ledger.Window(end - DAY_MS, end)
    start, slash, end_text = args.window.partition("/")
    if not slash:
        raise CliError("--window must be FROM/TO", 2)
    try:
        return ledger.Window(parse_time_ms(start), parse_time_ms(end_text))
    except ledger.ReconcileError as exc:
        raise CliError(f"--window: {exc}", 2) from None


def partner_keys(engine: Any, partner: str, given: str | None) -> dict[str, VerifyKey]:
    """The partner's keys by key id: `--their-key`, else its pinned key and the keys it published."""
    from federation import store
    from federation.keys import key_id, parse_public_key
    from node.peering.settings import check_public_key

    if given is not None:
        try:
            key = parse_public_key(check_public_key(given))
        except ValueError as exc:
            raise CliError(f"--their-key: {exc}", 2) from None
        return {key_id(key): key}
    pinned = store.get_partner(engine, partner)
    if pinned is None:
        raise CliError(f"{partner!r} is not a pinned partner; pass --their-key", 2)
    keys = {key_id(parse_public_key(pinned.public_key)): parse_public_key(pinned.public_key)}
    records, _ = store.peer_keys(engine, partner)
    keys.update({kid: record.verify_key() for kid, record in records.items()})
    return keys


def run_summary(args: argparse.Namespace) -> int:
    """Handler of `cpnode ledger summary`."""
    import ledger
    from federation import canonical
    from federation.documents import sign_document
    from node.cli.ledger_common import ledger_database, node_key

    settings = settings_from_args(args)
    _, key = node_key(settings)
    window = window_from_args(args)
    with ledger_database(settings) as engine:
        document = ledger.summary_for_partner(
            engine, settings.node.name, args.partner, window, margin_ms=args.margin_s * 1000
        )
    signed = sign_document(document, key)
    args.out.write_bytes(canonical.encode(signed) + b"\n")
    if args.json:
        print_json({"out": str(args.out), "trades": document["count"], "window": document["window"]})
    else:
        sys.stdout.write(f"{document['count']} trade(s) with {args.partner} written to {args.out}\n")
    return 0


async def _fetch_theirs(
    settings: Settings, engine: Any, partner_name: str, window: ledger.Window, margin_ms: int
) -> Any:
    """The partner's signed summary over the peer API (signature checked against its trusted keys)."""
    from federation import store
    from federation.errors import FederationError
    from federation.service import FederationService
    from node.identity import IdentityError, load_identity
    from node.peering.component import static_keys
    from node.trading.errors import TradingError
    from node.trading.peer import fetch_summary

    try:
        identity = load_identity(settings)
    except IdentityError as exc:
        raise CliError(str(exc)) from None
    partner = store.get_partner(engine, partner_name)
    if partner is None:
        raise CliError(f"{partner_name!r} is not a pinned partner", 2)
    service = FederationService(
        static_keys(identity), engine, settings.federation.protocol_settings(), lambda: ""
    )
    try:
        return await fetch_summary(service, partner, window, margin_ms, settings.trading.trade_timeout_s)
    except (TradingError, FederationError) as exc:
        raise CliError(f"cannot get {partner_name}'s summary: {exc}") from None
    finally:
        await service.close()


def _read_theirs(args: argparse.Namespace, engine: Any) -> Any:
    """The partner's signed summary from `--their`, its signature checked."""
    from federation import canonical
    from federation.documents import verify_document
    from federation.errors import FederationError

    try:
        theirs = canonical.decode(args.their.read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read {args.their}: {exc.strerror}", 2) from None
    except FederationError as exc:
        raise CliError(f"{args.their}: {exc}") from None
    if not isinstance(theirs, dict):
        raise CliError(f"{args.their}: not a signed summary document")
    keys = partner_keys(engine, args.partner, args.their_key)
    try:
        verify_document(theirs, args.partner, keys)
    except FederationError as exc:
        raise CliError(f"{args.their}: {exc}") from None
    return theirs


def run_reconcile(args: argparse.Namespace) -> int:
    """Handler of `cpnode ledger reconcile`: 0 when both ledgers agree, 1 when discrepancies were found."""
    import ledger
    from node.cli.ledger_common import ledger_database

    settings = settings_from_args(args)
    window = window_from_args(args)
    with ledger_database(settings) as engine:
        if args.their is not None:
            theirs = _read_theirs(args, engine)
        else:
            import asyncio  # only a reconcile that fetches over the network runs a loop

            theirs = asyncio.run(_fetch_theirs(settings, engine, args.partner, window, args.margin_s * 1000))
        try:
            outcome = ledger.reconcile_with_partner(
                engine,
                settings.node.name,
                args.partner,
                window,
                lambda _ours: theirs,
                margin_ms=args.margin_s * 1000,
                max_skew_ms=args.margin_s * 1000,
            )
        except ledger.ReconcileError as exc:
            source = args.their or f"{args.partner}'s summary"
            raise CliError(f"{source}: {exc}") from None
    report = ledger.render_report(
        ledger.parse_summary(outcome.ours_document),
        ledger.parse_summary(outcome.theirs_document),
        outcome.discrepancies,
        money=format_money,
        moment=format_ms,
    )
    if args.report is not None:
        args.report.write_text(report, encoding="utf-8")
    if args.json:
        print_json(outcome.to_dict())
    else:
        sys.stdout.write(report)
    return 1 if outcome.discrepancies else 0


def run_list(args: argparse.Namespace) -> int:
    """Handler of `cpnode ledger discrepancies`."""
    import ledger
    from node.cli.ledger_common import ledger_database

    with ledger_database(settings_from_args(args)) as engine:
        found = ledger.list_discrepancies(engine, partner=args.partner, open_only=args.open)
    if args.json:
        print_json([d.to_dict() for d in found])
    else:
        rows = [
            [d.id, d.partner, d.trade_id, d.kind, format_ms(d.window.from_ms), d.correction_id or ""]
            for d in found
        ]
        print_table("discrepancies", ["id", "partner", "trade", "kind", "window from", "corrected by"], rows)
    return 0


def run_correct(args: argparse.Namespace) -> int:
    """Handler of `cpnode ledger correct`."""
    import ledger
    from node.cli.ledger_common import ledger_database

    with ledger_database(settings_from_args(args)) as engine:
        found = {d.id: d for d in ledger.list_discrepancies(engine)}.get(args.discrepancy)
        if found is None:
            raise CliError(f"no discrepancy {args.discrepancy}")
        request = ledger.TransferRequest(
            args.id,
            ledger.TransferKind.SINGLE,
            args.debit,
            args.credit,
            args.currency,
            args.amount,
            code=ledger.CORRECTION_CODE,
            trade_id=found.trade_id,
            partner=found.partner,
        )
        result = ledger.correct_discrepancy(engine, args.discrepancy, request)
    if args.json:
        print_json(result.to_dict())
    else:
        sys.stdout.write(
            f"correction {result.id}: {result.status}{f' ({result.message})' if result.message else ''}\n"
        )
    return 0 if result.ok else 1
