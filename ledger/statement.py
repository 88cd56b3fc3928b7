"""Billing statements as pure functions over transfers: periods, lines, the signed document.

A statement covers one account (a consumer's or a partner's) for one closed UTC month. It lists
every transfer of the month that moved the account's posted balance (`single` transfers and the
posts of holds; a hold, a void or an expiry moves only pending money and is not a line), each with
its transfer id, seq, signed amount (+ credited to the holder, − debited) and the running balance,
between the opening and the closing balance (credits posted − debits posted).

A line's kind follows from the transfer alone, so an auditor recomputes it from an audit bundle:
- `correction`: code `CORRECTION_CODE` (either direction);
- `deposit`: credited from an `external` account (money entering: a payment, a partner's credit line);
- `payout`: debited to an `external` account (money leaving);
- `charge`: debited to any other account (an order, a sale's hold posted);
- `refund` (consumer accounts) or `credit` (any other): credited from any other account.

Statements of one account are numbered 1, 2, 3 … in period order without gaps; each names the
SHA-256 of the one before it, so a series is a chain an auditor can walk.
"""

from __future__ import annotations

import calendar
import datetime as dt
import enum
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from ledger.bundle import b64, canonical
from ledger.checkpoint import strict_b64decode
from ledger.errors import AuditError, RequestError
from ledger.records import CORRECTION_CODE, AccountKind, AccountSpec, Transfer, TransferKind

FORMAT = "cpnode-statement/1"
STATEMENT = "statement"  # what a statement error names when it is not about one line
PERIOD_RE = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")
CLOSE_MARGIN_MS = 5 * 60 * 1000
"""How long after a month ends it counts as closed: a replica whose clock lags may still stamp a
transfer inside the month for that long (the ledger's time never goes backwards, but it starts from
the writer's clock)."""
HOLDER_KINDS = frozenset({AccountKind.CONSUMER, AccountKind.PARTNER})


class LineKind(enum.StrEnum):
    """What one statement line is."""

    CHARGE = "charge"
    DEPOSIT = "deposit"
    REFUND = "refund"
    CREDIT = "credit"
    PAYOUT = "payout"
    CORRECTION = "correction"


def parse_period(text: str) -> tuple[int, int]:
    """(year, month) of a period `YYYY-MM`; RequestError naming `period` otherwise."""
    match = PERIOD_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None or not 1970 <= int(match.group(1)) <= 9999:
        raise RequestError(f"a period is a UTC month, YYYY-MM (e.g. 2026-11), not {text!r}", field="period")
    return int(match.group(1)), int(match.group(2))


def period_window(period: str) -> tuple[int, int]:
    """[from_ms, to_ms) of a period: the UTC month in epoch milliseconds."""
    year, month = parse_period(period)
    start = calendar.timegm((year, month, 1, 0, 0, 0)) * 1000
    days = calendar.monthrange(year, month)[1]
    return start, start + days * 86_400_000


def next_period(period: str) -> str:
    """The month after `period`."""
    year, month = parse_period(period)
    return f"{year + month // 12:04d}-{month % 12 + 1:02d}"


def period_of(ts_ms: int) -> str:
    """The period (UTC month) a time falls in."""
    moment = dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.UTC)
    return f"{moment.year:04d}-{moment.month:02d}"


def periods_between(first: str, last: str) -> list[str]:
    """Every period from `first` to `last`, both included (empty when `last` is before `first`)."""
    out: list[str] = []
    period = first
    while parse_period(period) <= parse_period(last):
        out.append(period)
        period = next_period(period)
    return out


def is_closed(period: str, now_ms: int) -> bool:
    """Whether the month is over, with `CLOSE_MARGIN_MS` to spare."""
    return now_ms >= period_window(period)[1] + CLOSE_MARGIN_MS


def holder_name(spec: AccountSpec) -> str:
    """Who a statement is for: the consumer's id, or the partner node's name."""
    if spec.kind is AccountKind.PARTNER and spec.partner:
        return spec.partner
    return spec.id.split(":", 1)[1] if ":" in spec.id else spec.id


@dataclass(frozen=True, slots=True)
class Line:
    """One statement line: a transfer that moved the account's posted balance."""

    n: int
    seq: int
    transfer_id: str
    ts_ms: int
    kind: str
    amount: int  # + credited to the holder, − debited
    balance: int  # the posted balance after this line (from a LineBuilder: relative to the opening)
    counterparty: str
    code: int
    order_id: str | None
    trade_id: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (built by hand: `dataclasses.asdict` deep-copies, which a 100,000-line month feels)."""
        return {
            "n": self.n,
            "seq": self.seq,
            "transfer_id": self.transfer_id,
            "ts_ms": self.ts_ms,
            "kind": self.kind,
            "amount": self.amount,
            "balance": self.balance,
            "counterparty": self.counterparty,
            "code": self.code,
            "order_id": self.order_id,
            "trade_id": self.trade_id,
        }


LINE_FIELDS = tuple(Line.__dataclass_fields__)


def classify(credited: bool, code: int, holder: AccountKind, counterparty: AccountKind) -> LineKind:
    """The kind of a line (rules in the module docstring)."""
    if code == CORRECTION_CODE:
        return LineKind.CORRECTION
    if counterparty is AccountKind.EXTERNAL:
        return LineKind.DEPOSIT if credited else LineKind.PAYOUT
    if not credited:
        return LineKind.CHARGE
    return LineKind.REFUND if holder is AccountKind.CONSUMER else LineKind.CREDIT


POSTING_KINDS = frozenset({TransferKind.SINGLE, TransferKind.POST})
"""The transfer kinds that move posted money (holds, voids and expiries move only pending money)."""
PostedRow = tuple[int, str, int, str, str, int, int, str | None, str | None]


class LineBuilder:
    """Statement lines of many accounts, built in one pass over a period's transfers (seq order)."""

    def __init__(self, holders: Mapping[str, AccountSpec], kinds: Mapping[str, AccountKind]) -> None:
        self.holders = holders
        self.kinds = kinds
        self.lines: dict[str, list[Line]] = {account_id: [] for account_id in holders}
        self.movement: dict[str, int] = dict.fromkeys(holders, 0)

    def add(self, t: Transfer) -> None:
        """Take one transfer; it becomes a line of each holder it moves posted money of."""
        if t.amount != 0 and t.kind in POSTING_KINDS:
            self.add_posted(
                (
                    t.seq,
                    t.id,
                    t.ts_ms,
                    t.debit_account,
                    t.credit_account,
                    t.amount,
                    t.code,
                    t.order_id,
                    t.trade_id,
                )
            )

    def add_posted(self, row: PostedRow) -> None:
        """Take one transfer that moved posted money (a `single` or a `post` of more than 0), given as
        (seq, id, ts_ms, debit account, credit account, amount, code, order id, trade id)."""
        seq, transfer_id, ts_ms, debit, credit, amount, code, order_id, trade_id = row
        for account_id, other, signed in ((debit, credit, -amount), (credit, debit, amount)):
            spec = self.holders.get(account_id)
            if spec is None:
                continue
            lines = self.lines[account_id]
            moved = self.movement[account_id] + signed
            self.movement[account_id] = moved
            kind = classify(signed > 0, code, spec.kind, self.kinds.get(other, AccountKind.EXTERNAL))
            # `moved` is relative to the opening balance; `statement_body` adds it.
            lines.append(
                Line(
                    len(lines) + 1,
                    seq,
                    transfer_id,
                    ts_ms,
                    kind.value,
                    signed,
                    moved,
                    other,
                    code,
                    order_id,
                    trade_id,
                )
            )

    def add_all(self, transfers: Iterable[Transfer]) -> None:
        """Take every transfer of an iterable."""
        for t in transfers:
            self.add(t)


def statement_body(
    *,
    origin: str,
    spec: AccountSpec,
    period: str,
    first_seq: int,
    end_seq: int,
    number: int,
    previous_sha256: str | None,
    opening: int,
    lines: list[Line],
    issued_ms: int,
    held: int = 0,
) -> dict[str, Any]:
    """The statement document, unsigned (`lines` carry balances relative to the opening; `held` is
    what open holds kept of the account's money at the end of the period: its pending debits)."""
    from_ms, to_ms = period_window(period)
    totals = dict.fromkeys((str(k) for k in LineKind), 0)
    rows = []
    for line in lines:
        totals[line.kind] += line.amount
        rows.append({**line.to_dict(), "balance": opening + line.balance})
    return {
        "format": FORMAT,
        "origin": origin,
        "account": spec.id,
        "holder": {"kind": str(spec.kind), "name": holder_name(spec)},
        "currency": spec.currency,
        "period": period,
        "from_ms": from_ms,
        "to_ms": to_ms,
        "range": {"first_seq": first_seq, "end_seq": end_seq},
        "number": number,
        "previous_sha256": previous_sha256,
        "opening_balance": opening,
        "closing_balance": opening + (lines[-1].balance if lines else 0),
        "held_at_close": held,
        "totals": totals,
        "lines": rows,
        "issued_ms": issued_ms,
    }


def sign_statement(body: Mapping[str, Any], key: SigningKey) -> bytes:
    """The statement file: canonical JSON with an Ed25519 signature over everything else."""
    unsigned = {k: v for k, v in body.items() if k != "signature"}
    signature = key.sign(canonical(unsigned)).signature
    return canonical({**unsigned, "signature": b64(signature)}) + b"\n"


def statement_sha256(data: bytes) -> str:
    """The SHA-256 (hex) a statement file is chained by."""
    return hashlib.sha256(data).hexdigest()


def read_statement(data: bytes) -> dict[str, Any]:
    """Parse a statement file (not yet trusted); AuditError naming `statement` if it is not one."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise AuditError(STATEMENT, "not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise AuditError(STATEMENT, f"not a statement (format must be {FORMAT!r})")
    if not isinstance(doc.get("lines"), list) or not isinstance(doc.get("signature"), str):
        raise AuditError(STATEMENT, "has no lines or no signature")
    return doc


def check_signature(doc: Mapping[str, Any], key: VerifyKey) -> None:
    """Raise AuditError unless `doc` is signed by `key`."""
    body = {k: v for k, v in doc.items() if k != "signature"}
    try:
        key.verify(canonical(body), strict_b64decode(str(doc.get("signature")), "signature"))
    except (ValueError, BadSignatureError, TypeError):
        raise AuditError(STATEMENT, "signature does not verify with the given key") from None
