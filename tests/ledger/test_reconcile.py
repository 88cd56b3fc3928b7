"""Reconciliation between two real ledgers (two databases of the same backend): summaries, the diff by
trade id, recorded discrepancies, corrections, and the faults of the exchange."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import Engine

from ledger import (
    CORRECTION_CODE,
    AccountKind,
    AccountSpec,
    ConflictError,
    DiscrepancyKind,
    ReconcileError,
    RequestError,
    Window,
    correct_discrepancy,
    create_accounts,
    diff_summaries,
    expire_due,
    list_discrepancies,
    parse_summary,
    reconcile_with_partner,
    submit,
    summary_for_partner,
)
from ledger.store.reconcile import transfers_of_trade
from tests.ledger.support import pending, post, single, void

HOUR = 3_600_000
W = Window(10 * HOUR, 11 * HOUR)
AFTER = 12 * HOUR  # when both nodes reconcile: the window and its margin have closed


def _books(alpha: Engine, beta: Engine) -> None:
    create_accounts(
        alpha,
        [
            AccountSpec("alice", "CNY", AccountKind.CONSUMER, debits_must_not_exceed_credits=True),
            AccountSpec("bank", "CNY", AccountKind.EXTERNAL),
            AccountSpec("beta", "CNY", AccountKind.PARTNER, partner="beta"),
        ],
    )
    create_accounts(
        beta,
        [
            AccountSpec("alpha", "CNY", AccountKind.PARTNER, partner="alpha"),
            AccountSpec("pool", "CNY", AccountKind.PROVIDER),
        ],
    )
    submit(alpha, [single("fund", "bank", "alice", 100_000)], now=1)


def _alpha_sells(
    alpha: Engine, trade: str, amount: int, at: int, digest: str = "d", posted: int | None = None
) -> None:
    """Alpha's side of a trade bought from beta: hold the consumer's money for beta, then post it."""
    submit(
        alpha,
        [
            pending(
                f"{trade}-hold", "alice", "beta", amount, trade_id=trade, partner="beta", trade_digest=digest
            )
        ],
        now=at,
    )
    submit(alpha, [post(f"{trade}-post", f"{trade}-hold", posted or amount)], now=at + 1)


def _beta_delivers(beta: Engine, trade: str, amount: int, at: int, digest: str = "d") -> None:
    """Beta's side: alpha owes it, its pool is paid."""
    submit(
        beta,
        [
            single(
                f"{trade}-in", "alpha", "pool", amount, trade_id=trade, partner="alpha", trade_digest=digest
            )
        ],
        now=at,
    )


@pytest.fixture(name="pair")
def fixture_pair(engine: Engine, partner_engine: Engine) -> tuple[Engine, Engine]:
    """Two nodes' ledgers, alpha and beta, with one trade of every kind of disagreement injected."""
    alpha, beta = engine, partner_engine
    _books(alpha, beta)
    start = W.from_ms
    _alpha_sells(alpha, "t-ok", 500, start + 1_000)
    _beta_delivers(beta, "t-ok", 500, start + 1_200)
    _alpha_sells(alpha, "t-missing-there", 300, start + 2_000)
    _beta_delivers(beta, "t-missing-here", 200, start + 3_000)
    _alpha_sells(alpha, "t-amount", 400, start + 4_000, posted=400)
    _beta_delivers(beta, "t-amount", 390, start + 4_100)
    _alpha_sells(alpha, "t-digest", 100, start + 5_000, digest="aaaa")
    _beta_delivers(beta, "t-digest", 100, start + 5_100, digest="bbbb")
    submit(
        alpha,
        [pending("t-state-hold", "alice", "beta", 50, trade_id="t-state", partner="beta")],
        now=start + 6_000,
    )
    submit(alpha, [void("t-state-void", "t-state-hold")], now=start + 6_001)
    submit(
        beta,
        [pending("t-state-hold", "alpha", "pool", 50, trade_id="t-state", partner="alpha", timeout_s=1)],
        now=start + 6_000,
    )
    expire_due(beta, now=start + 8_000)
    return alpha, beta


EXPECTED = {
    ("t-missing-there", DiscrepancyKind.MISSING_THERE),
    ("t-missing-here", DiscrepancyKind.MISSING_HERE),
    ("t-amount", DiscrepancyKind.AMOUNT),
    ("t-digest", DiscrepancyKind.DIGEST),
    ("t-state", DiscrepancyKind.STATE),
}


def _summaries(alpha: Engine, beta: Engine, window: Window = W) -> tuple[dict[str, Any], dict[str, Any]]:
    ours = summary_for_partner(alpha, "alpha", "beta", window, now=AFTER)
    theirs = summary_for_partner(beta, "beta", "alpha", window, now=AFTER)
    return ours, theirs


def test_summary_document(pair: tuple[Engine, Engine]) -> None:
    """A summary is a plain, integers-only document: per trade the net on the partner's account, its
    state and digest; the partner's view of the same trade is the negation."""
    ours, theirs = _summaries(*pair)
    assert (ours["type"], ours["issuer"], ours["partner"], ours["count"]) == (
        "cpnode.ledger.summary",
        "alpha",
        "beta",
        5,
    )
    ok_here = next(t for t in ours["trades"] if t["trade_id"] == "t-ok")
    ok_there = next(t for t in theirs["trades"] if t["trade_id"] == "t-ok")
    assert (ok_here["net"], ok_here["state"], ok_here["legs"]) == (500, "settled", 2)
    assert (ok_there["net"], ok_there["state"]) == (-500, "settled")
    assert [t["trade_id"] for t in ours["trades"]] == sorted(t["trade_id"] for t in ours["trades"])
    assert all(isinstance(v, int | str | type(None)) for t in ours["trades"] for v in t.values())


def test_diff_finds_every_injected_discrepancy(pair: tuple[Engine, Engine]) -> None:
    """Missing on either side, a different amount, state or digest: each is found, and nothing else."""
    ours, theirs = _summaries(*pair)
    found = diff_summaries(parse_summary(ours), parse_summary(theirs))
    assert {(d.trade_id, d.kind) for d in found} == EXPECTED
    mirrored = diff_summaries(parse_summary(theirs), parse_summary(ours))
    swap = {
        DiscrepancyKind.MISSING_HERE: DiscrepancyKind.MISSING_THERE,
        DiscrepancyKind.MISSING_THERE: DiscrepancyKind.MISSING_HERE,
    }
    assert {(d.trade_id, swap.get(d.kind, d.kind)) for d in mirrored} == EXPECTED


def test_reconcile_records_once_and_reports(pair: tuple[Engine, Engine]) -> None:
    """A run records each discrepancy and writes a report; the same (replayed) summary again adds nothing."""
    alpha, beta = pair
    _, theirs = _summaries(alpha, beta)
    outcome = reconcile_with_partner(alpha, "alpha", "beta", W, lambda _ours: theirs, now=AFTER)
    assert outcome.new == 5
    for trade, kind in EXPECTED:
        assert f"{trade}: {kind}" in outcome.report
    again = reconcile_with_partner(alpha, "alpha", "beta", W, lambda _ours: theirs, now=AFTER + 1)
    assert (again.new, len(again.discrepancies)) == (0, 5)
    assert {(d.trade_id, d.kind) for d in list_discrepancies(alpha, partner="beta")} == EXPECTED


def test_partner_offline_records_nothing(pair: tuple[Engine, Engine]) -> None:
    """When the exchange fails mid-protocol, the error surfaces and nothing is recorded."""
    alpha, _ = pair

    def offline(_ours: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionError("partner beta did not answer")

    with pytest.raises(ConnectionError):
        reconcile_with_partner(alpha, "alpha", "beta", W, offline, now=AFTER)
    assert list_discrepancies(alpha) == []


def test_clock_skew_at_the_window_edge(engine: Engine, partner_engine: Engine) -> None:
    """A trade stamped just before the window's end by one clock and just after by the other is matched,
    in exactly one window, and never reported as missing."""
    alpha, beta = engine, partner_engine
    _books(alpha, beta)
    _alpha_sells(alpha, "t-edge", 700, W.to_ms - 150)
    _beta_delivers(beta, "t-edge", 700, W.to_ms + 150)
    ours, theirs = _summaries(alpha, beta)
    assert diff_summaries(parse_summary(ours), parse_summary(theirs)) == []
    later = Window(W.to_ms, W.to_ms + HOUR)
    ours, theirs = (
        summary_for_partner(alpha, "alpha", "beta", later, now=14 * HOUR),
        summary_for_partner(beta, "beta", "alpha", later, now=14 * HOUR),
    )
    assert [t["trade_id"] for t in theirs["trades"]] == ["t-edge"]  # in the widened window…
    assert diff_summaries(parse_summary(ours), parse_summary(theirs)) == []  # …but compared in the first only


def test_summaries_from_the_future_or_too_early_are_refused(pair: tuple[Engine, Engine]) -> None:
    """A summary issued beyond the tolerated clock skew in the future, or before its window closed, is refused."""
    _, beta = pair
    future = summary_for_partner(beta, "beta", "alpha", W, now=AFTER + 3_600_000)
    with pytest.raises(ReconcileError, match="future"):
        parse_summary(future, now_ms=AFTER)
    early = summary_for_partner(beta, "beta", "alpha", W, now=W.to_ms + 1)
    with pytest.raises(ReconcileError, match="incomplete"):
        parse_summary(early, now_ms=W.to_ms + 2)


def test_mismatched_summaries_are_refused(pair: tuple[Engine, Engine]) -> None:
    """A summary about another pair of nodes, or another window, cannot be diffed."""
    alpha, beta = pair
    ours, theirs = _summaries(alpha, beta)
    with pytest.raises(ReconcileError, match="expected from"):
        diff_summaries(parse_summary(ours), parse_summary(ours))
    other = summary_for_partner(beta, "beta", "alpha", Window(W.from_ms, W.to_ms + HOUR), now=AFTER + HOUR)
    with pytest.raises(ReconcileError, match="different windows"):
        diff_summaries(parse_summary(ours), parse_summary(other))
    broken = {**theirs, "trades": list(reversed(theirs["trades"]))}
    with pytest.raises(ReconcileError, match="sorted"):
        parse_summary(broken)


def test_corrections_are_new_transfers(pair: tuple[Engine, Engine]) -> None:
    """A discrepancy is settled by a new correcting transfer (never by changing one); afterwards the
    trade reconciles, and a second, different correction of the same discrepancy is refused."""
    alpha, beta = pair
    _, theirs = _summaries(alpha, beta)
    reconcile_with_partner(alpha, "alpha", "beta", W, lambda _ours: theirs, now=AFTER)
    [amount] = [d for d in list_discrepancies(alpha) if d.kind == "amount"]
    before = [t.id for t in transfers_of_trade(beta, "t-amount")]
    fix = single(
        "t-amount-fix", "alpha", "pool", 10, code=CORRECTION_CODE, trade_id="t-amount", partner="alpha"
    )
    with pytest.raises(RequestError, match="trade_id"):
        correct_discrepancy(alpha, amount.id, single("wrong", "alice", "beta", 10))
    assert correct_discrepancy(beta, _record_on(beta, alpha, amount.id), fix).ok
    assert [t.id for t in transfers_of_trade(beta, "t-amount")] == [*before, "t-amount-fix"]
    ours, theirs = _summaries(alpha, beta)
    assert "t-amount" not in {d.trade_id for d in diff_summaries(parse_summary(ours), parse_summary(theirs))}
    other = single(
        "t-amount-fix2", "alpha", "pool", 10, code=CORRECTION_CODE, trade_id="t-amount", partner="alpha"
    )
    with pytest.raises(ConflictError, match="already corrected"):
        correct_discrepancy(beta, _record_on(beta, alpha, amount.id), other)


def _record_on(beta: Engine, alpha: Engine, _alpha_id: int) -> int:
    """Beta records the same reconciliation from its side; the id of its amount discrepancy."""
    theirs, _ = _summaries(alpha, beta)
    reconcile_with_partner(beta, "beta", "alpha", W, lambda _ours: theirs, now=AFTER)
    return next(d.id for d in list_discrepancies(beta) if d.trade_id == "t-amount" and d.kind == "amount")
