"""Transfers written inside a caller's write transaction (`ledger.submit_in`): the same results as
`submit`, committed or rolled back with the caller's own writes, and never answered from a writer's
stale cache afterwards."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from ledger import Status, get_account, get_transfer, submit, submit_batches, submit_batches_in, submit_in
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
        batch = submit_in(conn, [pending("h1", "a", "b", 60), single("fund", "b", "a", 100)])
    assert [r.status for r in batch.results] == [Status.CREATED, Status.EXISTS]
    assert batch.ok
    batch.committed()
    with write_transaction(engine) as conn:  # on the cache the first batch handed back
        batch = submit_in(conn, [pending("h2", "a", "b", 50), post("p1", "h1", 60), post("p2", "h1", 1)])
    assert not batch.ok
    assert [r.status for r in batch.results] == [
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
            [result] = submit_in(conn, [single("t1", "a", "b", 5)]).results
            assert result.status is Status.CREATED
            raise Rollback

    with pytest.raises(Rollback):
        fail_after_submit()
    assert get_transfer(engine, "t1") is None
    assert get_account(engine, "b").balance.as_tuple() == (0, 0, 0, 0)
    with write_transaction(engine) as conn:
        [result] = submit_in(conn, [single("t1", "a", "b", 5)]).results
    assert result.status is Status.CREATED
    assert [r.status for r in submit(engine, [single("t1", "a", "b", 5)])] == [Status.EXISTS]
    assert balances(engine) == replayed(engine)


@pytest.mark.parametrize("handed_back", [False, True], ids=["dropped", "handed-back"])
def test_writer_cache_after_a_joined_write(engine: Engine, handed_back: bool) -> None:
    """The engine's writer, its cache filled before a joined write spent an account's money, refuses
    what that money would have paid, whether the joined batch handed its cache back or not; a joined
    batch rolled back leaves nothing of itself in the cache."""
    open_accounts(engine, "a", "b", no_overdraft=("a",))
    submit(engine, [single("fund", "b", "a", 10), pending("h0", "a", "b", 1)])  # cache holds a
    with write_transaction(engine) as conn:
        batch = submit_in(conn, [pending("h1", "a", "b", 8)])
    if handed_back:
        batch.committed()
    results = submit(engine, [pending("h2", "a", "b", 2), pending("h3", "a", "b", 1)])
    assert [r.status for r in results] == [Status.EXCEEDS_CREDITS, Status.CREATED]
    assert get_account(engine, "a").balance.as_tuple() == (10, 0, 0, 10)

    def rolled_back() -> None:
        with write_transaction(engine) as conn:
            assert submit_in(conn, [single("s4", "b", "a", 5)]).ok
            raise Rollback

    with pytest.raises(Rollback):
        rolled_back()
    results = submit(engine, [pending("h5", "a", "b", 1)])
    assert [r.status for r in results] == [Status.EXCEEDS_CREDITS]  # s4 never credited a
    assert get_transfer(engine, "s4") is None
    assert balances(engine) == replayed(engine)


def test_joined_batches_match_submit_batches(engine: Engine) -> None:
    """Several batches applied at once inside a caller's transaction get, batch by batch, what
    `submit_batches` gives them: a later batch sees what an earlier one spent and created, and a
    linked chain left open at a batch's end fails there without touching the next batch."""
    open_accounts(engine, "a", "b", no_overdraft=("a",))
    submit(engine, [single("fund", "b", "a", 100)])
    batches = [
        [pending("h1", "a", "b", 60)],
        [pending("h2", "a", "b", 50), pending("h3", "a", "b", 40)],  # h2 exceeds what h1 left
        [pending("h4", "a", "b", 1, linked=True)],  # a chain open at the batch's end
        [pending("h1", "a", "b", 60), single("s5", "b", "a", 5)],
    ]

    def joined() -> list[list[Status]]:
        with write_transaction(engine) as conn:
            batch = submit_batches_in(conn, batches)
            assert [len(part) for part in batch.batches] == [1, 2, 1, 2]
            assert [r.index for part in batch.batches for r in part] == [0, 0, 1, 0, 0, 1]
            raise Rollback([[r.status for r in part] for part in batch.batches])

    with pytest.raises(Rollback) as rolled_back:
        joined()
    [statuses] = rolled_back.value.args
    assert get_transfer(engine, "h1") is None  # nothing of the rolled-back batches stays
    expected = [[r.status for r in part] for part in submit_batches(engine, batches)]
    assert statuses == expected
    assert expected == [
        [Status.CREATED],
        [Status.EXCEEDS_CREDITS, Status.CREATED],
        [Status.LINKED_EVENT_CHAIN_OPEN],
        [Status.EXISTS, Status.CREATED],
    ]
    assert balances(engine) == replayed(engine)
