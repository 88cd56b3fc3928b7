"""Issuing statements from the database on SQLite and PostgreSQL: content, numbering without gaps
(also under concurrent issuers), immutability, closed periods, and verification against bundles."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from nacl.signing import SigningKey
from sqlalchemy.engine import Engine

import ledger
from ledger.statement import period_window
from node.statements import store
from node.statements.errors import PeriodNotClosed, StatementConflict, UnknownStatement
from node.trading import rules
from tests.statements.support import ALICE, BETA, BOB, HELD, NOVEMBER_CLOSING, at, single, submit

ORIGIN = "alpha.cpnode/ledger"
AFTER_NOVEMBER = at(2026, 12, 1, 1)


def _issue(
    engine: Engine, key: SigningKey, period: str, now: int = AFTER_NOVEMBER, **who: str
) -> list[store.Statement]:
    return [s for s, _ in store.issue(engine, key, ORIGIN, period, now_ms=now, **who)]


def _doc(engine: Engine, statement: store.Statement) -> dict[str, Any]:
    return store.get_statement(engine, statement.id).doc()


def _export(engine: Engine, key: SigningKey, out: Path, period: str) -> Path:
    from_ms, to_ms = period_window(period)
    ledger.export_bundle(engine, out, key, ORIGIN, from_ms=from_ms, to_ms=to_ms)
    return out


def test_a_consumer_statement_lists_each_movement_with_exact_money(november: Engine, key: SigningKey) -> None:
    """Alice's November: opening 500.00, a deposit, the charge posted (not the hold), a correction, a
    refund and a payout, each with its transfer id, closing at the exact sum."""
    [statement] = _issue(november, key, "2026-11", consumer="alice")
    doc = _doc(november, statement)
    [october] = store.list_statements(november, account=ALICE, period="2026-10")
    assert (october.number, october.closing_balance) == (1, 50_000)  # opened in October: statement 1
    assert (doc["number"], doc["previous_sha256"], doc["account"]) == (2, october.sha256, ALICE)
    assert doc["holder"] == {"kind": "consumer", "name": "alice"}
    assert doc["opening_balance"] == 50_000
    assert [(line["transfer_id"], line["kind"], line["amount"]) for line in doc["lines"]] == [
        ("dep-1", "deposit", 100_000),
        ("o1:hold:post", "charge", -12_345),
        ("fix-1", "correction", 500),
        ("refund-1", "refund", 1_000),
        ("payout-1", "payout", -2_000),
    ]
    assert doc["closing_balance"] == NOVEMBER_CLOSING == statement.closing_balance
    assert doc["held_at_close"] == HELD
    assert doc["lines"][-1]["balance"] == NOVEMBER_CLOSING
    account = ledger.get_account(november, ALICE)
    assert account.balance.credits_posted - account.balance.debits_posted == NOVEMBER_CLOSING


def test_a_partner_statement_shows_its_credit_line_and_purchases(november: Engine, key: SigningKey) -> None:
    """The partner's statement: its credit line as a deposit and what it bought as a charge, and no
    consumer's lines."""
    [statement] = _issue(november, key, "2026-11", partner="beta")
    doc = _doc(november, statement)
    assert doc["account"] == BETA
    assert doc["holder"] == {"kind": "partner", "name": "beta"}
    assert [
        (line["transfer_id"], line["kind"], line["amount"], line["trade_id"]) for line in doc["lines"]
    ] == [
        ("line-1", "deposit", 1_000_000, None),
        ("beta.t1:sale", "charge", -20_000, "beta.t1"),
    ]
    assert doc["closing_balance"] == 980_000


def test_issuing_for_everyone_covers_each_consumer_and_partner_once(
    november: Engine, key: SigningKey
) -> None:
    """Without a name, every consumer and partner account gets its statement (an idle one: no lines,
    zero balances); issuing again returns the stored statements unchanged."""
    first = store.issue(november, key, ORIGIN, "2026-11", now_ms=AFTER_NOVEMBER)
    assert sorted((s.account, created) for s, created in first) == [(ALICE, True), (BOB, True), (BETA, True)]
    bob = next(s for s, _ in first if s.account == BOB)
    assert (bob.lines, bob.opening_balance, bob.closing_balance) == (0, 0, 0)
    again = store.issue(november, key, ORIGIN, "2026-11", now_ms=AFTER_NOVEMBER + 60_000)
    assert all(not created for _, created in again)
    assert {s.id: s.sha256 for s, _ in again} == {s.id: s.sha256 for s, _ in first}


def test_a_period_not_closed_is_refused_and_nothing_is_stored(november: Engine, key: SigningKey) -> None:
    """November cannot be issued on its last day nor right after its end; nothing is written."""
    for now in (at(2026, 11, 30), at(2026, 12, 1, 0) + 1):
        with pytest.raises(PeriodNotClosed, match="2026-11 is not closed"):
            _issue(november, key, "2026-11", now=now)
    assert store.list_statements(november) == []


def test_an_unknown_consumer_or_partner_is_refused(november: Engine, key: SigningKey) -> None:
    """Naming an account the ledger does not have is a clear 404-class error."""
    with pytest.raises(UnknownStatement, match="consumer 'carol'"):
        _issue(november, key, "2026-11", consumer="carol")
    with pytest.raises(UnknownStatement, match="partner 'gamma'"):
        _issue(november, key, "2026-11", partner="gamma")


def test_statements_are_never_changed_once_issued(november: Engine, key: SigningKey) -> None:
    """The database refuses to change or delete a stored statement."""
    [statement] = _issue(november, key, "2026-11", consumer="alice")
    for change in (
        sa.update(store.statements_t)
        .values(closing_balance=1)
        .where(store.statements_t.c.id == statement.id),
        sa.delete(store.statements_t).where(store.statements_t.c.id == statement.id),
    ):
        with pytest.raises(sa.exc.DBAPIError, match="never changed"), november.begin() as conn:
            conn.execute(change)
    assert store.get_statement(november, statement.id).sha256 == statement.sha256


def test_missing_months_are_issued_in_order_and_chained(november: Engine, key: SigningKey) -> None:
    """Issuing January after November first issues December: numbers 1 (October, when the account
    was opened) to 4, each opening at the closing of the one before and naming its SHA-256; a
    period before the account was opened is refused."""
    _issue(november, key, "2026-11", consumer="alice")
    submit(november, single("dep-dec", rules.DEPOSITS, ALICE, 7, rules.CODE_DEPOSIT), at(2026, 12, 2))
    [january] = _issue(november, key, "2027-01", now=at(2027, 2, 1, 1), consumer="alice")
    chain = store.list_statements(november, account=ALICE, oldest_first=True)
    assert [(s.number, s.period) for s in chain] == [
        (1, "2026-10"),
        (2, "2026-11"),
        (3, "2026-12"),
        (4, "2027-01"),
    ]
    assert january.number == 4
    for before, after in itertools.pairwise(chain):
        doc = _doc(november, after)
        assert doc["previous_sha256"] == before.sha256
        assert doc["opening_balance"] == before.closing_balance
    assert chain[2].closing_balance == NOVEMBER_CLOSING + 7
    with pytest.raises(StatementConflict, match="opened after 2026-09 ended"):
        _issue(november, key, "2026-09", consumer="alice")


def test_a_correction_after_issue_appears_on_the_next_statement(november: Engine, key: SigningKey) -> None:
    """November is issued; a correction made in December leaves November as it was and is a line of December."""
    [nov] = _issue(november, key, "2026-11", consumer="alice")
    submit(
        november,
        single("fix-late", ALICE, rules.FEES, 250, ledger.CORRECTION_CODE, trade_id="o1"),
        at(2026, 12, 3),
    )
    [dec] = _issue(november, key, "2026-12", now=at(2027, 1, 1, 1), consumer="alice")
    assert store.get_statement(november, nov.id).sha256 == nov.sha256
    assert [(line["transfer_id"], line["kind"], line["amount"]) for line in _doc(november, dec)["lines"]] == [
        ("fix-late", "correction", -250)
    ]
    assert dec.closing_balance == NOVEMBER_CLOSING - 250


def test_concurrent_issuers_number_without_gaps(november: Engine, key: SigningKey) -> None:
    """Eight threads issue November to February for everyone at once: each account gets exactly
    numbers 1–5 (October, when it was opened, to February), one per month, whoever wrote them."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(index: int) -> None:
        period = ["2026-11", "2026-12", "2027-01", "2027-02"][index % 4]
        try:
            barrier.wait(timeout=60)
            store.issue(november, key, ORIGIN, period, now_ms=at(2027, 3, 1, 1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    for account in (ALICE, BOB, BETA):
        chain = store.list_statements(november, account=account, oldest_first=True)
        assert [(s.number, s.period) for s in chain] == [
            (1, "2026-10"),
            (2, "2026-11"),
            (3, "2026-12"),
            (4, "2027-01"),
            (5, "2027-02"),
        ]


def test_a_statement_verifies_against_the_period_bundle(
    november: Engine, key: SigningKey, tmp_path: Path
) -> None:
    """Every line checks against an audit bundle of November; the chain checks with the previous one."""
    nov = {s.account: s for s in _issue(november, key, "2026-11")}
    bundle = _export(november, key, tmp_path / "nov", "2026-11")
    for account, statement in nov.items():
        data = store.get_statement(november, statement.id).document
        assert data is not None
        report = ledger.verify_statement(data, bundle, key.verify_key)
        assert (report.account, report.number, report.closing_balance) == (
            account,
            2,
            statement.closing_balance,
        )
    [dec] = _issue(november, key, "2026-12", now=at(2027, 1, 1, 1), consumer="alice")
    dec_bundle = _export(november, key, tmp_path / "dec", "2026-12")
    dec_data = store.get_statement(november, dec.id).document
    previous = store.get_statement(november, nov[ALICE].id).document
    assert dec_data is not None
    assert previous is not None
    assert ledger.verify_statement(dec_data, dec_bundle, key.verify_key, previous).chained
    with pytest.raises(ledger.AuditError, match="previous statement"):
        ledger.verify_statement(
            dec_data, dec_bundle, key.verify_key, store.get_statement(november, nov[BOB].id).document
        )


def test_an_account_closed_before_a_month_gets_no_statement_for_it(november: Engine, key: SigningKey) -> None:
    """Bob (no money, no holds) is closed in December: he gets December's statement, not January's."""
    ledger.close_account(november, BOB, now=at(2026, 12, 10))
    issued = store.issue(november, key, ORIGIN, "2027-01", now_ms=at(2027, 2, 1, 1))
    assert sorted(s.account for s, _ in issued) == sorted([ALICE, BETA])
    assert [s.period for s in store.list_statements(november, account=BOB, oldest_first=True)] == [
        "2026-10",
        "2026-11",
        "2026-12",
    ]
    with pytest.raises(StatementConflict, match="closed before 2027-01"):
        _issue(november, key, "2027-01", now=at(2027, 2, 1, 1), consumer="bob")
