"""Hypothesis: random sequences of ledger operations against the plain in-memory model, on both backends.

After every step the database must agree with the model (every result, every balance, every stored
transfer) and the seven invariants must hold:
1. per currency, debits equal credits, pending and posted alike;
2. balances equal a replay of the transfers in sequence order;
3. balance limits hold, pending amounts counted;
4. a hold resolves at most once, a post never exceeds it, resolving releases the rest;
5. the sequence has no gaps and stored transfers never change;
6. same id and body → exists, a different body → the differing field, a failed id stays failed;
7. every checkpoint root is the RFC 9162 tree hash of the transfers up to its size, and consecutive
   checkpoints are consistent.
Each example works in its own account ids and currencies, so examples share one database.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from nacl.signing import SigningKey
from sqlalchemy.engine import Engine

from ledger import (
    AccountKind,
    AccountSpec,
    Balance,
    ConflictError,
    Transfer,
    TransferKind,
    TransferRequest,
    audit_log,
    close_account,
    create_accounts,
    expire_due,
    list_accounts,
    make_checkpoint,
    submit,
)
from ledger.balances import currency_totals, double_entry_problems, limit_violation, replay
from ledger.store.db import transfer_from_row
from ledger.store.reads import read_head
from ledger.store.schema import transfers
from tests.ledger.model import Model
from tests.support.examples import examples

EXAMPLES = itertools.count()
KINDS = [
    AccountKind.CONSUMER,
    AccountKind.PROVIDER,
    AccountKind.PARTNER,
    AccountKind.ESCROW,
    AccountKind.FEES,
]


# A Hypothesis state machine is one class of rules closed over the engine under test.
def machine_for(engine: Engine, key: SigningKey) -> type[RuleBasedStateMachine]:  # noqa: C901
    """A state machine class bound to one database and one node key."""

    class LedgerMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            n = next(EXAMPLES)
            self.prefix = f"e{n}-"
            self.currencies = [f"C{n}A", f"C{n}B"]
            with engine.connect() as conn:
                head = read_head(conn)
            self.model = Model(first_seq=head.size, last_ts=head.last_ts_ms)
            self.now = head.last_ts_ms + 1
            self.account_ids: list[str] = []
            self.sent: list[TransferRequest] = []
            self.ids = itertools.count()
            self.snapshot: list[dict[str, Any]] = []

        # -- operations ---------------------------------------------------------------------

        @initialize()
        def open_books(self) -> None:
            currency, other = self.currencies
            specs = [
                AccountSpec(f"{self.prefix}bank", currency, AccountKind.EXTERNAL),
                AccountSpec(
                    f"{self.prefix}alice", currency, AccountKind.CONSUMER, debits_must_not_exceed_credits=True
                ),
                AccountSpec(
                    f"{self.prefix}bob", currency, AccountKind.CONSUMER, debits_must_not_exceed_credits=True
                ),
                AccountSpec(f"{self.prefix}pool", currency, AccountKind.PROVIDER),
                AccountSpec(
                    f"{self.prefix}escrow", currency, AccountKind.ESCROW, credits_must_not_exceed_debits=True
                ),
                AccountSpec(f"{self.prefix}peer", other, AccountKind.PARTNER, partner="peer"),
            ]
            for spec in specs:
                [result] = create_accounts(engine, [spec], now=self.now)
                assert (str(result.status), result.field) == self.model.create_account(spec)
                self.account_ids.append(spec.id)
            funding = [
                TransferRequest(
                    f"{self.prefix}fund-{name}",
                    TransferKind.SINGLE,
                    f"{self.prefix}bank",
                    f"{self.prefix}{name}",
                    currency,
                    500,
                )
                for name in ("alice", "bob")
            ]
            assert [str(r.status) for r in submit(engine, funding, now=self.now)] == ["created", "created"]
            self.model.submit(funding, self.now)

        @rule(data=st.data())
        def open_account(self, data: st.DataObject) -> None:
            reuse = bool(self.account_ids) and data.draw(st.booleans(), label="reuse id")
            account_id = (
                data.draw(st.sampled_from(self.account_ids))
                if reuse
                else f"{self.prefix}a{len(self.account_ids)}"
            )
            kind = data.draw(st.sampled_from(KINDS))
            limit = data.draw(st.sampled_from(["none", "debits", "credits"]))
            spec = AccountSpec(
                account_id,
                data.draw(st.sampled_from(self.currencies)),
                kind,
                debits_must_not_exceed_credits=limit == "debits",
                credits_must_not_exceed_debits=limit == "credits",
                partner="peer" if kind is AccountKind.PARTNER else None,
            )
            [result] = create_accounts(engine, [spec], now=self.now)
            assert (str(result.status), result.field) == self.model.create_account(spec)
            if not reuse:
                self.account_ids.append(account_id)

        def _request(self, data: st.DataObject) -> TransferRequest:
            holds = [r.id for r in self.sent if r.kind is TransferKind.PENDING]
            kinds = [TransferKind.SINGLE, TransferKind.PENDING, TransferKind.SINGLE, TransferKind.PENDING]
            if holds:
                kinds += [TransferKind.POST, TransferKind.POST, TransferKind.VOID]
            kind = data.draw(st.sampled_from(kinds))
            if self.sent and data.draw(st.integers(0, 9)) == 0:
                transfer_id = data.draw(st.sampled_from(self.sent)).id  # an id used before
            else:
                transfer_id = f"{self.prefix}t{next(self.ids)}"
            accounts = [*self.account_ids, f"{self.prefix}ghost"]
            linked = data.draw(st.integers(0, 4)) == 0
            if kind in (TransferKind.SINGLE, TransferKind.PENDING):
                debit = data.draw(st.sampled_from(accounts))
                known = self.model.s.accounts.get(debit)
                currency = (
                    known.spec.currency
                    if known is not None and data.draw(st.integers(0, 9))
                    else data.draw(st.sampled_from(self.currencies))
                )
                amounts = [st.integers(1, 400)]
                funded = self.model.s.accounts.get(debit)
                if funded is not None:
                    room = funded.cpo - funded.dp - funded.dpo  # exercise the limit's edge exactly
                    amounts.append(st.sampled_from([max(room, 1), room + 1]))
                if data.draw(st.integers(0, 15)) == 0:
                    amounts = [st.just(0)]  # malformed
                amount = data.draw(st.one_of(*amounts))
                return TransferRequest(
                    transfer_id,
                    kind,
                    debit,
                    data.draw(st.sampled_from(accounts)),
                    currency,
                    amount,
                    timeout_s=data.draw(st.sampled_from([None, 1, 3, 30]))
                    if kind is TransferKind.PENDING
                    else None,
                    code=data.draw(st.integers(0, 3)),
                    linked=linked,
                    trade_id=data.draw(st.sampled_from([None, "trade-1", "trade-2"])),
                )
            holds.append(f"{self.prefix}nohold")
            return TransferRequest(
                transfer_id,
                kind,
                pending_id=data.draw(st.sampled_from(holds)),
                amount=data.draw(st.integers(1, 400)) if kind is TransferKind.POST else None,
                linked=linked,
            )

        @rule(data=st.data())
        def submit_batch(self, data: st.DataObject) -> None:
            self._submit(data)

        @rule(data=st.data())
        def submit_another_batch(self, data: st.DataObject) -> None:  # transfers are most of what happens
            self._submit(data)

        def _submit(self, data: st.DataObject) -> None:
            requests = [self._request(data) for _ in range(data.draw(st.integers(1, 5), label="batch size"))]
            results = submit(engine, requests, now=self.now)
            got = [(str(r.status), r.field) for r in results]
            assert got == self.model.submit(requests, self.now), requests
            self.sent.extend(requests)

        @rule(data=st.data())
        def resubmit(self, data: st.DataObject) -> None:
            if not self.sent:
                return
            created = [r for r in self.sent if r.id in self.model.s.transfers]
            use_created = bool(created) and data.draw(st.booleans())
            earlier = data.draw(st.sampled_from(created if use_created else self.sent))
            if data.draw(st.booleans()):
                earlier = dataclasses.replace(earlier, code=earlier.code + 1)
            results = submit(engine, [earlier], now=self.now)
            assert [(str(r.status), r.field) for r in results] == self.model.submit([earlier], self.now)

        @rule(ms=st.integers(0, 4_000))
        def advance_clock(self, ms: int) -> None:
            self.now += ms

        @rule()
        def sweep(self) -> None:
            expired = expire_due(engine, now=self.now)
            assert len(expired) == self.model.sweep(self.now)

        @rule(data=st.data())
        def close(self, data: st.DataObject) -> None:
            if not self.account_ids:
                return
            account_id = data.draw(st.sampled_from(self.account_ids))
            try:
                close_account(engine, account_id, now=self.now)
                closed = True
            except ConflictError:
                closed = False
            assert closed == self.model.close_account(account_id)

        @rule()
        def checkpoint(self) -> None:
            make_checkpoint(engine, key, "prop.cpnode/ledger", now=self.now)
            assert audit_log(engine) == []  # invariant 7

        # -- invariants ---------------------------------------------------------------------

        def _log(self) -> list[dict[str, Any]]:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.select(transfers)
                    .where(transfers.c.seq >= self.model.first_seq)
                    .order_by(transfers.c.seq)
                )
                return [transfer_from_row(row).to_dict() for row in rows]

        # One invariant reads the example's log and accounts once per step and checks all of them
        # (after a step nothing changes between the checks; reading per check cost 9 queries a step).
        @invariant()
        def every_invariant(self) -> None:
            log = self._log()
            accounts = list_accounts(engine, self.account_ids)
            balances = {a.id: a.balance for a in accounts}
            self._agrees_with_model(log, balances)
            self._double_entry(balances, {a.id: a.spec.currency for a in accounts})
            self._balances_replay(log, balances)
            for account in accounts:  # invariant 3
                assert limit_violation(account.spec, account.balance) is None
            self._holds_resolve_once(log)
            self._dense_and_unchanged(log)

        def _agrees_with_model(self, log: list[dict[str, Any]], balances: dict[str, Balance]) -> None:
            assert log == self.model.s.log
            assert {k: b.as_tuple() for k, b in balances.items()} == self.model.balances()

        def _double_entry(self, balances: dict[str, Balance], currency: dict[str, str]) -> None:
            assert double_entry_problems(currency_totals(balances, currency)) == []  # invariant 1

        def _balances_replay(self, log: list[dict[str, Any]], balances: dict[str, Balance]) -> None:
            transfers_ = [transfer_from_row_dict(r) for r in log]  # invariant 2
            replayed = replay(transfers_, {account_id: Balance() for account_id in self.account_ids})
            assert {k: b.as_tuple() for k, b in replayed.items()} == {
                k: b.as_tuple() for k, b in balances.items()
            }

        def _holds_resolve_once(self, log: list[dict[str, Any]]) -> None:
            holds = {r["id"]: r for r in log if r["kind"] == "pending"}  # invariant 4
            resolutions = [r for r in log if r["pending_id"] is not None]
            assert len({r["pending_id"] for r in resolutions}) == len(resolutions)
            for r in resolutions:
                hold = holds[r["pending_id"]]
                assert r["pending_amount"] == hold["amount"]
                assert 0 <= r["amount"] <= hold["amount"]
                assert (r["amount"] > 0) == (r["kind"] == "post")

        def _dense_and_unchanged(self, log: list[dict[str, Any]]) -> None:
            assert [r["seq"] for r in log] == list(  # invariant 5
                range(self.model.first_seq, self.model.first_seq + len(log))
            )
            assert log[: len(self.snapshot)] == self.snapshot
            self.snapshot = log

        def teardown(self) -> None:
            # Expire what is left so the next example's sweeps only see its own holds.
            expire_due(engine, now=self.now + 10**8)

    return LedgerMachine


def transfer_from_row_dict(row: dict[str, Any]) -> Transfer:
    """A Transfer from its dict form."""
    return Transfer.from_dict(row)


@pytest.mark.slow  # a long Hypothesis run
def test_random_operations_keep_every_invariant(engine: Engine, key: SigningKey) -> None:
    """Random account, transfer, hold, chain, retry, clock, sweep, close and checkpoint sequences agree
    with the in-memory model and keep all seven invariants after every step."""
    run_state_machine_as_test(
        machine_for(engine, key),
        settings=settings(
            max_examples=examples(40),
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            database=None,
        ),
    )
