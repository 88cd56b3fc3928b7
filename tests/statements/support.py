"""A ledger with a month of a consumer's and a partner's money in it, written at chosen times."""

from __future__ import annotations

import calendar

from sqlalchemy.engine import Engine

import ledger
from ledger import AccountKind, AccountSpec, TransferKind, TransferRequest
from node.trading import books, rules

CURRENCY = "CNY"
ALICE, BOB, BETA = "consumer:alice", "consumer:bob", "partner:beta"
HELD = 4_321
NOVEMBER_CLOSING = 50_000 + 100_000 - 12_345 + 500 + 1_000 - 2_000


def at(year: int, month: int, day: int, hour: int = 12) -> int:
    """UTC epoch ms of a day at the given hour."""
    return calendar.timegm((year, month, day, hour, 0, 0)) * 1000


def single(
    transfer_id: str,
    debit: str,
    credit: str,
    amount: int,
    code: int = 0,
    *,
    trade_id: str | None = None,
    partner: str | None = None,
) -> TransferRequest:
    """A posted transfer request."""
    return TransferRequest(
        transfer_id,
        TransferKind.SINGLE,
        debit,
        credit,
        CURRENCY,
        amount,
        code=code,
        trade_id=trade_id,
        partner=partner,
    )


def submit(engine: Engine, request: TransferRequest, ts_ms: int) -> None:
    """Write one request at `ts_ms`; it must be created."""
    [result] = ledger.submit(engine, [request], now=ts_ms)
    assert result.ok, result


def open_accounts(engine: Engine) -> None:
    """The house accounts, two consumers and a partner."""
    specs = [
        *books.house_specs(CURRENCY, ["pool-a"]),
        books.consumer_spec("alice", CURRENCY),
        books.consumer_spec("bob", CURRENCY),
        *books.partner_specs("beta", CURRENCY),
    ]
    specs.append(AccountSpec("external:payouts", CURRENCY, AccountKind.EXTERNAL))
    assert all(r.ok for r in ledger.create_accounts(engine, specs, now=at(2026, 10, 1)))


def fill_november(engine: Engine) -> None:
    """Alice: 500.00 before November; in November a deposit, an order charged 123.45 of a 300.00
    hold, a correction, a refund, a payout and a hold of 43.21 still open at the end; the partner
    beta: its credit line and one purchase."""
    open_accounts(engine)
    provider = rules.provider_account("pool-a")
    submit(engine, single("dep-0", rules.DEPOSITS, ALICE, 50_000, rules.CODE_DEPOSIT), at(2026, 10, 30))
    submit(engine, single("dep-1", rules.DEPOSITS, ALICE, 100_000, rules.CODE_DEPOSIT), at(2026, 11, 2))
    hold = TransferRequest(
        "o1:hold",
        TransferKind.PENDING,
        ALICE,
        provider,
        CURRENCY,
        30_000,
        code=rules.CODE_SALE,
        order_id="o1",
    )
    submit(engine, hold, at(2026, 11, 3))
    submit(
        engine,
        TransferRequest("o1:hold:post", TransferKind.POST, amount=12_345, pending_id="o1:hold"),
        at(2026, 11, 4),
    )
    submit(
        engine,
        single("fix-1", rules.FEES, ALICE, 500, ledger.CORRECTION_CODE, trade_id="o1"),
        at(2026, 11, 5),
    )
    submit(engine, single("refund-1", provider, ALICE, 1_000), at(2026, 11, 6))
    line = rules.credit_line_account("beta")
    submit(engine, single("line-1", line, BETA, 1_000_000, rules.CODE_CREDIT_LINE), at(2026, 11, 7))
    submit(
        engine,
        single("beta.t1:sale", BETA, provider, 20_000, rules.CODE_SALE, trade_id="beta.t1", partner="beta"),
        at(2026, 11, 8),
    )
    submit(engine, single("payout-1", ALICE, "external:payouts", 2_000), at(2026, 11, 9))
    held = TransferRequest(
        "o2:hold", TransferKind.PENDING, ALICE, provider, CURRENCY, HELD, code=rules.CODE_SALE, order_id="o2"
    )
    submit(engine, held, at(2026, 11, 30))  # still open when November ends: held, not a line
