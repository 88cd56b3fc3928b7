"""Checking a statement against an audit bundle of the same period, offline, with the node's key.

Order of checks (the first failure is reported as an AuditError; a line's failure names the line):
1. the file is a statement; the bundle verifies on its own (`ledger.verify`), and covers exactly
   the statement's period and seq range, from the same origin;
2. the account is in the bundle with the statement's currency and kind;
3. the opening balance is the bundle's opening balance of the account;
4. every line equals the line recomputed from the bundle's transfers (same transfer, kind, amount,
   running balance …); a line missing or added is named too;
5. the totals and the closing balance follow from the lines, and the closing balance and the money
   held by open holds at the end are the bundle's (`balances.csv`);
6. the signature, then the numbering: number 1 names no previous statement, a later one names its
   predecessor's SHA-256; with the previous statement given, it is signed by the same key, for the
   same account, numbered one less, for the month before, and closed at this one's opening balance.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nacl.signing import VerifyKey

from ledger.errors import AuditError
from ledger.records import Balance
from ledger.statement import (
    LINE_FIELDS,
    STATEMENT,
    LineBuilder,
    check_signature,
    next_period,
    period_window,
    read_statement,
    statement_body,
    statement_sha256,
)
from ledger.verify import VerifiedBundle, open_bundle

_HEX64 = re.compile(r"[0-9a-f]{64}")
# Which transfer a line stands for is compared first, so a line left out is named as such.
_COMPARED = ("transfer_id", "seq", *(name for name in LINE_FIELDS if name not in ("transfer_id", "seq")))


@dataclass(frozen=True, slots=True)
class StatementReport:
    """What a verified statement proves."""

    origin: str
    account: str
    period: str
    number: int
    lines: int
    opening_balance: int
    closing_balance: int
    currency: str
    chained: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def _posted(balance: Balance | None) -> int:
    return 0 if balance is None else balance.credits_posted - balance.debits_posted


def _int(doc: Mapping[str, Any], name: str) -> int:
    value = doc.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise AuditError(STATEMENT, f"{name} must be an integer")
    return value


def _expected(doc: Mapping[str, Any], bundle: VerifiedBundle) -> dict[str, Any]:
    """The statement the bundle implies for the document's account, period and number."""
    account = doc.get("account")
    spec = bundle.specs.get(account) if isinstance(account, str) else None
    if spec is None:
        raise AuditError(STATEMENT, f"account {account!r} is not in the bundle")
    holder = doc.get("holder")
    if (
        spec.currency != doc.get("currency")
        or not isinstance(holder, dict)
        or holder.get("kind") != spec.kind
    ):
        raise AuditError(STATEMENT, f"currency or kind of {account!r} differs from the bundle's")
    period = str(doc.get("period"))
    window = period_window(period)  # RequestError (a ValueError) for a malformed period
    if bundle.window != window:
        raise AuditError(STATEMENT, f"the bundle covers {bundle.window}, not the period {period} {window}")
    report = bundle.report
    if doc.get("range") != {"first_seq": report.first_seq, "end_seq": report.end_seq}:
        raise AuditError(
            STATEMENT,
            f"range {doc.get('range')} is not the bundle's [{report.first_seq}, {report.end_seq})",
        )
    if doc.get("origin") != report.origin:
        raise AuditError(STATEMENT, f"origin {doc.get('origin')!r} is not the bundle's {report.origin!r}")
    closing = bundle.closing.get(spec.id)
    builder = LineBuilder({spec.id: spec}, {k: s.kind for k, s in bundle.specs.items()})
    builder.add_all(bundle.transfers())
    previous = doc.get("previous_sha256")
    return statement_body(
        origin=report.origin,
        spec=spec,
        period=period,
        first_seq=report.first_seq,
        end_seq=report.end_seq,
        number=_int(doc, "number"),
        previous_sha256=previous if isinstance(previous, str) else None,
        opening=_posted(bundle.opening.get(spec.id)),
        lines=builder.lines[spec.id],
        issued_ms=_int(doc, "issued_ms"),
        held=0 if closing is None else closing.debits_pending,
    )


def _compare_lines(stated: list[Any], expected: list[dict[str, Any]]) -> None:
    for index, want in enumerate(expected):
        n = index + 1
        if index >= len(stated):
            raise AuditError(
                f"statement line {n}",
                f"missing: the bundle has transfer {want['transfer_id']!r} (seq {want['seq']})",
            )
        line = stated[index]
        if not isinstance(line, dict) or set(line) != set(LINE_FIELDS):
            raise AuditError(f"statement line {n}", f"must have exactly the fields {', '.join(LINE_FIELDS)}")
        for name in _COMPARED:
            if line[name] != want[name] or type(line[name]) is not type(want[name]):
                raise AuditError(
                    f"statement line {n}",
                    f"{name} is {line[name]!r}; the bundle's transfer {want['transfer_id']!r} "
                    f"(seq {want['seq']}) gives {want[name]!r}",
                )
    if len(stated) > len(expected):
        extra = stated[len(expected)]
        transfer_id = extra.get("transfer_id") if isinstance(extra, dict) else None
        raise AuditError(
            f"statement line {len(expected) + 1}", f"transfer {transfer_id!r} is not a line the bundle gives"
        )


def _check_numbering(doc: Mapping[str, Any], previous: bytes | None, key: VerifyKey) -> bool:
    number, stated = _int(doc, "number"), doc.get("previous_sha256")
    if number < 1:
        raise AuditError(STATEMENT, "number must be 1 or more")
    if number == 1 and stated is not None:
        raise AuditError(STATEMENT, "statement 1 names a previous statement")
    if number > 1 and not (isinstance(stated, str) and _HEX64.fullmatch(stated)):
        raise AuditError(STATEMENT, f"statement {number} does not name its predecessor's SHA-256")
    if previous is None:
        return False
    before = read_statement(previous)
    try:
        check_signature(before, key)
    except AuditError as exc:
        raise AuditError("previous statement", exc.message) from None
    problem = None
    if (before.get("origin"), before.get("account")) != (doc.get("origin"), doc.get("account")):
        problem = "is for another node or account"
    elif before.get("number") != number - 1:
        problem = (
            f"is number {before.get('number')}; this one is {number}, which does not follow it without a gap"
        )
    elif statement_sha256(previous) != stated:
        problem = "is not the one this statement names (SHA-256 differs)"
    elif next_period(str(before.get("period"))) != doc.get("period"):
        problem = f"is for {before.get('period')}, not the month before {doc.get('period')}"
    elif before.get("closing_balance") != doc.get("opening_balance"):
        problem = "closed at another balance than this one opens with"
    if problem is not None:
        raise AuditError("previous statement", problem)
    return True


def verify_statement(
    data: bytes, bundle_dir: Path, key: VerifyKey, previous: bytes | None = None
) -> StatementReport:
    """Verify statement file `data` against the audit bundle in `bundle_dir` (and, if given, the
    previous statement of the account); AuditError names what is wrong (a line as `statement line N`,
    the bundle's own failures as `bundle FILE`)."""
    doc = read_statement(data)
    try:
        bundle = open_bundle(bundle_dir, key)
    except AuditError as exc:
        raise AuditError(f"bundle {exc.where}", exc.message, exc.seq) from None
    try:
        expected = _expected(doc, bundle)
    except ValueError as exc:
        if isinstance(exc, AuditError):
            raise
        raise AuditError(STATEMENT, str(exc)) from None
    if doc.get("opening_balance") != expected["opening_balance"]:
        raise AuditError(
            STATEMENT,
            f"opening balance is {doc.get('opening_balance')!r}; the bundle's is {expected['opening_balance']}",
        )
    _compare_lines(doc["lines"], expected["lines"])
    for name in ("totals", "closing_balance", "held_at_close", "holder", "from_ms", "to_ms"):
        if doc.get(name) != expected[name]:
            raise AuditError(STATEMENT, f"{name} is {doc.get(name)!r}; the lines give {expected[name]!r}")
    closing = _posted(bundle.closing.get(expected["account"]))
    if expected["closing_balance"] != closing:
        raise AuditError(STATEMENT, f"closing balance differs from the bundle's balances.csv ({closing})")
    extra = sorted(set(doc) - set(expected) - {"signature"})
    if extra:
        raise AuditError(STATEMENT, f"unknown field(s): {', '.join(extra)}")
    check_signature(doc, key)
    chained = _check_numbering(doc, previous, key)
    return StatementReport(
        origin=expected["origin"],
        account=expected["account"],
        period=expected["period"],
        number=expected["number"],
        lines=len(expected["lines"]),
        opening_balance=expected["opening_balance"],
        closing_balance=expected["closing_balance"],
        currency=expected["currency"],
        chained=chained,
    )
