"""Transfers written inside a caller's write transaction (`ledger.submit_in`): the same results as
`submit`, committed or rolled back with the caller's own writes, and never answered from a writer's
stale cache afterwards."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from ledger import Status, get_account, get_transfer, submit, submit_in
from node.db import write_transaction
from tests.ledger.support import balances, open_accounts, pending, post, replayed, single


class Rollback(Exception):
    """Raised inside the caller's transaction to roll it back."""


def test_joined_batch_matches_submit(engine: Engine) -> None:
    """A batch applied inside a caller's transaction gets what `submit` gives: created, exists,
    refused, and a hold resolved once."""
    open_accounts(engine, "a", "b", no_overdraft=("a",))
    submit(engine, [single("fund", "b", "a", 100)])
    with write_transaction(engine) as conn:
        results = submit_in(conn, [pending("h1", "a", "b", 60), single("fund", "b", "a", 100)])
    assert [r.status for r in results] == [Status.CREATED, Status.EXISTS]
    with write_transaction(engine) as conn:
        results = submit_in(conn, [pending("h2", "a", "b", 50), post("p1", "h1", 60), post("p2", "h1", 1)])
    assert [r.status for r in results] == [
        Status.EXCEEDS_CREDITS,  # 100 credited, 60 held
        Status.CREATED,
        Status.PENDING_TRANSFER_ALREADY_POSTED,
    ]
    assert get_account(engine, "a").balance.as_tuple() == (0, 60, 0, 100)
    assert balances(engine) == replayed(engine)


def test_joined_batch_rolls_back_with_the_caller(engine: Engine) -> None:
    """A caller's transaction that fails after `submit_in` leaves nothing of the batch; a retry
    creates it once."""
    open_accounts(engine, "a", "b")

    def fail_after_submit() -> None:
        with write_transaction(engine) as conn:
            [result] = submit_in(conn, [single("t1", "a", "b", 5)])
            assert result.status is Status.CREATED
            raise Rollback

    with pytest.raises(Rollback):
        fail_after_submit()
    assert get_transfer(engine, "t1") is None
    assert get_account(engine, "b").balance.as_tuple() == (0, 0, 0, 0)
    with write_transaction(engine) as conn:
        [result] = submit_in(conn, [single("t1", "a", "b", 5)])
    assert result.status is Status.CREATED
    assert [r.status for r in submit(engine, [single("t1", "a", "b", 5)])] == [Status.EXISTS]
    assert balances(engine) == replayed(engine)


def test_writer_cache_does_not_outlive_a_joined_write(engine: Engine) -> None:
    """The engine's writer, its cache filled before a joined write spent an account's money, refuses
    what that money would have paid (the joined commit moved the head's version)."""
    open_accounts(engine, "a", "b", no_overdraft=("a",))
    submit(engine, [single("fund", "b", "a", 10), pending("h0", "a", "b", 1)])  # cache holds a
    with write_transaction(engine) as conn:
        submit_in(conn, [pending("h1", "a", "b", 8)])
    results = submit(engine, [pending("h2", "a", "b", 2), pending("h3", "a", "b", 1)])
    assert [r.status for r in results] == [Status.EXCEEDS_CREDITS, Status.CREATED]
    assert get_account(engine, "a").balance.as_tuple() == (10, 0, 0, 10)
    assert balances(engine) == replayed(engine)
