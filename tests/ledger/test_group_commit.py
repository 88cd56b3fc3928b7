"""Group commit, on both backends: concurrent callers through `GroupCommitter` get exactly what the same
requests submitted one by one would have given them.

The committer reports each transaction's batches in the order it applied them; the property test
replays that order with plain `submit`, one transaction per caller, on a second database of the same
backend and on the plain in-memory model (tests/ledger/model.py), and requires the same results
(status, field, message, seq), the same log, the same remembered failures and the same balances,
plus the order-independent invariants (debits = credits per currency, balances = replay, limits).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from ledger import (
    AccountKind,
    AccountSpec,
    Group,
    GroupCommitter,
    Status,
    TransferKind,
    TransferRequest,
    TransferResult,
    create_accounts,
    get_account,
    list_accounts,
    submit,
)
from ledger.balances import currency_totals, double_entry_problems, limit_violation
from ledger.store.reads import log_size
from ledger.store.schema import failures
from tests.ledger.grouping import DEADLINE_S, gathered, write_lock_held
from tests.ledger.model import Model
from tests.ledger.support import all_transfers, balances, open_accounts, replayed, single
from tests.support.examples import examples
from tests.support.polling import eventually, wait_for

EXAMPLES = itertools.count()
NAMES = ("bank", "alice", "bob", "pool", "escrow", "usd")
LIMITED = ("alice", "bob")


def specs(prefix: str) -> list[AccountSpec]:
    """One example's accounts: a bank, two consumers that cannot overdraw, a pool, an escrow that
    cannot be credited beyond its debits, and an account in another currency."""
    return [
        AccountSpec(f"{prefix}bank", "CNY", AccountKind.EXTERNAL),
        *(AccountSpec(f"{prefix}{n}", "CNY", AccountKind.CONSUMER, True) for n in LIMITED),
        AccountSpec(f"{prefix}pool", "CNY", AccountKind.PROVIDER),
        AccountSpec(f"{prefix}escrow", "CNY", AccountKind.ESCROW, credits_must_not_exceed_debits=True),
        AccountSpec(f"{prefix}usd", "USD", AccountKind.PROVIDER),
    ]


def requests_of(prefix: str) -> st.SearchStrategy[TransferRequest]:
    """Requests over small pools of ids (so callers collide: exists, a different field, failed ids):
    transfers and holds between the example's accounts (now and then a missing one, the other
    currency's, the same on both sides, or an invalid amount of 0), posts and voids of the holds any
    caller made, and linked flags (chains, failing chains, chains left open at a caller's end)."""
    good = [f"{prefix}{name}" for name in ("bank", "alice", "bob", "pool")]
    account = st.sampled_from([*good * 4, *(f"{prefix}{name}" for name in ("escrow", "usd", "ghost"))])
    amount = st.sampled_from([0, *range(1, 61)])
    linked = st.sampled_from([False] * 4 + [True])
    hold_ids = st.integers(0, 5).map(lambda k: f"{prefix}h{k}")

    def two_sided(kind: TransferKind, ids: st.SearchStrategy[str]) -> st.SearchStrategy[TransferRequest]:
        return st.builds(
            lambda i, d, c, a, ln: TransferRequest(i, kind, d, c, "CNY", a, linked=ln),
            ids,
            account,
            account,
            amount,
            linked,
        )

    resolution_ids = st.integers(0, 9).map(lambda k: f"{prefix}r{k}")
    post = st.builds(
        lambda i, h, a, ln: TransferRequest(i, TransferKind.POST, pending_id=h, amount=a, linked=ln),
        resolution_ids,
        hold_ids,
        st.integers(1, 60),
        linked,
    )
    void = st.builds(
        lambda i, h, ln: TransferRequest(i, TransferKind.VOID, pending_id=h, linked=ln),
        resolution_ids,
        hold_ids,
        linked,
    )
    singles = two_sided(TransferKind.SINGLE, st.integers(0, 19).map(lambda k: f"{prefix}t{k}"))
    holds = two_sided(TransferKind.PENDING, hold_ids)
    return st.one_of(singles, singles, holds, holds, post, void)


def run_callers(
    committer: GroupCommitter, engine: Engine, batches: Sequence[list[TransferRequest]], mode: str, hold: bool
) -> list[list[TransferResult]]:
    """Submit every batch at once from its own thread or asyncio task; with `hold`, the write lock is
    held until all of them have reached the committer, so they share transactions for certain."""
    if mode == "threads":
        with ThreadPoolExecutor(len(batches)) as pool:
            if not hold:
                return list(pool.map(committer.submit, batches, timeout=120))
            with write_lock_held(engine):
                futures = [pool.submit(committer.submit, batch) for batch in batches]
                wait_for(gathered(committer, len(batches)), DEADLINE_S, "every caller at the committer")
            return [future.result(timeout=120) for future in futures]

    async def tasks() -> list[list[TransferResult]]:
        if not hold:
            return list(await asyncio.gather(*(committer.submit_async(b) for b in batches)))
        with write_lock_held(engine):
            running = [asyncio.ensure_future(committer.submit_async(b)) for b in batches]
            await eventually(gathered(committer, len(batches)), DEADLINE_S, "every caller at the committer")
        return list(await asyncio.gather(*running))

    return asyncio.run(tasks())


def example_log(engine: Engine, first_seq: int) -> list[tuple[Any, ...]]:
    """The transfers stored from `first_seq` on, with seq made relative and times left out."""
    return [
        (t.seq - first_seq, *t[1:10], *t[11:13], *t[14:]) for t in all_transfers(engine) if t.seq >= first_seq
    ]


def remembered(engine: Engine, prefix: str) -> set[tuple[str, str, str | None]]:
    """The remembered failures of one example: (id, status, field)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(failures.c.id, failures.c.status, failures.c.field)).all()
    return {(r.id, r.status, r.field) for r in rows if r.id.startswith(prefix)}


def comparable(results: list[TransferResult], first_seq: int) -> list[tuple[Any, ...]]:
    """Results with their seq made relative to the example's first."""
    return [
        (r.index, r.id, r.status, r.field, None if r.seq is None else r.seq - first_seq, r.message)
        for r in results
    ]


@pytest.mark.slow
@settings(
    max_examples=examples(20),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_concurrent_callers_equal_one_by_one(
    engine: Engine, partner_engine: Engine, data: st.DataObject
) -> None:
    """Concurrent callers (threads or tasks, gathered or free) get the results, log, failures and
    balances that submitting their batches one by one, in the order applied, gives on another database
    and in the plain model; debits equal credits, balances replay and limits hold."""
    prefix = f"g{next(EXAMPLES)}-"
    batches = data.draw(
        st.lists(st.lists(requests_of(prefix), min_size=1, max_size=3), min_size=4, max_size=24)
    )
    mode = data.draw(st.sampled_from(["threads", "tasks"]), label="mode")
    hold = data.draw(st.booleans(), label="hold the write lock until all have arrived")
    funding = [single(f"{prefix}fund-{n}", f"{prefix}bank", f"{prefix}{n}", 100) for n in LIMITED]
    first = {}
    for db in (engine, partner_engine):
        first[db] = log_size(db)
        assert all(r.ok for r in create_accounts(db, specs(prefix)))
        assert all(r.ok for r in submit(db, funding))
    model = Model(first_seq=0, last_ts=0)
    for spec in specs(prefix):
        model.create_account(spec)
    model.submit(funding, 1)

    groups: list[Group] = []
    committer = GroupCommitter(engine, on_commit=groups.append)
    try:
        grouped = run_callers(committer, engine, batches, mode, hold)
    finally:
        committer.close()
    assert committer.stats.callers == len(batches)
    if hold:  # the first transaction waited for the lock; the rest gathered behind it
        assert committer.stats.largest >= (len(batches) + 1) // 2

    caller_of = {id(batch): n for n, batch in enumerate(batches)}
    applied = [caller_of[id(batch)] for group in groups for batch in group.batches]
    assert sorted(applied) == list(range(len(batches)))
    for n in applied:
        one_by_one = submit(partner_engine, batches[n])
        assert comparable(grouped[n], first[engine]) == comparable(one_by_one, first[partner_engine])
        assert [(str(r.status), r.field) for r in grouped[n]] == model.submit(batches[n], 2)

    assert example_log(engine, first[engine]) == example_log(partner_engine, first[partner_engine])
    assert remembered(engine, prefix) == remembered(partner_engine, prefix)
    ours = {k: v for k, v in balances(engine).items() if k.startswith(prefix)}
    assert ours == {k: v for k, v in balances(partner_engine).items() if k.startswith(prefix)}
    assert balances(engine) == replayed(engine)
    accounts = [a for a in list_accounts(engine) if a.id.startswith(prefix)]
    totals = currency_totals({a.id: a.balance for a in accounts}, {a.id: a.spec.currency for a in accounts})
    assert double_entry_problems(totals) == []
    assert all(limit_violation(a.spec, a.balance) is None for a in accounts)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["threads", "tasks"])
def test_64_grouped_submitters_cannot_overdraw(engine: Engine, mode: str) -> None:
    """64 concurrent callers through one committer, 4 transfers of 10 each from an account holding
    1,000: exactly 100 are created, the rest refused, and the transfers were grouped."""
    open_accounts(engine, "alice", "shop", "bank", no_overdraft=("alice",))
    submit(engine, [single("fund", "bank", "alice", 1_000)])
    committer = GroupCommitter(engine)

    def spend(worker: int) -> list[TransferResult]:
        return [
            r for n in range(4) for r in committer.submit([single(f"w{worker}-{n}", "alice", "shop", 10)])
        ]

    async def spend_async(worker: int) -> list[TransferResult]:
        results = []
        for n in range(4):
            results += await committer.submit_async([single(f"w{worker}-{n}", "alice", "shop", 10)])
        return results

    async def all_tasks() -> list[list[TransferResult]]:
        return list(await asyncio.gather(*(spend_async(w) for w in range(64))))

    try:
        if mode == "threads":
            with ThreadPoolExecutor(64) as pool:
                outcome = list(pool.map(spend, range(64), timeout=120))
        else:
            outcome = asyncio.run(all_tasks())
    finally:
        committer.close()
    statuses = Counter(r.status for results in outcome for r in results)
    assert statuses == {Status.CREATED: 100, Status.EXCEEDS_CREDITS: 156}
    alice = get_account(engine, "alice").balance
    assert alice.debits_posted == alice.credits_posted == 1_000
    assert balances(engine) == replayed(engine)
    assert committer.stats.largest > 1
    assert committer.stats.transactions < committer.stats.callers


@pytest.mark.parametrize("mode", ["threads", "tasks"])
def test_identical_submissions_one_created(engine: Engine, mode: str) -> None:
    """32 callers sending the same transfer in one shared transaction: one created, 31 exists with its
    seq; a 33rd with a different amount is told which field differs."""
    open_accounts(engine, "a", "b")
    same = [[single("dup", "a", "b", 7)] for _ in range(32)]
    differs = [single("dup", "a", "b", 8)]
    committer = GroupCommitter(engine)
    try:
        results = run_callers(committer, engine, [*same, differs], mode, hold=True)
    finally:
        committer.close()
    statuses = Counter(r.status for [r] in results[:32])
    assert statuses == {Status.CREATED: 1, Status.EXISTS: 31}
    assert {r.seq for [r] in results[:32]} == {all_transfers(engine)[0].seq}
    [other] = results[32]
    assert (other.status, other.field) == (Status.EXISTS_WITH_DIFFERENT_FIELD, "amount")
    assert get_account(engine, "b").balance.credits_posted == 7
    assert committer.stats.largest >= 17


def test_chains_stay_whole_and_failures_stay_with_their_caller(engine: Engine) -> None:
    """In one shared transaction: a chain that fails undoes only itself, a chain left open fails only
    its own caller's requests (it never joins the next caller's), and refusals touch nobody else."""
    open_accounts(engine, "bank", "alice", "pool", no_overdraft=("alice",))
    submit(engine, [single("fund", "bank", "alice", 50)])
    batches = [
        [single("c1-a", "alice", "pool", 30, linked=True), single("c1-b", "alice", "pool", 30)],  # fails
        [single("open-a", "bank", "pool", 1, linked=True), single("open-b", "bank", "pool", 1, linked=True)],
        [single("next", "bank", "pool", 5)],
        [single("c2-a", "alice", "pool", 20, linked=True), single("c2-b", "pool", "bank", 1)],  # fits
        [single("bad", "ghost", "pool", 1), single("zero", "bank", "pool", 0)],
        [single("after", "alice", "pool", 30)],  # exactly what is left once c2 took 20
    ]
    committer = GroupCommitter(engine)
    try:
        results = run_callers(committer, engine, batches, "tasks", hold=True)
    finally:
        committer.close()
    got = [[(r.index, r.status) for r in caller] for caller in results]
    assert got == [
        [(0, Status.LINKED_EVENT_FAILED), (1, Status.EXCEEDS_CREDITS)],
        [(0, Status.LINKED_EVENT_FAILED), (1, Status.LINKED_EVENT_CHAIN_OPEN)],
        [(0, Status.CREATED)],
        [(0, Status.CREATED), (1, Status.CREATED)],
        [(0, Status.DEBIT_ACCOUNT_NOT_FOUND), (1, Status.INVALID_REQUEST)],
        [(0, Status.CREATED)],
    ]
    assert results[0][0].message == "linked request 1 failed: exceeds_credits"  # indexes are the caller's
    assert [t.id for t in all_transfers(engine)] == ["fund", "next", "c2-a", "c2-b", "after"]
    assert get_account(engine, "alice").balance.debits_posted == 50
    assert balances(engine) == replayed(engine)


def test_keys_postgresql_text_cannot_hold_fail_only_their_request(engine: Engine) -> None:
    """A request naming an id, account or hold with a NUL (JSON "\\u0000") is refused as invalid on
    both backends; on PostgreSQL it used to fail the whole transaction (503), and so every caller
    sharing it."""
    open_accounts(engine, "a", "b")
    hostile = [
        [single("x\x00y", "a", "b", 1)],
        [single("t-debit", "a\x00", "b", 1)],
        [TransferRequest("t-post", TransferKind.POST, pending_id="h\x00", amount=1)],
    ]
    committer = GroupCommitter(engine)
    try:
        results = run_callers(
            committer, engine, [*hostile, [single("fine", "a", "b", 2)]], "threads", hold=True
        )
    finally:
        committer.close()
    assert [(r.status, r.field) for [r] in results] == [
        (Status.INVALID_REQUEST, "id"),
        (Status.INVALID_REQUEST, "debit_account"),
        (Status.INVALID_REQUEST, "pending_id"),
        (Status.CREATED, None),
    ]
    assert [t.id for t in all_transfers(engine)] == ["fine"]


def test_threads_and_tasks_share_one_committer(engine: Engine) -> None:
    """Threads calling `submit` and asyncio tasks calling `submit_async` at the same time, 16 of each:
    every transfer lands once and each caller gets its own result."""
    open_accounts(engine, "a", "b")
    committer = GroupCommitter(engine)

    async def tasks() -> list[list[TransferResult]]:
        return list(
            await asyncio.gather(
                *(committer.submit_async([single(f"task{n}", "a", "b", 1)]) for n in range(16))
            )
        )

    try:
        with ThreadPoolExecutor(17) as pool:
            threads = [pool.submit(committer.submit, [single(f"thread{n}", "a", "b", 1)]) for n in range(16)]
            from_tasks = pool.submit(partial(asyncio.run, tasks()))
            results = [f.result(timeout=120) for f in threads] + from_tasks.result(timeout=120)
    finally:
        committer.close()
    assert [(r.index, r.id, r.status) for [r] in results] == [
        (0, name, Status.CREATED)
        for name in [*(f"thread{n}" for n in range(16)), *(f"task{n}" for n in range(16))]
    ]
    assert sorted(t.seq for t in all_transfers(engine)) == list(range(32))
    assert get_account(engine, "b").balance.credits_posted == 32
