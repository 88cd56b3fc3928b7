"""The write path's per-engine cache (balances, rowids, transfers and hold states kept between
batches while the head's version is unchanged) never answers from stale state."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger import Status, close_account, get_account, submit
from node.db import make_engine, upgrade
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


def test_moved_account_rows_are_not_written_by_a_stale_rowid(tmp_path: Path) -> None:
    """On SQLite, account rows renumbered behind a valid cache (as VACUUM may do) still get their
    own balances: the update checks the id with the rowid and re-reads when a row moved."""
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    upgrade(engine)
    try:
        open_accounts(engine, "a", "b")
        submit(engine, [single("t1", "a", "b", 7)])  # the cache now holds both rowids
        with engine.begin() as conn:  # swap the two rows' rowids; the head's version stays as it was
            rowids = dict(conn.execute(sa.text("SELECT id, rowid FROM ledger_accounts")).all())
            conn.execute(sa.text("UPDATE ledger_accounts SET rowid = -rowid"))
            for account_id, rowid in (("a", rowids["b"]), ("b", rowids["a"])):
                conn.execute(
                    sa.text("UPDATE ledger_accounts SET rowid = :r WHERE id = :i"),
                    {"r": rowid, "i": account_id},
                )
        assert [r.status for r in submit(engine, [single("t2", "a", "b", 5)])] == [Status.CREATED]
        assert get_account(engine, "a").balance.as_tuple() == (0, 12, 0, 0)
        assert get_account(engine, "b").balance.as_tuple() == (0, 0, 0, 12)
        assert balances(engine) == replayed(engine)
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
