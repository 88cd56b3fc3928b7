"""The write path's per-engine cache (balances, balance row keys and holds kept between batches
while the head's version is unchanged) never answers from stale state; the balances table."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine

from ledger import (
    AccountKind,
    AccountSpec,
    Status,
    close_account,
    create_accounts,
    get_account,
    list_accounts,
    submit,
)
from ledger.store.cache import put_back, take_any
from node.db import make_engine, upgrade, write_transaction
from node.db.migrate import _config  # the node's Alembic configuration, to stop at one revision
from tests.ledger.support import balances, open_accounts, pending, post, replayed, single, void


def test_two_engines_see_each_others_writes(engine: Engine, db_url: str) -> None:
    """Holds, balances, ids and closed accounts written through one engine are seen by another
    engine whose cache was filled before those writes."""
    other = make_engine(db_url)
    try:
        open_accounts(engine, "a", "b", "c", no_overdraft=("a",))
        submit(
            engine, [single("fund", "b", "a", 100), pending("h1", "a", "c", 60), pending("h2", "a", "c", 30)]
        )
        # `other` fills its cache (h1 open, a's balance), then `engine` posts h1, spends from a, closes c.
        results = submit(other, [pending("h1", "a", "c", 60), single("x1", "b", "a", 1)])
        assert [r.status for r in results] == [Status.EXISTS, Status.CREATED]
        assert [r.status for r in submit(engine, [post("p1", "h1", 60), single("s1", "a", "b", 5)])] == [
            Status.CREATED,
            Status.CREATED,
        ]
        results = submit(other, [post("p2", "h1", 10), single("s2", "a", "b", 10), single("s1", "a", "b", 5)])
        assert [r.status for r in results] == [
            Status.PENDING_TRANSFER_ALREADY_POSTED,
            Status.EXCEEDS_CREDITS,  # 101 credited; 60 posted + 30 held + 5 spent leave 6
            Status.EXISTS,
        ]
        submit(engine, [void("v2", "h2")])
        close_account(engine, "c")
        results = submit(other, [void("v2", "h2"), single("s3", "a", "b", 5), single("s4", "b", "c", 1)])
        assert [r.status for r in results] == [Status.EXISTS, Status.CREATED, Status.CREDIT_ACCOUNT_CLOSED]
        assert get_account(engine, "a").balance.as_tuple() == (0, 70, 0, 101)
        assert balances(engine) == replayed(engine)
    finally:
        other.dispose()


def test_accounts_created_by_one_engine_and_moved_by_another(engine: Engine, db_url: str) -> None:
    """Accounts an engine just created (and so holds at zero without reading them) are read afresh
    once another engine has moved them, and creating more accounts keeps that rule."""
    other = make_engine(db_url)
    try:
        open_accounts(engine, "bank")
        submit(engine, [single("warm", "bank", "bank2", 1)])  # engine's cache: bank (bank2 missing)
        open_accounts(engine, "bank2", "alice", no_overdraft=("alice",))
        submit(other, [single("fund", "bank", "alice", 50)])
        open_accounts(engine, "shop")  # sees the new version: must not bring back alice at zero
        results = submit(engine, [single("buy", "alice", "shop", 40), single("more", "alice", "shop", 20)])
        assert [r.status for r in results] == [Status.CREATED, Status.EXCEEDS_CREDITS]
        assert get_account(other, "alice").balance.as_tuple() == (0, 40, 0, 50)
        assert balances(engine) == replayed(engine)
    finally:
        other.dispose()


def test_accounts_created_at_once_get_their_own_balance_rows(engine: Engine, db_url: str) -> None:
    """Eight creators at once (each a batch of accounts) all succeed, each account with a balance
    row of its own, and transfers move exactly the rows of their accounts."""
    wide = make_engine(db_url, pool_size=8)
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            outcomes = list(
                pool.map(lambda w: create_accounts(wide, [_spec(f"w{w}-{n}") for n in range(20)]), range(8))
            )
        assert all(r.status is Status.CREATED for batch in outcomes for r in batch)
        with engine.connect() as conn:
            nums = conn.execute(sa.text("SELECT num FROM ledger_accounts")).scalars().all()
            rows = conn.execute(sa.text("SELECT count(*) FROM ledger_balances")).scalar_one()
        assert len(nums) == len(set(nums)) == rows == 160
        submit(engine, [single(f"t{w}", f"w{w}-0", f"w{w}-19", w + 1) for w in range(8)])
        moved = {
            a.id: a.balance.as_tuple() for a in list_accounts(engine) if a.balance.as_tuple() != (0, 0, 0, 0)
        }
        assert moved == {f"w{w}-0": (0, w + 1, 0, 0) for w in range(8)} | {
            f"w{w}-19": (0, 0, 0, w + 1) for w in range(8)
        }
    finally:
        wide.dispose()


def _spec(account_id: str) -> AccountSpec:
    return AccountSpec(account_id, "CNY", AccountKind.PROVIDER)


def test_balances_move_to_their_own_table_and_back(db_url: str) -> None:
    """A database written before ledger_0002 keeps every account's spec and totals through the
    upgrade (totals now in ledger_balances), the write path moves them from there, and a
    downgrade puts the totals back into ledger_accounts."""
    engine = make_engine(db_url)
    totals = {"a": (0, 7, 0, 30), "b": (5, 0, 9, 12), "c": (0, 0, 0, 0)}
    try:
        with write_transaction(engine) as conn:
            command.upgrade(_config(conn), "ledger_0001")
            for index, (account_id, (dp, dpo, cp, cpo)) in enumerate(totals.items()):
                conn.execute(
                    sa.text(
                        "INSERT INTO ledger_accounts VALUES (:id, 'CNY', 'consumer', :limited, false, NULL, "
                        "1, :closed, :closed, :dp, :dpo, :cp, :cpo)"
                    ),
                    {"id": account_id, "limited": index == 0, "closed": 3 if account_id == "c" else None}
                    | {"dp": dp, "dpo": dpo, "cp": cp, "cpo": cpo},
                )
        upgrade(engine)
        accounts = {a.id: a for a in list_accounts(engine)}
        assert {i: a.balance.as_tuple() for i, a in accounts.items()} == totals
        assert accounts["a"].spec.debits_must_not_exceed_credits
        assert accounts["c"].closed_seq == 3
        with engine.connect() as conn:
            assert "debits_posted" not in {c["name"] for c in sa.inspect(conn).get_columns("ledger_accounts")}
        results = submit(
            engine, [single("t1", "a", "b", 20), single("t2", "a", "b", 4), single("t3", "a", "c", 1)]
        )
        assert [r.status for r in results] == [
            Status.CREATED,
            Status.EXCEEDS_CREDITS,
            Status.CREDIT_ACCOUNT_CLOSED,
        ]
        with write_transaction(engine) as conn:
            command.downgrade(_config(conn), "ledger_0001")
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT id, debits_pending, debits_posted, credits_pending, credits_posted "
                    "FROM ledger_accounts ORDER BY id"
                )
            ).all()
            assert not sa.inspect(conn).has_table("ledger_balances")
        assert {row[0]: tuple(row[1:]) for row in rows} == totals | {"a": (0, 27, 0, 30), "b": (5, 0, 9, 32)}
    finally:
        engine.dispose()


def test_ids_that_cannot_be_encoded_are_refused(engine: Engine) -> None:
    """Ids and account ids holding a lone surrogate (never valid, never stored) are refused as
    invalid requests instead of failing the lookup that runs before the rules."""
    open_accounts(engine, "a", "b")
    results = submit(
        engine,
        [single("t\ud800", "a", "b", 1), single("t2", "a\udfff", "b", 1), post("p1", "h\ud800", 1)],
    )
    assert [(r.status, r.field) for r in results] == [
        (Status.INVALID_REQUEST, "id"),
        (Status.INVALID_REQUEST, "debit_account"),
        (Status.INVALID_REQUEST, "pending_id"),
    ]
    assert balances(engine) == replayed(engine)


def test_failed_ids_are_remembered_by_the_next_batch_from_the_cache(engine: Engine, db_url: str) -> None:
    """A batch written on what the writer's cache holds (PostgreSQL: in one round trip, guarded)
    still answers `id_already_failed` for an id refused earlier, by this engine or by another one
    (a batch that only refuses leaves the head's version as it was), and is never created."""
    other = make_engine(db_url)
    try:
        open_accounts(engine, "a", "b")
        submit(engine, [single("w1", "a", "b", 1)])  # the cache now knows the head this engine left
        assert [r.status for r in submit(engine, [single("x", "a", "a", 1)])] == [
            Status.ACCOUNTS_MUST_BE_DIFFERENT
        ]
        assert [r.status for r in submit(engine, [single("x", "a", "b", 1), single("w2", "a", "b", 1)])] == [
            Status.ID_ALREADY_FAILED,
            Status.CREATED,
        ]
        assert [r.status for r in submit(other, [single("y", "b", "b", 1)])] == [
            Status.ACCOUNTS_MUST_BE_DIFFERENT
        ]
        assert [r.status for r in submit(engine, [single("y", "a", "b", 1)])] == [Status.ID_ALREADY_FAILED]
        assert [r.status for r in submit(engine, [single("w1", "a", "b", 1), single("w3", "a", "b", 1)])] == [
            Status.EXISTS,
            Status.CREATED,
        ]
        assert get_account(engine, "a").balance.debits_posted == 3
        assert balances(engine) == replayed(engine)
    finally:
        other.dispose()


def test_a_retried_id_keeps_the_cache(engine: Engine) -> None:
    """A batch that names an id already stored (a client's retry) cannot be written on what the cache
    assumes (PostgreSQL: its one-round-trip guard fails); the cache, with what the rules had changed
    in it undone, is kept: the retry reads nothing but the batch's ids, every account stays cached,
    and balances, holds and answers are those of one-by-one submits."""
    names = [f"acct-{n:03d}" for n in range(40)]
    open_accounts(engine, *names)
    submit(engine, [single(f"w{n}", names[n], names[n + 1], 10) for n in range(39)])
    submit(engine, [pending("h1", names[0], names[1], 50), pending("h2", names[2], names[3], 7)])
    assert set(names) <= cached_accounts(engine)
    # A hold posted, another voided and a new transfer, with a retried id among them: nothing of the
    # guessed outcome may stay in the cache, everything must be applied again after the ids are read.
    results = submit(
        engine,
        [
            post("p1", "h1", 50),
            single("w5", names[5], names[6], 10),
            void("v2", "h2"),
            single("n1", names[7], names[8], 3),
        ],
    )
    assert [r.status for r in results] == [Status.CREATED, Status.EXISTS, Status.CREATED, Status.CREATED]
    assert set(names) <= cached_accounts(engine)
    assert [r.status for r in submit(engine, [post("p2", "h1", 1), void("v3", "h2")])] == [
        Status.PENDING_TRANSFER_ALREADY_POSTED,
        Status.PENDING_TRANSFER_ALREADY_VOIDED,
    ]
    assert balances(engine) == replayed(engine)
    assert get_account(engine, names[0]).balance.as_tuple() == (0, 60, 0, 0)


def cached_accounts(engine: Engine) -> set[str]:
    """The accounts the engine's writer cache holds (none when it has no cache)."""
    cache = take_any(engine)
    if cache is None:
        return set()
    put_back(engine, cache)
    return set(cache.accounts)
