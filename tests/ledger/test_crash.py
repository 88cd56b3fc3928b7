"""Faults with real processes killed by SIGKILL, on SQLite and PostgreSQL: after a restart the
balances replay exactly and retries answer "exists"."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey
from sqlalchemy.engine import Engine

from ledger import (
    Status,
    audit_log,
    current_checkpoint,
    expire_due,
    get_account,
    make_checkpoint,
    submit,
)
from tests.ledger.processes import finish, kill, start, wait_for
from tests.ledger.support import all_transfers, balances, open_accounts, pending, replayed
from tests.ledger.worker import requests

pytestmark = pytest.mark.slow


def test_kill_inside_commit_loses_only_the_open_batch(engine: Engine, db_url: str) -> None:
    """Killed inside a batch's commit: earlier batches stay, that batch is absent, and both retries work."""
    open_accounts(engine, "a", "b")
    finish(start(db_url, "batch", "first", "50", "10"))
    worker = start(db_url, "hang-in-commit", "second", "40")
    wait_for(worker, "in-commit")
    kill(worker)
    assert len(all_transfers(engine)) == 50
    assert balances(engine) == replayed(engine)
    assert {r.status for r in submit(engine, requests("second", 40))} == {Status.CREATED}
    assert {r.status for r in submit(engine, requests("first", 50))} == {Status.EXISTS}
    assert get_account(engine, "a").balance.debits_posted == 90
    assert [t.seq for t in all_transfers(engine)] == list(range(90))


def test_response_lost_after_commit(engine: Engine, db_url: str) -> None:
    """Killed after its commit but before answering: the retry answers exists and nothing is counted twice."""
    open_accounts(engine, "a", "b")
    worker = start(db_url, "hang-after-commit", "lost", "30")
    wait_for(worker, "committed")
    kill(worker)
    assert {r.status for r in submit(engine, requests("lost", 30))} == {Status.EXISTS}
    assert get_account(engine, "a").balance.debits_posted == 30
    assert balances(engine) == replayed(engine)


def test_kill_between_commit_and_checkpoint(engine: Engine, db_url: str, key: SigningKey) -> None:
    """Killed while storing a checkpoint: the last one stands, the next covers everything, the log audits."""
    open_accounts(engine, "a", "b")
    submit(engine, requests("x", 10))
    first = make_checkpoint(engine, key, "crash.cpnode/ledger")
    assert first is not None
    submit(engine, requests("y", 7))
    worker = start(db_url, "hang-in-checkpoint")
    wait_for(worker, "signing")
    kill(worker)
    assert current_checkpoint(engine) == first
    second = make_checkpoint(engine, key, "crash.cpnode/ledger")
    assert second is not None
    assert second.size == 17
    assert audit_log(engine) == []
    assert balances(engine) == replayed(engine)


def test_kill_during_expiry_sweep(engine: Engine, db_url: str) -> None:
    """Killed inside a sweep's commit: no hold is expired; the next sweep expires each exactly once."""
    open_accounts(engine, "a", "b")
    submit(engine, [pending(f"h{i}", "a", "b", 2, timeout_s=1) for i in range(5)], now=1_000)
    before = balances(engine)
    worker = start(db_url, "hang-in-sweep", "100000")
    wait_for(worker, "in-commit")
    kill(worker)
    assert balances(engine) == before
    assert len(all_transfers(engine)) == 5
    assert len(expire_due(engine, now=100_000)) == 5
    assert expire_due(engine, now=200_000) == []
    resolutions = [t.pending_id for t in all_transfers(engine) if t.pending_id]
    assert sorted(resolutions) == [f"h{i}" for i in range(5)]
    assert get_account(engine, "a").balance.as_tuple() == (0, 0, 0, 0)
    assert balances(engine) == replayed(engine)
