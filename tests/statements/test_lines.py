"""The pure core: periods, line kinds, running balances and the signed document."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from ledger import AccountKind, AccountSpec, AuditError, RequestError, Transfer, TransferKind
from ledger.statement import (
    CLOSE_MARGIN_MS,
    LineBuilder,
    LineKind,
    check_signature,
    classify,
    is_closed,
    next_period,
    period_window,
    periods_between,
    read_statement,
    sign_statement,
    statement_body,
)
from tests.statements.support import at


def _transfer(seq: int, kind: TransferKind, debit: str, credit: str, amount: int, code: int = 0) -> Transfer:
    return Transfer(
        seq,
        f"t{seq}",
        kind,
        debit,
        credit,
        "CNY",
        amount,
        None,
        None,
        None,
        None,
        code,
        False,
        seq,
        None,
        None,
        None,
        None,
    )


def test_period_window_is_the_utc_month() -> None:
    """A period is [first of the month, first of the next) in UTC, December rolls into January."""
    assert period_window("2026-11") == (at(2026, 11, 1, 0), at(2026, 12, 1, 0))
    assert period_window("2024-02")[1] - period_window("2024-02")[0] == 29 * 86_400_000
    assert next_period("2026-12") == "2027-01"
    assert periods_between("2026-11", "2027-02") == ["2026-11", "2026-12", "2027-01", "2027-02"]
    assert periods_between("2027-02", "2026-11") == []


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "26-11", "2026/11", "", "2026-11-01"])
def test_a_malformed_period_is_refused(text: str) -> None:
    """Anything but YYYY-MM with a real month is a RequestError naming the period."""
    with pytest.raises(RequestError) as caught:
        period_window(text)
    assert caught.value.field == "period"


def test_a_month_is_closed_only_after_its_margin() -> None:
    """November is open on its last day and right at its end, closed once the margin has passed."""
    end = at(2026, 12, 1, 0)
    assert not is_closed("2026-11", at(2026, 11, 30))
    assert not is_closed("2026-11", end + CLOSE_MARGIN_MS - 1)
    assert is_closed("2026-11", end + CLOSE_MARGIN_MS)


def test_line_kinds_follow_the_transfer() -> None:
    """Correction by code; deposit and payout against external accounts; charge; refund or credit."""
    consumer, partner, external, pool = (
        AccountKind.CONSUMER,
        AccountKind.PARTNER,
        AccountKind.EXTERNAL,
        AccountKind.PROVIDER,
    )
    assert classify(True, 9000, consumer, pool) is LineKind.CORRECTION
    assert classify(False, 9000, consumer, external) is LineKind.CORRECTION
    assert classify(True, 100, consumer, external) is LineKind.DEPOSIT
    assert classify(False, 0, consumer, external) is LineKind.PAYOUT
    assert classify(False, 300, consumer, pool) is LineKind.CHARGE
    assert classify(True, 0, consumer, pool) is LineKind.REFUND
    assert classify(True, 200, partner, AccountKind.ESCROW) is LineKind.CREDIT


def test_only_posted_money_makes_lines_with_exact_running_balances() -> None:
    """Holds, voids and expiries add no line; posts and singles do, with signed amounts and balances."""
    holders = {"consumer:a": AccountSpec("consumer:a", "CNY", AccountKind.CONSUMER)}
    kinds = {"consumer:a": AccountKind.CONSUMER, "ext": AccountKind.EXTERNAL, "pool": AccountKind.PROVIDER}
    builder = LineBuilder(holders, kinds)
    builder.add_all(
        [
            _transfer(10, TransferKind.SINGLE, "ext", "consumer:a", 1_001),
            _transfer(11, TransferKind.PENDING, "consumer:a", "pool", 700),
            _transfer(12, TransferKind.POST, "consumer:a", "pool", 333),
            _transfer(13, TransferKind.VOID, "consumer:a", "pool", 0),
            _transfer(14, TransferKind.SINGLE, "ext", "pool", 5),  # not the holder's
        ]
    )
    lines = builder.lines["consumer:a"]
    assert [(line.n, line.seq, line.kind, line.amount, line.balance) for line in lines] == [
        (1, 10, "deposit", 1_001, 1_001),
        (2, 12, "charge", -333, 668),
    ]
    spec = holders["consumer:a"]
    body = statement_body(
        origin="n.cpnode/ledger",
        spec=spec,
        period="2026-11",
        first_seq=10,
        end_seq=15,
        number=1,
        previous_sha256=None,
        opening=2_000_000_000_000_001,
        lines=lines,
        issued_ms=1,
    )
    assert body["closing_balance"] == 2_000_000_000_000_669
    assert [row["balance"] for row in body["lines"]] == [2_000_000_000_001_002, 2_000_000_000_000_669]
    assert body["totals"]["deposit"] == 1_001
    assert body["totals"]["charge"] == -333


def test_the_document_is_signed_and_any_change_breaks_the_signature() -> None:
    """A signed statement reads back and verifies; a changed byte or another key does not."""
    key = SigningKey.generate()
    spec = AccountSpec("consumer:a", "CNY", AccountKind.CONSUMER)
    data = sign_statement(
        statement_body(
            origin="o",
            spec=spec,
            period="2026-11",
            first_seq=0,
            end_seq=0,
            number=1,
            previous_sha256=None,
            opening=0,
            lines=[],
            issued_ms=1,
        ),
        key,
    )
    check_signature(read_statement(data), key.verify_key)
    with pytest.raises(AuditError, match="signature"):
        check_signature(
            read_statement(data.replace(b'"opening_balance":0', b'"opening_balance":1')), key.verify_key
        )
    with pytest.raises(AuditError, match="signature"):
        check_signature(read_statement(data), SigningKey.generate().verify_key)
    with pytest.raises(AuditError, match="not valid JSON"):
        read_statement(b"{")
