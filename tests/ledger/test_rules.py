"""The pure batch engine (no database): statuses, limits, holds, chains and idempotency."""

from __future__ import annotations

import dataclasses

import pytest

from ledger import AccountKind, AccountSpec, Balance, Status, TransferKind, TransferRequest
from ledger.holds import REFUSALS, TRANSITIONS, HoldState, transition
from ledger.records import MAX_AMOUNT, MAX_BALANCE
from ledger.rules import apply_batch, expire_holds
from ledger.view import AccountState, LedgerView
from tests.ledger.support import pending, post, single, void


def view(*specs: AccountSpec, funded: dict[str, int] | None = None) -> LedgerView:
    """A view with these accounts; `funded` gives accounts posted credits up front."""
    accounts = {s.id: AccountState(s, Balance()) for s in specs}
    for account_id, amount in (funded or {}).items():
        accounts[account_id].balance.credits_posted = amount
    return LedgerView(accounts=accounts)


def provider(account_id: str, currency: str = "CNY") -> AccountSpec:
    """An account without limits."""
    return AccountSpec(account_id, currency, AccountKind.PROVIDER)


def consumer(account_id: str) -> AccountSpec:
    """An account whose debits (pending included) may not exceed its credits."""
    return AccountSpec(account_id, "CNY", AccountKind.CONSUMER, debits_must_not_exceed_credits=True)


def statuses(v: LedgerView, requests: list[TransferRequest], ts: int = 1_000) -> list[str]:
    """Apply a batch and return its statuses."""
    return [str(r.status) for r in apply_batch(v, requests, ts, 0).results]


def test_single_transfer_moves_posted_balances() -> None:
    """A single-phase transfer debits one account's posted total and credits the other's, seq 0."""
    v = view(provider("a"), provider("b"))
    outcome = apply_batch(v, [single("t1", "a", "b", 250)], 5_000, 7)
    assert [r.status for r in outcome.results] == [Status.CREATED]
    assert outcome.results[0].seq == 7
    assert v.accounts["a"].balance.as_tuple() == (0, 250, 0, 0)
    assert v.accounts["b"].balance.as_tuple() == (0, 0, 0, 250)
    assert outcome.created[0].ts_ms == 5_000
    assert outcome.touched == {"a", "b"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount": 251}, "amount"),
        ({"debit_account": "c"}, "debit_account"),
        ({"credit_account": "c"}, "credit_account"),
        ({"code": 9}, "code"),
        ({"trade_id": "trade-9"}, "trade_id"),
        ({"kind": TransferKind.PENDING}, "kind"),
    ],
)
def test_same_id_different_body_names_the_field(change: dict[str, object], field: str) -> None:
    """Resubmitting an id with one field changed answers exists_with_different_field naming that field."""
    v = view(provider("a"), provider("b"), provider("c"))
    original = single("t1", "a", "b", 250)
    apply_batch(v, [original], 1, 0)
    retry = dataclasses.replace(original, **change)  # type: ignore[arg-type]
    [result] = apply_batch(v, [retry], 2, 1).results
    assert result.status is Status.EXISTS_WITH_DIFFERENT_FIELD
    assert result.field == field
    assert field in result.message
    assert result.seq == 0


def test_same_id_same_body_is_exists_and_changes_nothing() -> None:
    """Resubmitting the identical request answers exists with the original seq and moves no money."""
    v = view(provider("a"), provider("b"))
    apply_batch(v, [single("t1", "a", "b", 250)], 1, 0)
    outcome = apply_batch(v, [single("t1", "a", "b", 250)], 2, 1)
    assert outcome.results[0].status is Status.EXISTS
    assert outcome.results[0].seq == 0
    assert outcome.created == []
    assert v.accounts["a"].balance.debits_posted == 250


def test_failed_id_stays_failed() -> None:
    """An id refused for its own reasons (exceeds_credits) answers id_already_failed even once it would fit."""
    v = view(consumer("alice"), provider("bank"))
    first = apply_batch(v, [single("t1", "alice", "bank", 100)], 1, 0)
    assert first.results[0].status is Status.EXCEEDS_CREDITS
    assert first.failures[0].id == "t1"
    v.accounts["alice"].balance.credits_posted = 1_000
    [again] = apply_batch(v, [single("t1", "alice", "bank", 100)], 2, 0).results
    assert again.status is Status.ID_ALREADY_FAILED


def test_malformed_id_is_refused_and_not_remembered() -> None:
    """A malformed id is refused as invalid_request on 'id' and nothing is remembered for it."""
    v = view(provider("a"), provider("b"))
    outcome = apply_batch(v, [single("bad id", "a", "b", 1), single("~x", "a", "b", 1)], 1, 0)
    assert [(r.status, r.field) for r in outcome.results] == [(Status.INVALID_REQUEST, "id")] * 2
    assert outcome.failures == []


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (single("t", "a", "b", 0), "amount"),
        (single("t", "a", "b", MAX_AMOUNT + 1), "amount"),
        (single("t", "a", "b", 5, currency="cny"), "currency"),
        (single("t", "a b", "b", 5), "debit_account"),
        (single("t", "a", "b", 5, code=70_000), "code"),
        (single("t", "a", "b", 5, timeout_s=10), "timeout_s"),
        (pending("t", "a", "b", 5, timeout_s=0), "timeout_s"),
        (single("t", "a", "b", 5, trade_id="has space"), "trade_id"),
        (TransferRequest("t", TransferKind.VOID, pending_id="h", amount=3), "amount"),
        (TransferRequest("t", TransferKind.POST, pending_id="h"), "amount"),
        (TransferRequest("t", TransferKind.EXPIRE, pending_id="h"), "kind"),
        (
            TransferRequest("t", TransferKind.SINGLE, "a", "b", "CNY", True),
            "amount",
        ),  # a bool is not an amount
    ],
)
def test_malformed_requests_name_the_field(request_: TransferRequest, field: str) -> None:
    """Each malformed field is refused as invalid_request naming it, and the id is remembered as failed."""
    v = view(provider("a"), provider("b"))
    outcome = apply_batch(v, [request_], 1, 0)
    [result] = outcome.results
    assert (result.status, result.field) == (Status.INVALID_REQUEST, field)
    assert [f.id for f in outcome.failures] == ["t"]
    assert outcome.created == []


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        (single("t", "a", "a", 5), Status.ACCOUNTS_MUST_BE_DIFFERENT),
        (single("t", "zz", "b", 5), Status.DEBIT_ACCOUNT_NOT_FOUND),
        (single("t", "a", "zz", 5), Status.CREDIT_ACCOUNT_NOT_FOUND),
        (single("t", "a", "usd", 5), Status.CURRENCY_MISMATCH),
        (single("t", "a", "b", 5, currency="USD"), Status.CURRENCY_MISMATCH),
        (single("t", "closed", "b", 5), Status.DEBIT_ACCOUNT_CLOSED),
        (single("t", "a", "closed", 5), Status.CREDIT_ACCOUNT_CLOSED),
    ],
)
def test_account_rules(request_: TransferRequest, status: Status) -> None:
    """Accounts must differ, exist, share the transfer's currency and be open."""
    v = view(provider("a"), provider("b"), provider("usd", "USD"), provider("closed"))
    v.accounts["closed"].closed_seq = 0
    assert statuses(v, [request_]) == [status]


def test_limits_count_pending_amounts() -> None:
    """With debits limited to credits, a hold uses up room just like a posted debit."""
    v = view(consumer("alice"), provider("pool"), funded={"alice": 100})
    assert statuses(v, [pending("h1", "alice", "pool", 60), single("t2", "alice", "pool", 41)]) == [
        "created",
        "exceeds_credits",
    ]
    assert statuses(v, [single("t3", "alice", "pool", 40)]) == ["created"]
    assert v.accounts["alice"].balance.as_tuple() == (60, 40, 0, 100)


def test_credit_limit() -> None:
    """With credits limited to debits, an account cannot be credited beyond what it was debited."""
    capped = AccountSpec("cap", "CNY", AccountKind.ESCROW, credits_must_not_exceed_debits=True)
    v = view(capped, provider("b"))
    assert statuses(v, [single("t1", "b", "cap", 1)]) == ["exceeds_debits"]
    assert statuses(
        v, [single("t2", "cap", "b", 5), single("t3", "b", "cap", 5), single("t4", "b", "cap", 1)]
    ) == [
        "created",
        "created",
        "exceeds_debits",
    ]


def test_overflow_is_refused() -> None:
    """A transfer that would push a total past 2^63 − 1 is refused, not wrapped."""
    v = view(provider("a"), provider("b"))
    v.accounts["b"].balance.credits_posted = MAX_BALANCE - 10
    assert statuses(v, [single("t1", "a", "b", 11)]) == ["overflow"]
    assert statuses(v, [single("t2", "a", "b", 10)]) == ["created"]


def test_post_partial_releases_the_rest() -> None:
    """Posting part of a hold moves that part to posted and releases the remainder."""
    v = view(consumer("alice"), provider("pool"), funded={"alice": 100})
    assert statuses(v, [pending("h1", "alice", "pool", 80, trade_id="trade-1")]) == ["created"]
    outcome = apply_batch(v, [post("p1", "h1", 30)], 2_000, 1)
    assert outcome.results[0].status is Status.CREATED
    assert v.accounts["alice"].balance.as_tuple() == (0, 30, 0, 100)
    assert v.accounts["pool"].balance.as_tuple() == (0, 0, 0, 30)
    [record] = outcome.created
    assert (record.pending_id, record.pending_amount, record.amount) == ("h1", 80, 30)
    assert record.trade_id == "trade-1"  # taken from the hold
    assert outcome.resolved == ["h1"]


def test_void_releases_everything() -> None:
    """Voiding a hold releases all of it and posts nothing."""
    v = view(consumer("alice"), provider("pool"), funded={"alice": 100})
    statuses(v, [pending("h1", "alice", "pool", 80)])
    assert statuses(v, [void("v1", "h1")]) == ["created"]
    assert v.accounts["alice"].balance.as_tuple() == (0, 0, 0, 100)


def test_a_hold_resolves_once() -> None:
    """After a post, a second post, a void or an expiry of the same hold are refused as already posted."""
    v = view(provider("a"), provider("b"))
    statuses(v, [pending("h1", "a", "b", 10, timeout_s=5)])
    assert statuses(v, [post("p1", "h1", 10)]) == ["created"]
    assert statuses(v, [post("p2", "h1", 1), void("v1", "h1")]) == [
        "pending_transfer_already_posted",
        "pending_transfer_already_posted",
    ]
    hold = v.transfers["h1"]
    assert expire_holds(v, [hold], 10**9, 5).created == []


@pytest.mark.parametrize(
    ("request_", "status", "field"),
    [
        (post("p", "missing", 1), Status.PENDING_TRANSFER_NOT_FOUND, "pending_id"),
        (post("p", "plain", 1), Status.PENDING_TRANSFER_NOT_PENDING, "pending_id"),
        (post("p", "h1", 11), Status.EXCEEDS_PENDING_TRANSFER_AMOUNT, "amount"),
        (post("p", "h1", 5, debit_account="b"), Status.PENDING_TRANSFER_MISMATCH, "debit_account"),
        (post("p", "h1", 5, currency="USD"), Status.PENDING_TRANSFER_MISMATCH, "currency"),
    ],
)
def test_resolution_rules(request_: TransferRequest, status: Status, field: str) -> None:
    """A resolution needs an existing hold, no more than its amount, and matching accounts if given."""
    v = view(provider("a"), provider("b"))
    statuses(v, [pending("h1", "a", "b", 10), single("plain", "a", "b", 1)])
    [result] = apply_batch(v, [request_], 2_000, 2).results
    assert (result.status, result.field) == (status, field)


def test_deadline_beats_late_clients() -> None:
    """At or after a hold's deadline a post is refused as expired; the sweeper then expires it."""
    v = view(provider("a"), provider("b"))
    apply_batch(v, [pending("h1", "a", "b", 10, timeout_s=2)], 1_000, 0)
    assert v.transfers["h1"].expires_ms == 3_000
    [late] = apply_batch(v, [post("p1", "h1", 10)], 3_000, 1).results
    assert late.status is Status.PENDING_TRANSFER_EXPIRED
    assert expire_holds(v, [v.transfers["h1"]], 2_999, 1).created == []
    [expired] = expire_holds(v, [v.transfers["h1"]], 3_000, 1).created
    assert (expired.id, expired.kind, expired.amount, expired.pending_amount) == (
        "~expire:h1",
        TransferKind.EXPIRE,
        0,
        10,
    )
    assert v.accounts["a"].balance.as_tuple() == (0, 0, 0, 0)
    [again] = apply_batch(v, [void("v1", "h1")], 4_000, 2).results
    assert again.status is Status.PENDING_TRANSFER_ALREADY_EXPIRED


def test_transition_table_is_complete() -> None:
    """Only a pending hold moves, to exactly one state per resolving kind; every other pair is refused."""
    kinds = (TransferKind.POST, TransferKind.VOID, TransferKind.EXPIRE)
    for state in HoldState:
        for kind in kinds:
            result = transition(state, kind)
            if state is HoldState.PENDING:
                assert result is TRANSITIONS[(state, kind)]
            else:
                assert result is REFUSALS[state]


def test_linked_chain_succeeds_as_a_whole() -> None:
    """A closed chain whose members all succeed creates every transfer, with consecutive seqs."""
    v = view(provider("a"), provider("b"), provider("fee"))
    chain = [single("t1", "a", "b", 90, linked=True), single("t2", "a", "fee", 10)]
    outcome = apply_batch(v, chain, 1, 0)
    assert [r.status for r in outcome.results] == [Status.CREATED, Status.CREATED]
    assert [t.seq for t in outcome.created] == [0, 1]


def test_linked_chain_fails_as_a_whole() -> None:
    """When one member fails, the chain's earlier effects are undone and its others say linked_event_failed."""
    v = view(consumer("alice"), provider("pool"), provider("fee"), funded={"alice": 100})
    batch = [
        single("before", "alice", "pool", 10),
        pending("h1", "alice", "pool", 50, linked=True),
        single("leg2", "alice", "fee", 30, linked=True),
        single("leg3", "alice", "fee", 30),  # 10 + 50 + 30 + 30 > 100
        single("after", "alice", "pool", 5),
    ]
    outcome = apply_batch(v, batch, 1, 0)
    assert [str(r.status) for r in outcome.results] == [
        "created",
        "linked_event_failed",
        "linked_event_failed",
        "exceeds_credits",
        "created",
    ]
    assert [t.id for t in outcome.created] == ["before", "after"]
    assert [t.seq for t in outcome.created] == [0, 1]
    assert v.accounts["alice"].balance.as_tuple() == (0, 15, 0, 100)
    assert "h1" not in v.transfers
    assert "h1" not in v.holds
    assert [f.id for f in outcome.failures] == ["leg3"]  # the chain's others may be retried


def test_open_chain_fails() -> None:
    """A batch that ends inside a chain fails the chain: linked_event_failed, then linked_event_chain_open."""
    v = view(provider("a"), provider("b"))
    outcome = apply_batch(v, [single("t1", "a", "b", 1), single("t2", "a", "b", 1, linked=True)], 1, 0)
    assert [str(r.status) for r in outcome.results] == ["created", "linked_event_chain_open"]
    outcome = apply_batch(
        v, [single("t3", "a", "b", 1, linked=True), single("t4", "a", "b", 1, linked=True)], 1, 1
    )
    assert [str(r.status) for r in outcome.results] == ["linked_event_failed", "linked_event_chain_open"]
    assert outcome.created == []


def test_duplicates_inside_one_batch() -> None:
    """The second copy of an id in the same batch answers exists (or names the differing field)."""
    v = view(provider("a"), provider("b"))
    outcome = apply_batch(
        v, [single("t1", "a", "b", 5), single("t1", "a", "b", 5), single("t1", "a", "b", 6)], 1, 0
    )
    assert [(str(r.status), r.field) for r in outcome.results] == [
        ("created", None),
        ("exists", None),
        ("exists_with_different_field", "amount"),
    ]
    assert len(outcome.created) == 1


def test_hold_and_its_post_in_one_batch() -> None:
    """A hold created earlier in the same batch can be posted later in it."""
    v = view(provider("a"), provider("b"))
    outcome = apply_batch(v, [pending("h1", "a", "b", 10), post("p1", "h1", 4)], 1, 0)
    assert [r.status for r in outcome.results] == [Status.CREATED, Status.CREATED]
    assert v.accounts["b"].balance.as_tuple() == (0, 0, 0, 4)


def test_request_from_json_rejects_unknown_fields() -> None:
    """Requests built from JSON refuse unknown fields and unknown kinds with a clear message."""
    with pytest.raises(ValueError, match="unknown field"):
        TransferRequest.from_dict({"id": "t", "kind": "single", "colour": "red"})
    with pytest.raises(ValueError, match="kind must be one of"):
        TransferRequest.from_dict({"id": "t", "kind": "refund"})
    parsed = TransferRequest.from_dict({"id": "t", "kind": "single", "amount": 5})
    assert parsed.kind is TransferKind.SINGLE
