"""Issuing and reading statements (table `statements`, migration node_0012).

Issuing statement P of an account first issues the account's missing months before P, in order,
so the statements of an account are numbered 1, 2, 3 … one per month from the month it was opened
(statement 1), each opening
at the balance the one before closed with and naming its SHA-256. Every month's lines come from one
pass over that month's transfers (`ledger.period_lines`) for all the accounts that need it.

Numbering holds under concurrent issuers on any replica: the number is the account's last + 1 read
in the writing transaction, and the unique keys (account, number) and (account, period) refuse a
second row; the loser starts again and finds the stored statement, which it returns. A stored row
is never changed (the table's triggers refuse UPDATE and DELETE): issuing again returns it, and a
correction made later is a new transfer, so it appears on the month it was made in. A closed
account's last statement is for the month it was closed in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from nacl.signing import SigningKey
from sqlalchemy.engine import Connection, Engine

import ledger
from ledger import AccountKind, AccountSpec
from ledger.statement import (
    CLOSE_MARGIN_MS,
    HOLDER_KINDS,
    is_closed,
    next_period,
    parse_period,
    period_of,
    period_window,
    periods_between,
    sign_statement,
    statement_body,
    statement_sha256,
)
from node.db import write_transaction
from node.statements.errors import PeriodNotClosed, StatementConflict, StatementRequestError, UnknownStatement
from node.trading import rules

_md = sa.MetaData()
statements_t = sa.Table(
    "statements",
    _md,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("account", sa.String(128)),
    sa.Column("number", sa.BigInteger),
    sa.Column("period", sa.String(7)),
    sa.Column("kind", sa.String(16)),
    sa.Column("currency", sa.String(16)),
    sa.Column("first_seq", sa.BigInteger),
    sa.Column("end_seq", sa.BigInteger),
    sa.Column("opening_balance", sa.BigInteger),
    sa.Column("closing_balance", sa.BigInteger),
    sa.Column("lines", sa.BigInteger),
    sa.Column("issued_ms", sa.BigInteger),
    sa.Column("sha256", sa.String(64)),
    sa.Column("document", sa.LargeBinary),
)
_SUMMARY = [c for c in statements_t.c if c.name != "document"]
MAX_ATTEMPTS = 20
_IN_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Statement:
    """A stored statement: its summary, and the signed document when it was read."""

    id: str
    account: str
    number: int
    period: str
    kind: str
    currency: str
    first_seq: int
    end_seq: int
    opening_balance: int
    closing_balance: int
    lines: int
    issued_ms: int
    sha256: str
    document: bytes | None = None

    def summary(self) -> dict[str, Any]:
        """JSON form without the document."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "document"}

    def doc(self) -> dict[str, Any]:
        """The signed document, parsed."""
        if self.document is None:
            raise ValueError("this statement was read without its document")
        parsed: dict[str, Any] = orjson.loads(self.document)
        return parsed


def statement_id(account: str, number: int) -> str:
    """A statement's id: its account and number (`consumer:alice:3`)."""
    return f"{account}:{number}"


def _row(row: Any) -> Statement:
    return Statement(**{k: v for k, v in row._mapping.items()})


def _now_ms() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp() * 1000)


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def check_period(period: str, now_ms: int) -> None:
    """StatementRequestError for a malformed period, PeriodNotClosed for one not over yet."""
    try:
        _, end = period_window(period)
    except ledger.RequestError as exc:
        raise StatementRequestError(str(exc), field="period") from None
    if not is_closed(period, now_ms):
        raise PeriodNotClosed(
            f"period {period} is not closed: it ends {_iso(end)}, and statements for it can be issued "
            f"from {_iso(end + CLOSE_MARGIN_MS)}",
            period=period,
        )


def _holders(
    accounts: Sequence[ledger.Account], period: str, consumer: str | None, partner: str | None
) -> list[AccountSpec]:
    """The accounts to issue for: the one named, or every consumer and partner account opened before
    the period ended."""
    end = period_window(period)[1]
    if consumer is not None:
        try:
            wanted = rules.consumer_account(rules.check_consumer_id(consumer))
        except ValueError as exc:
            raise StatementRequestError(str(exc), field="consumer") from None
        found = [a for a in accounts if a.id == wanted and a.spec.kind is AccountKind.CONSUMER]
        what = f"consumer {consumer!r}"
    elif partner is not None:
        found = [a for a in accounts if a.spec.kind is AccountKind.PARTNER and a.spec.partner == partner]
        what = f"partner {partner!r}"
    else:
        return [a.spec for a in accounts if a.spec.kind in HOLDER_KINDS and a.created_ms < end]
    if not found:
        raise UnknownStatement(f"no account of {what} in the ledger", code="unknown_account")
    if found[0].created_ms >= end:
        raise StatementConflict(
            f"the account of {what} was opened after {period} ended", code="account_too_new"
        )
    return [found[0].spec]


def _last(conn: Connection, accounts: Sequence[str]) -> dict[str, Statement]:
    """Each account's last statement (highest number)."""
    if not accounts:
        return {}
    latest = sa.select(statements_t.c.account, sa.func.max(statements_t.c.number).label("number"))
    latest = _only(latest, accounts)
    last = latest.group_by(statements_t.c.account).subquery()
    query = sa.select(*_SUMMARY).join(
        last, sa.and_(last.c.account == statements_t.c.account, last.c.number == statements_t.c.number)
    )
    wanted = set(accounts)
    return {row.account: _row(row) for row in conn.execute(query) if row.account in wanted}


def _only(query: sa.Select[Any], accounts: Sequence[str]) -> sa.Select[Any]:
    """`query` limited to `accounts` in SQL when they are few (a bound parameter each; SQLite allows
    only so many), else unchanged: the caller keeps the rows of its accounts."""
    return query.where(statements_t.c.account.in_(accounts)) if len(accounts) <= _IN_LIMIT else query


def _plan(
    specs: Sequence[AccountSpec],
    opened: dict[str, tuple[str, str | None]],
    last: dict[str, Statement],
    period: str,
) -> dict[str, list[str]]:
    """The months each account still needs: from the month it was opened (or after its last
    statement) up to `period`, or to the month it was closed in if that came first."""
    plan: dict[str, list[str]] = {}
    for spec in specs:
        before = last.get(spec.id)
        first, closed = opened[spec.id]
        start = first if before is None else next_period(before.period)
        end = period if closed is None or parse_period(closed) > parse_period(period) else closed
        plan[spec.id] = periods_between(start, end)
    return plan


def _issue_month(
    engine: Engine,
    key: SigningKey,
    origin: str,
    month: str,
    specs: dict[str, AccountSpec],
    kinds: dict[str, AccountKind],
    now_ms: int,
) -> None:
    """Issue `month` for the given accounts (each must have its statements up to the month before)."""
    from_ms, to_ms = period_window(month)
    read = ledger.period_lines(engine, specs, kinds, from_ms, to_ms)
    with write_transaction(engine) as conn:
        last = _last(conn, list(specs))
        rows = []
        for account_id, spec in specs.items():
            before = last.get(account_id)
            if before is not None and next_period(before.period) != month:
                raise _Raced
            number = 1 if before is None else before.number + 1
            body = statement_body(
                origin=origin,
                spec=spec,
                period=month,
                first_seq=read.first_seq,
                end_seq=read.end_seq,
                number=number,
                previous_sha256=None if before is None else before.sha256,
                opening=read.opening[account_id],
                held=read.held[account_id],
                lines=read.lines[account_id],
                issued_ms=now_ms,
            )
            document = sign_statement(body, key)
            rows.append(
                {
                    "id": statement_id(account_id, number),
                    "account": account_id,
                    "number": number,
                    "period": month,
                    "kind": str(spec.kind),
                    "currency": spec.currency,
                    "first_seq": read.first_seq,
                    "end_seq": read.end_seq,
                    "opening_balance": body["opening_balance"],
                    "closing_balance": body["closing_balance"],
                    "lines": len(body["lines"]),
                    "issued_ms": now_ms,
                    "sha256": statement_sha256(document),
                    "document": document,
                }
            )
        if rows:
            conn.execute(statements_t.insert(), rows)


class _Raced(Exception):
    """Another issuer wrote a statement this one planned; plan again."""


def issue(
    engine: Engine,
    key: SigningKey,
    origin: str,
    period: str,
    *,
    consumer: str | None = None,
    partner: str | None = None,
    now_ms: int | None = None,
) -> list[tuple[Statement, bool]]:
    """Issue (or find) the statement of `period` for the named consumer or partner, or for every
    consumer and partner account: each with whether it was issued now."""
    now = _now_ms() if now_ms is None else now_ms
    check_period(period, now)
    accounts = ledger.list_accounts(engine)
    kinds = {a.id: a.spec.kind for a in accounts}
    specs = _holders(accounts, period, consumer, partner)
    opened = {
        a.id: (period_of(a.created_ms), None if a.closed_ms is None else period_of(a.closed_ms))
        for a in accounts
    }
    created: set[str] = set()
    for _attempt in range(MAX_ATTEMPTS):
        with engine.connect() as conn:
            plan = _plan(specs, opened, _last(conn, [s.id for s in specs]), period)
        months = sorted({m for months in plan.values() for m in months}, key=parse_period)
        try:
            for month in months:
                wanted = {s.id: s for s in specs if month in plan[s.id]}
                _issue_month(engine, key, origin, month, wanted, kinds, now)
                if month == period:
                    created.update(wanted)
        except (_Raced, sa.exc.IntegrityError):
            continue
        break
    else:
        raise StatementConflict("statements kept being issued concurrently; try again", code="statement_busy")
    found = _find(engine, [s.id for s in specs], period)
    missing = [s.id for s in specs if s.id not in found]
    if missing and (consumer is not None or partner is not None):
        raise StatementConflict(
            f"{missing[0]} was closed before {period}; it has no statement for it", code="account_closed"
        )
    return [(found[s.id], s.id in created) for s in specs if s.id in found]


def _find(engine: Engine, accounts: Sequence[str], period: str) -> dict[str, Statement]:
    wanted = set(accounts)
    with engine.connect() as conn:
        rows = conn.execute(_only(sa.select(*_SUMMARY).where(statements_t.c.period == period), accounts))
        return {row.account: _row(row) for row in rows if row.account in wanted}


def list_statements(
    engine: Engine,
    *,
    account: str | None = None,
    period: str | None = None,
    limit: int = 500,
    oldest_first: bool = False,
    documents: bool = False,
) -> list[Statement]:
    """Statements (with their documents if asked), newest first, optionally of one account or period."""
    query = sa.select(statements_t) if documents else sa.select(*_SUMMARY)
    if account is not None:
        query = query.where(statements_t.c.account == account)
    if period is not None:
        query = query.where(statements_t.c.period == period)
    order = (statements_t.c.period, statements_t.c.account)
    query = query.order_by(*(order if oldest_first else (c.desc() for c in order))).limit(limit)
    with engine.connect() as conn:
        return [_row(row) for row in conn.execute(query)]


def get_statement(engine: Engine, statement: str) -> Statement:
    """One statement with its document; UnknownStatement if there is none with this id."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(statements_t).where(statements_t.c.id == statement)).first()
    if row is None:
        raise UnknownStatement(f"no statement {statement!r} (ids are ACCOUNT:NUMBER, see `statements list`)")
    return _row(row)


def issued_summary(engine: Engine) -> tuple[int, str | None]:
    """(how many statements are stored, the latest month they cover)."""
    with engine.connect() as conn:
        count, latest = conn.execute(sa.select(sa.func.count(), sa.func.max(statements_t.c.period))).one()
    return int(count), latest
