"""`cpnode ledger …`: accounts, transfers, balances, checkpoints, audit export and offline verification.

Every command but `verify` opens the configured database (migrating it first); `verify` needs only
a bundle directory and the node's public key, so an auditor runs it without a node, a config, a
database or a network. Reconciliation commands live in `node.cli.ledger_reconcile_cmd`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.cli import ledger_reconcile_cmd
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
from node.times import format_ms

# Loaded by the handlers that use them, so this command's `--help` stays light.
if TYPE_CHECKING:
    import ledger


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `cpnode ledger`."""
    parser = add_command(
        commands,
        "ledger",
        description="The node's double-entry settlement ledger.",
    )
    sub = parser.add_subparsers(title="ledger commands", metavar="COMMAND", required=True)
    _register_accounts(sub)
    _register_records(sub)
    ledger_reconcile_cmd.register(sub)


def _register_accounts(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`cpnode ledger accounts list|create|close`."""
    import ledger

    accounts = sub.add_parser("accounts", help="list, create or close accounts")
    accounts_sub = accounts.add_subparsers(title="accounts commands", metavar="ACTION", required=True)
    add_handler(accounts_sub.add_parser("list", help="every account with its balances"), run_accounts_list)
    create = accounts_sub.add_parser("create", help="create an account (idempotent)")
    create.add_argument("id", metavar="ID")
    create.add_argument("--currency", required=True, help="e.g. CNY")
    create.add_argument("--kind", required=True, choices=[k.value for k in ledger.AccountKind])
    create.add_argument(
        "--no-overdraft", action="store_true", help="debits (pending too) may not exceed credits"
    )
    create.add_argument(
        "--credit-limit", action="store_true", help="credits (pending too) may not exceed debits"
    )
    create.add_argument("--partner", help="the partner node's name (kind partner)")
    add_handler(create, run_accounts_create)
    close = accounts_sub.add_parser("close", help="close an account that has no holds")
    close.add_argument("id", metavar="ID")
    add_handler(close, run_accounts_close)


def _register_records(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`cpnode ledger transfer|balances|show|checkpoint|sweep|audit|export|verify`."""
    transfer = sub.add_parser("transfer", help="record one transfer, hold, post or void")
    transfer.add_argument("--id", required=True, help="client-chosen id: a retry with the same id is safe")
    transfer.add_argument("--kind", default="single", choices=["single", "pending", "post", "void"])
    transfer.add_argument("--from", dest="debit", help="debit account")
    transfer.add_argument("--to", dest="credit", help="credit account")
    transfer.add_argument("--amount", type=int, help="integer minor units")
    transfer.add_argument("--currency")
    transfer.add_argument("--pending-id", help="the hold a post or void resolves")
    transfer.add_argument("--timeout-s", type=int, help="a hold's deadline, in seconds")
    transfer.add_argument("--code", type=int, default=0)
    for link in ("order-id", "trade-id", "partner", "trade-digest"):
        transfer.add_argument(f"--{link}")
    add_handler(transfer, run_transfer)

    balances = sub.add_parser("balances", help="balances of every (or the named) account")
    balances.add_argument("--account", action="append", help="only this account (repeatable)")
    add_handler(balances, run_balances)
    show = sub.add_parser("show", help="one transfer; with --proof its inclusion in the latest checkpoint")
    show.add_argument("transfer_id", metavar="TRANSFER_ID")
    show.add_argument("--proof", action="store_true")
    add_handler(show, run_show)
    add_handler(sub.add_parser("checkpoint", help="sign a checkpoint of the log now"), run_checkpoint)
    add_handler(sub.add_parser("sweep", help="expire holds whose deadline has passed, now"), run_sweep)
    add_handler(
        sub.add_parser("audit", help="recompute every checkpoint from the stored transfers"), run_audit
    )

    export = sub.add_parser("export", help="write a signed audit bundle")
    export.add_argument("--out", type=Path, required=True, help="a new (or empty) directory")
    export.add_argument("--since", type=Path, help="the checkpoint file of the previous export")
    export.add_argument("--from", dest="from_time", help="first transfer time (ISO 8601 or epoch ms)")
    export.add_argument("--to", dest="to_time", help="end time, exclusive")
    export.add_argument(
        "--period",
        metavar="YYYY-MM",
        help="the transfers of one UTC month (the bundle a statement of that month verifies against); "
        "instead of --from/--to",
    )
    add_handler(export, run_export)
    verify = sub.add_parser("verify", help="verify an audit bundle offline with the node's public key")
    verify.add_argument("directory", type=Path, metavar="DIR")
    verify.add_argument("--key", required=True, help="the node's public key, ed25519:<base64url>")
    verify.add_argument(
        "--previous",
        type=Path,
        metavar="PREV_DIR",
        help="the bundle this one was exported --since: verify both and that this one opens exactly "
        "where that one closed (balances, open holds, accounts, no gap)",
    )
    add_handler(verify, run_verify, config=False)


# Fields of a transfer shown as money (with its currency) and as UTC times (epoch ms).
_TRANSFER_MONEY = ("amount", "pending_amount")
_TRANSFER_TIMES_MS = {"ts_ms": "time", "expires_ms": "expires"}


def transfer_fields(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """A transfer's fields for people: amounts in major units with the currency, times in UTC."""
    shown: list[tuple[str, Any]] = []
    for key, value in data.items():
        if key == "proof":
            continue
        if key in _TRANSFER_MONEY and value is not None:
            shown.append((key, format_money(value, data["currency"])))
        elif key in _TRANSFER_TIMES_MS:
            shown.append((_TRANSFER_TIMES_MS[key], format_ms(value)))
        else:
            shown.append((key, value))
    return shown


def _print_accounts(title: str, accounts: list[ledger.Account]) -> None:
    closed = any(a.closed_seq is not None for a in accounts)
    columns = ["account", "kind", "dr pending", "dr posted", "cr pending", "cr posted", "net posted"]
    rows = []
    for a in accounts:
        b = a.balance
        currency = a.spec.currency
        row: list[Any] = [
            a.id,
            a.spec.kind,
            *(format_money(amount, currency) for amount in b.as_tuple()),
            format_money(b.credits_posted - b.debits_posted, currency),
        ]
        if closed:
            row.append("closed" if a.closed_seq is not None else "")
        rows.append(row)
    print_table(title, [*columns, "state"] if closed else columns, rows)


def run_accounts_list(args: argparse.Namespace) -> int:
    """Handler of `cpnode ledger accounts list`."""
    import ledger
    from node.cli.ledger_common import ledger_database

    with ledger_database(settings_from_args(args)) as engine:
        accounts = ledger.list_accounts(engine)
    if args.json:
        print_json([a.to_dict() for a in accounts])
    else:
        _print_accounts("accounts", accounts)
    return 0


def run_accounts_create(args: argparse.Namespace) -> int:
    """Handler of `cpnode ledger accounts create`."""
    import ledger
    from node.cli.ledger_common import ledger_database

    spec = ledger.AccountSpec(
        args.id,
        args.currency,
        ledger.AccountKind(args.kind),
        debits_must_not_exceed_credits=args.no_overdraft,
        credits_must_not_exceed_debits=args.credit_limit,
        partner=args.partner,
    )
    with ledger_database(settings_from_args(args)) as engine:
        [result] = ledger.create_accounts(engine, [spec])
    if args.json:
        print_json(result.to_dict())
    else:
        print_fields([("account", result.id), ("status", result.status), ("reason", result.message or None)])
    return 0 if result.ok else 1


def run_accounts_close(args: argparse.Namespace) -> int:
    """Handler of `cpnode ledger accounts close`."""
    import ledger
    from node.cli.ledger_common import ledger_database

    with ledger_database(settings_from_args(args)) as engine:
        account = ledger.close_account(engine, args.id)
    if args.json:
        print_json(account.to_dict())
    else:
        print_fields([("account", account.id), ("closed before seq", account.closed_seq)])
    return 0


def run_transfer(args: argparse.Namespace) -> int:
    """Handler of `cpnode ledger transfer`."""
    import ledger
    from node.cli.ledger_common import ledger_database

    request = ledger.TransferRequest(
        args.id,
        ledger.TransferKind(args.kind),
        debit_account=args.debit,
        credit_account=args.credit,
        currency=args.currency,
        amount=args.amount,
        pending_id=args.pending_id,
        timeout_s=args.timeout_s,
        code=args.code,
        order_id=args.order_id,
        trade_id=args.trade_id,
        partner=args.partner,
        trade_digest=args.trade_digest,
    )
    with ledger_database(settings_from_args(args)) as engine:
        [result] = ledger.submit(engine, [request])
    if args.json:
        print_json(result.to_dict())
    else:
        print_fields(
            [("transfer", result.id), ("status", result.status), ("field", result.field), ("seq", result.seq)]
        )
    return 0 if result.ok else 1


def run_balances(args: argparse.Namespace) -> int:
    """Handler of `cpnode ledger balances`."""
    import ledger
    from node.cli.ledger_common import ledger_database

    with ledger_database(settings_from_args(args)) as engine:
        accounts = ledger.list_accounts(engine, args.account)
    missing = sorted(set(args.account or ()) - {a.id for a in accounts})
    if missing:
        raise CliError(f"no such account: {', '.join(missing)}")
    if args.json:
        print_json([a.to_dict() for a in accounts])
    else:
        _print_accounts("balances", accounts)
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Handler of `cpnode ledger show`."""
    import ledger
    from ledger import bundle, merkle
    from node.cli.ledger_common import ledger_database

    with ledger_database(settings_from_args(args)) as engine:
        transfer = ledger.get_transfer(engine, args.transfer_id)
        if transfer is None:
            failure = ledger.get_failure(engine, args.transfer_id)
            detail = f" (it failed: {failure[0]})" if failure else ""
            raise CliError(f"no transfer {args.transfer_id!r}{detail}")
        data: dict[str, Any] = transfer.to_dict()
        if args.proof:
            checkpoint = ledger.current_checkpoint(engine)
            if checkpoint is None or transfer.seq >= checkpoint.size:
                raise CliError("the transfer is not in a checkpoint yet; run `cpnode ledger checkpoint`")
            proof = ledger.prove_inclusion(engine, transfer.seq, checkpoint.size)
            leaf = merkle.leaf_hash(transfer.leaf_data())
            merkle.verify_inclusion(transfer.seq, checkpoint.size, leaf, proof, checkpoint.checkpoint.root)
            data["proof"] = {
                "leaf": bundle.b64(leaf),
                "tree_size": checkpoint.size,
                "hashes": [bundle.b64(h) for h in proof],
                "checkpoint": checkpoint.note,
            }
    if args.json:
        print_json(data)
    else:
        print_fields(transfer_fields(data))
        if "proof" in data:
            print_fields([("tree size", data["proof"]["tree_size"]), ("leaf", data["proof"]["leaf"])])
            for index, digest in enumerate(data["proof"]["hashes"]):
                print_fields([(f"proof[{index}]", digest)])
    return 0


def run_checkpoint(args: argparse.Namespace) -> int:
    """Handler of `cpnode ledger checkpoint`."""
    import ledger
    from ledger import bundle
    from node.cli.ledger_common import ledger_database, node_key

    settings = settings_from_args(args)
    origin, key = node_key(settings)
    with ledger_database(settings) as engine:
        stored = ledger.make_checkpoint(engine, key, origin, force=True)
    assert stored is not None
    if args.json:
        print_json({"size": stored.size, "root": bundle.b64(stored.checkpoint.root), "note": stored.note})
    else:
        sys.stdout.write(stored.note)
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    """Handler of `cpnode ledger sweep`."""
    import ledger
    from node.cli.ledger_common import ledger_database

    with ledger_database(settings_from_args(args)) as engine:
        expired = ledger.expire_due(engine)
    if args.json:
        print_json([t.to_dict() for t in expired])
    else:
        print_fields([("holds expired", len(expired))])
    return 0


def run_audit(args: argparse.Namespace) -> int:
    """Handler of `cpnode ledger audit`."""
    import ledger
    from node.cli.ledger_common import ledger_database

    with ledger_database(settings_from_args(args)) as engine:
        problems = ledger.audit_log(engine)
    if args.json:
        print_json({"ok": not problems, "problems": problems})
    else:
        for line in problems or ["every checkpoint matches the stored transfers and its predecessor"]:
            sys.stdout.write(line + "\n")
    return 1 if problems else 0


def run_export(args: argparse.Namespace) -> int:
    """Handler of `cpnode ledger export`."""
    import ledger
    from node.cli.ledger_common import ledger_database, node_key, parse_time_ms

    settings = settings_from_args(args)
    origin, key = node_key(settings)
    since = None
    if args.since is not None:
        try:
            since = args.since.read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {args.since}: {exc.strerror}", 2) from None
    from_ms = None if args.from_time is None else parse_time_ms(args.from_time)
    to_ms = None if args.to_time is None else parse_time_ms(args.to_time)
    if args.period is not None:
        from ledger.statement import period_window

        if from_ms is not None or to_ms is not None:
            raise CliError("--period replaces --from and --to; give one or the other", 2)
        try:
            from_ms, to_ms = period_window(args.period)
        except ledger.RequestError as exc:
            raise CliError(f"--period: {exc}", 2) from None
    if from_ms is not None and to_ms is not None and from_ms >= to_ms:
        raise CliError("--from must be before --to", 2)
    with ledger_database(settings) as engine:
        result = ledger.export_bundle(
            engine, args.out, key, origin, since_note=since, from_ms=from_ms, to_ms=to_ms
        )
    if args.json:
        print_json(result.to_dict())
    else:
        print_fields(
            [
                ("bundle", result.directory),
                (
                    "transfers",
                    f"seq {result.first_seq} to {result.end_seq - 1}"
                    if result.end_seq > result.first_seq
                    else "none",
                ),
                ("tree size", result.tree_size),
            ]
        )
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Handler of `cpnode ledger verify` (no config, node, database or network)."""
    import ledger
    from node.cli.ledger_common import key_argument, verification_failed

    key = key_argument(args.key)
    for directory in (args.directory, args.previous):
        if directory is not None and not directory.is_dir():
            raise CliError(f"{directory} is not a directory", 2)
    try:
        if args.previous is None:
            report = ledger.verify_bundle(args.directory, key)
        else:
            report = ledger.verify_chain(args.previous, args.directory, key)
    except ledger.AuditError as exc:
        return verification_failed(exc, args.json)
    if args.json:
        print_json({"ok": True, **report.to_dict()})
    else:
        shown = report.to_dict()
        shown["checkpoint_time"] = format_ms(shown.pop("checkpoint_time_ms"))
        print_fields([("verified", "OK"), *shown.items()])
    return 0
