"""Concurrent writers on SQLite and PostgreSQL: threads with their own connections, and processes."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest
from nacl.signing import SigningKey
from sqlalchemy.engine import Engine

from ledger import (
    Status,
    TransferResult,
    audit_log,
    expire_due,
    get_account,
    make_checkpoint,
    prove_inclusion,
    submit,
)
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.store.log import StoredCheckpoint, list_checkpoints
from node.db import make_engine
from tests.ledger.processes import finish, start
from tests.ledger.support import all_transfers, balances, open_accounts, pending, post, replayed, single, void

pytestmark = pytest.mark.slow


def together(tasks: list[Callable[[], Any]]) -> list[Any]:
    """Run the tasks on their own threads, released at the same moment by a barrier."""
    barrier = threading.Barrier(len(tasks))

    def run(task: Callable[[], Any]) -> Any:
        barrier.wait(timeout=30)
        return task()

    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        return list(pool.map(run, tasks, timeout=120))


@pytest.fixture(name="wide_engine")
def fixture_wide_engine(engine: Engine, db_url: str) -> Iterator[Engine]:  # noqa: ARG001 (`engine` migrates first)
    """An engine on the same (migrated) database with room for many simultaneous connections."""
    wide = make_engine(db_url, pool_size=16)
    yield wide
    wide.dispose()


def test_64_submitters_cannot_overdraw(engine: Engine, wide_engine: Engine) -> None:
    """64 concurrent submitters spending from one limited account: exactly what fits succeeds, no overdraft."""
    open_accounts(engine, "alice", "shop", "bank", no_overdraft=("alice",))
    submit(engine, [single("fund", "bank", "alice", 1_000)])

    def spend(worker: int) -> list[TransferResult]:
        results = []
        for n in range(4):
            results += submit(wide_engine, [single(f"w{worker}-{n}", "alice", "shop", 10)])
        return results

    outcomes = Counter(r.status for batch in together([partial(spend, w) for w in range(64)]) for r in batch)
    assert outcomes == {Status.CREATED: 100, Status.EXCEEDS_CREDITS: 156}
    alice = get_account(engine, "alice").balance
    assert alice.debits_posted == alice.credits_posted == 1_000
    assert balances(engine) == replayed(engine)


def test_post_void_and_expire_race_on_one_hold(engine: Engine, wide_engine: Engine) -> None:
    """Post, void and the expiry sweeper racing on the same hold: exactly one of them resolves it."""
    open_accounts(engine, "a", "b")
    winners: Counter[str] = Counter()
    for round_ in range(8):
        hold = f"h{round_}"
        [created] = submit(engine, [pending(hold, "a", "b", 10, timeout_s=1)], now=1_000 + round_)
        assert created.status is Status.CREATED
        deadline = 2_000 + round_
        results = together(
            [
                partial(submit, wide_engine, [post(f"p-{hold}", hold, 10)], now=deadline - 1),
                partial(submit, wide_engine, [void(f"v-{hold}", hold)], now=deadline - 1),
                partial(expire_due, wide_engine, now=deadline),
            ]
        )
        [posted], [voided], expired = results
        won = [
            name for name, ok in (("post", posted.ok), ("void", voided.ok), ("expire", bool(expired))) if ok
        ]
        assert len(won) == 1, (posted, voided, expired)
        winners[won[0]] += 1
        resolutions = [t for t in all_transfers(engine) if t.pending_id == hold]
        assert len(resolutions) == 1
    assert sum(winners.values()) == 8
    assert get_account(engine, "a").balance.debits_pending == 0
    assert balances(engine) == replayed(engine)


def test_identical_submissions(engine: Engine, wide_engine: Engine) -> None:
    """The same transfer submitted by 24 clients at once: one created, the rest exists, money moves once."""
    open_accounts(engine, "a", "b")
    results = together([lambda: submit(wide_engine, [single("same", "a", "b", 7)])[0] for _ in range(24)])
    assert Counter(r.status for r in results) == {Status.CREATED: 1, Status.EXISTS: 23}
    assert {r.seq for r in results} == {0}
    assert get_account(engine, "b").balance.credits_posted == 7


def test_opposite_batches_do_not_deadlock(engine: Engine, wide_engine: Engine) -> None:
    """Simultaneous A→B and B→A batches over shared accounts all complete, with nothing lost."""
    names = [f"acct{i}" for i in range(6)]
    open_accounts(engine, *names)

    def batch(worker: int, forward: bool) -> list[TransferResult]:
        results = []
        for n in range(5):
            order = names if forward else list(reversed(names))
            transfers = [
                single(f"w{worker}-{n}-{i}", order[i], order[i + 1], 1 + i) for i in range(len(order) - 1)
            ]
            results += submit(wide_engine, transfers)
        return results

    results = together([partial(batch, w, forward=w % 2 == 0) for w in range(12)])
    assert all(r.status is Status.CREATED for batch_ in results for r in batch_)
    assert len(all_transfers(engine)) == 12 * 5 * 5
    assert balances(engine) == replayed(engine)


def test_several_processes_share_one_database(engine: Engine, db_url: str) -> None:
    """Four writer processes on one database (one SQLite file, or one PostgreSQL schema): no lost write."""
    open_accounts(engine, "a", "b")
    workers = [start(db_url, "batch", f"p{n}", "150", "15") for n in range(4)]
    reports = [finish(worker) for worker in workers]
    assert reports == ["done 150"] * 4
    stored = all_transfers(engine)
    assert len(stored) == 600
    assert [t.seq for t in stored] == list(range(600))
    assert get_account(engine, "a").balance.debits_posted == 600
    assert balances(engine) == replayed(engine)


def test_replicas_racing_to_checkpoint(engine: Engine, wide_engine: Engine) -> None:
    """Eight replicas sign a checkpoint at the same moment: one checkpoint row at the log's size, every
    replica gets it, the subtree hashes are stored once and right, and proofs from them verify."""
    key = SigningKey.generate()
    open_accounts(engine, "a", "b")
    for low in range(0, 1100, 550):
        submit(engine, [single(f"t{i}", "b", "a", 1) for i in range(low, low + 550)])
    results = together([partial(make_checkpoint, wide_engine, key, "n.cpnode/ledger", force=True)] * 8)
    assert {(r.size, r.checkpoint.root) for r in results} == {(1100, results[0].checkpoint.root)}
    assert [c.size for c in list_checkpoints_of(engine)] == [1100]
    assert audit_log(engine) == []
    leaf = leaf_hash(all_transfers(engine)[700].leaf_data())
    verify_inclusion(700, 1100, leaf, prove_inclusion(engine, 700, 1100), results[0].checkpoint.root)


def list_checkpoints_of(engine: Engine) -> list[StoredCheckpoint]:
    """Every stored checkpoint, smallest first."""
    with engine.connect() as conn:
        return list_checkpoints(conn)
