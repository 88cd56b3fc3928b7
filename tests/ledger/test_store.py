"""The ledger on a real database, SQLite and PostgreSQL: what the schema enforces, the write path,
accounts, the sweeper, checkpoints and proofs."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from nacl.signing import SigningKey
from sqlalchemy.engine import Engine

from ledger import (
    AccountKind,
    AccountSpec,
    ConflictError,
    NotFoundError,
    RequestError,
    Status,
    audit_log,
    close_account,
    create_accounts,
    current_checkpoint,
    expire_due,
    get_account,
    get_failure,
    get_transfer,
    list_accounts,
    make_checkpoint,
    prove_consistency,
    prove_inclusion,
    submit,
)
from ledger.balances import currency_totals, double_entry_problems, replay
from ledger.jobs import checkpoint_job, sweep_job
from ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from ledger.store.log import checkpoint_due
from ledger.store.reads import balances_at, open_holds_at, seq_at_time
from ledger.store.writer import MAX_BATCH
from node.db import make_engine
from tests.ledger.support import all_transfers, balances, open_accounts, pending, post, replayed, single, void


def test_stored_transfers_cannot_be_changed_or_deleted(engine: Engine, key: SigningKey) -> None:
    """The database itself refuses UPDATE and DELETE on transfers, remembered failures and checkpoints."""
    open_accounts(engine, "a", "b", no_overdraft=("a",))
    submit(engine, [single("t1", "b", "a", 5), single("t2", "a", "b", 50)])
    make_checkpoint(engine, key, "n.cpnode/ledger")
    for statement in (
        "UPDATE ledger_transfers SET amount = 6 WHERE id = 't1'",
        "DELETE FROM ledger_transfers WHERE id = 't1'",
        "UPDATE ledger_failures SET status = 'created' WHERE id = 't2'",
        "DELETE FROM ledger_failures",
        "UPDATE ledger_checkpoints SET size = 0",
        "DELETE FROM ledger_checkpoints",
    ):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(sa.text(statement))
    assert [t.amount for t in all_transfers(engine)] == [5]
    assert get_failure(engine, "t2") == (Status.EXCEEDS_CREDITS, "amount")


def test_a_hold_resolves_once_in_the_database(engine: Engine) -> None:
    """A second resolving row for the same hold is refused by the unique index, even bypassing the code."""
    open_accounts(engine, "a", "b")
    submit(engine, [pending("h1", "a", "b", 10), post("p1", "h1", 10)])
    row = {**all_transfers(engine)[1].to_dict(), "seq": 2, "id": "sneaky"}
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.text(
                f"INSERT INTO ledger_transfers ({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)})"
            ),
            row,
        )
    assert [t.id for t in all_transfers(engine)] == ["h1", "p1"]


def test_sequence_is_dense_and_time_monotonic(engine: Engine) -> None:
    """Sequence numbers have no gaps across batches with failures, and time never goes backwards."""
    open_accounts(engine, "a", "b", no_overdraft=("a",))
    submit(engine, [single("f", "b", "a", 100)], now=10_000)
    submit(
        engine,
        [single("x1", "a", "b", 1), single("bad", "a", "b", 10**6), single("x2", "a", "b", 1)],
        now=5_000,
    )
    submit(engine, [single("x3", "a", "b", 1)], now=20_000)
    stored = all_transfers(engine)
    assert [t.seq for t in stored] == [0, 1, 2, 3]
    assert [t.ts_ms for t in stored] == [10_000, 10_000, 10_000, 20_000]


def test_a_time_is_found_in_the_log_without_an_index_on_time(engine: Engine) -> None:
    """seq_at_time (a binary search over sequence numbers) gives the first transfer at or after a
    time, through runs of equal times and at both ends, on an empty log and a growing one."""
    open_accounts(engine, "a", "b")
    times: list[int] = []
    with engine.connect() as conn:
        assert [seq_at_time(conn, t) for t in (0, 10**15)] == [0, 0]
    for n, (now, count) in enumerate([(1_000, 3), (1_005, 1), (1_010, 4), (2_000, 1), (2_000, 2)]):
        submit(engine, [single(f"t{n}-{i}", "a", "b", 1) for i in range(count)], now=now)
        times += [now] * count
        with engine.connect() as conn:
            for at in (0, 999, 1_000, 1_001, 1_005, 1_006, 1_010, 1_011, 2_000, 2_001):
                expected = next((seq for seq, ts in enumerate(times) if ts >= at), len(times))
                assert seq_at_time(conn, at) == expected, (at, times)


def test_results_and_balances_survive_a_new_engine(engine: Engine, db_url: str) -> None:
    """After reopening the database, retries answer exists / id_already_failed and balances replay."""
    open_accounts(engine, "a", "b", no_overdraft=("a",))
    first = submit(engine, [single("t1", "b", "a", 5), single("t2", "a", "b", 6)])
    assert [r.status for r in first] == [Status.CREATED, Status.EXCEEDS_CREDITS]
    engine.dispose()
    reopened = make_engine(db_url)
    again = submit(reopened, [single("t1", "b", "a", 5), single("t2", "a", "b", 1)])
    assert [r.status for r in again] == [Status.EXISTS, Status.ID_ALREADY_FAILED]
    assert balances(reopened) == replayed(reopened)
    reopened.dispose()


def test_account_creation_is_idempotent(engine: Engine) -> None:
    """The same account twice is exists; a different spec names the field; a bad spec names its field."""
    spec = AccountSpec("alice", "CNY", AccountKind.CONSUMER, debits_must_not_exceed_credits=True)
    assert [str(r.status) for r in create_accounts(engine, [spec, spec])] == ["created", "exists"]
    changed = AccountSpec("alice", "USD", AccountKind.CONSUMER, debits_must_not_exceed_credits=True)
    [result] = create_accounts(engine, [changed])
    assert (result.status, result.field) == (Status.EXISTS_WITH_DIFFERENT_FIELD, "currency")
    bad = [
        AccountSpec("bad id", "CNY", AccountKind.PROVIDER),
        AccountSpec("p", "CNY", AccountKind.PARTNER),
        AccountSpec("q", "CNY", AccountKind.PROVIDER, True, True),
    ]
    assert [(str(r.status), r.field) for r in create_accounts(engine, bad)] == [
        ("invalid_request", "id"),
        ("invalid_request", "partner"),
        ("invalid_request", "credits_must_not_exceed_debits"),
    ]
    assert get_account(engine, "alice").spec == spec
    with pytest.raises(NotFoundError):
        get_account(engine, "p")


def test_closing_an_account(engine: Engine) -> None:
    """An account with holds cannot close; once closed, new transfers touching it are refused."""
    open_accounts(engine, "a", "b")
    submit(engine, [pending("h1", "a", "b", 5), single("t1", "a", "b", 5)])
    with pytest.raises(ConflictError, match="pending holds"):
        close_account(engine, "a")
    submit(engine, [void("v1", "h1")])
    closed = close_account(engine, "a")
    assert closed.closed_seq == 3
    assert close_account(engine, "a").closed_seq == 3
    results = submit(engine, [single("t2", "a", "b", 1), single("t3", "b", "a", 1)])
    assert [r.status for r in results] == [Status.DEBIT_ACCOUNT_CLOSED, Status.CREDIT_ACCOUNT_CLOSED]
    with pytest.raises(NotFoundError):
        close_account(engine, "nobody")


def test_balances_at_any_sequence(engine: Engine) -> None:
    """Balances summed in SQL at every sequence number (from the start for the first half of the log,
    back from the current balances for the second) equal a replay, and the open holds match."""
    open_accounts(engine, "a", "b", "c")
    submit(engine, [single("t1", "a", "b", 10), pending("h1", "b", "c", 4), pending("h2", "a", "c", 3)])
    submit(engine, [post("p1", "h1", 2), void("v2", "h2"), single("t2", "c", "a", 1)])
    stored = all_transfers(engine)
    with engine.connect() as conn:
        for seq in range(len(stored) + 1):
            expected = {k: b.as_tuple() for k, b in replay(stored[:seq]).items() if any(b.as_tuple())}
            assert {k: b.as_tuple() for k, b in balances_at(conn, seq).items()} == expected
        assert [h.id for h in open_holds_at(conn, 3)] == ["h1", "h2"]
        assert [h.id for h in open_holds_at(conn, 4)] == ["h2"]
        assert open_holds_at(conn, 6) == []
    assert balances(engine) == replayed(engine)


def test_sweeper_expires_holds_at_their_deadline(engine: Engine) -> None:
    """The sweeper expires holds whose deadline has come, releases them, and leaves others alone."""
    open_accounts(engine, "a", "b")
    submit(
        engine,
        [
            pending("h1", "a", "b", 5, timeout_s=1),
            pending("h2", "a", "b", 7, timeout_s=10),
            pending("h3", "a", "b", 9),
        ],
        now=1_000,
    )
    assert expire_due(engine, now=1_999) == []
    [first] = sweep_job(engine, now=2_000)
    assert (first.id, first.pending_id, first.kind) == ("~expire:h1", "h1", "expire")
    assert [t.pending_id for t in expire_due(engine, now=50_000)] == ["h2"]
    assert expire_due(engine, now=10**12) == []  # h3 has no deadline
    assert get_account(engine, "a").balance.as_tuple() == (9, 0, 0, 0)
    [late] = submit(engine, [post("p1", "h2", 7)], now=60_000)
    assert late.status is Status.PENDING_TRANSFER_ALREADY_EXPIRED


def test_sweeper_works_in_bounded_runs(engine: Engine) -> None:
    """With a per-run limit the sweeper expires everything due over several runs, in deadline order."""
    open_accounts(engine, "a", "b")
    submit(engine, [pending(f"h{i}", "a", "b", 1, timeout_s=1 + i % 3) for i in range(9)], now=1_000)
    expired = []
    for _ in range(5):
        expired += [t.pending_id for t in expire_due(engine, now=10_000, limit=2)]
    assert sorted(str(e) for e in expired) == sorted(f"h{i}" for i in range(9))
    assert get_account(engine, "a").balance.as_tuple() == (0, 0, 0, 0)


def test_batch_size_is_bounded(engine: Engine) -> None:
    """An oversized batch is refused before touching the database."""
    with pytest.raises(RequestError, match="at most"):
        submit(engine, [single(f"t{i}", "a", "b", 1) for i in range(MAX_BATCH + 1)])
    assert submit(engine, []) == []


def test_show_a_transfer(engine: Engine) -> None:
    """A stored transfer can be read back by id; an unknown id gives None."""
    open_accounts(engine, "a", "b")
    submit(engine, [single("t1", "a", "b", 3, trade_id="trade-7")])
    transfer = get_transfer(engine, "t1")
    assert transfer is not None
    assert (transfer.seq, transfer.trade_id) == (0, "trade-7")
    assert get_transfer(engine, "nope") is None


def test_checkpoints_and_proofs(engine: Engine, key: SigningKey) -> None:
    """Checkpoints commit to the transfers' tree; inclusion and consistency proofs from the database verify."""
    open_accounts(engine, "a", "b")
    submit(engine, [single(f"t{i}", "a", "b", 1 + i) for i in range(5)])
    first = make_checkpoint(engine, key, "n.cpnode/ledger", now=1)
    assert first is not None
    assert make_checkpoint(engine, key, "n.cpnode/ledger", now=2) is None  # nothing new
    submit(engine, [single(f"u{i}", "b", "a", 1) for i in range(6)])
    second = make_checkpoint(engine, key, "n.cpnode/ledger", now=3)
    assert second is not None
    assert (first.size, second.size) == (5, 11)
    assert current_checkpoint(engine) == second
    verify_consistency(5, 11, prove_consistency(engine, 5, 11), first.checkpoint.root, second.checkpoint.root)
    transfer = all_transfers(engine)[7]
    verify_inclusion(
        7, 11, leaf_hash(transfer.leaf_data()), prove_inclusion(engine, 7, 11), second.checkpoint.root
    )
    assert audit_log(engine) == []


def test_checkpoint_schedule() -> None:
    """A checkpoint is due after N new transfers or T seconds with new transfers, never with none."""
    assert checkpoint_due(None, None, 0, 0, 100, 60) is False
    assert checkpoint_due(None, None, 1, 0, 100, 60) is True
    assert checkpoint_due(10, 0, 10, 10**9, 100, 60) is False
    assert checkpoint_due(10, 0, 109, 59_999, 100, 60) is False
    assert checkpoint_due(10, 0, 110, 1, 100, 60) is True
    assert checkpoint_due(10, 0, 11, 60_000, 100, 60) is True


def test_checkpoint_job(engine: Engine, key: SigningKey) -> None:
    """The job signs a checkpoint once enough transfers or time have passed."""
    open_accounts(engine, "a", "b")
    submit(engine, [single("t1", "a", "b", 1)])
    assert (
        checkpoint_job(engine, key, "n.cpnode/ledger", every_transfers=3, every_s=60, now=1_000) is not None
    )
    submit(engine, [single("t2", "a", "b", 1)])
    assert checkpoint_job(engine, key, "n.cpnode/ledger", every_transfers=3, every_s=60, now=2_000) is None
    made = checkpoint_job(engine, key, "n.cpnode/ledger", every_transfers=3, every_s=60, now=61_000)
    assert made is not None
    assert made.size == 2


def test_currencies_balance_separately(engine: Engine) -> None:
    """Per currency, total debits equal total credits, pending and posted alike."""
    open_accounts(engine, "a", "b")
    open_accounts(engine, "x", "y", currency="USD")
    submit(
        engine,
        [
            single("t1", "a", "b", 5),
            pending("h1", "x", "y", 3, currency="USD"),
            single("t2", "x", "a", 1, currency="USD"),
        ],
    )
    accounts = list_accounts(engine)
    totals = currency_totals({a.id: a.balance for a in accounts}, {a.id: a.spec.currency for a in accounts})
    assert totals["CNY"].as_tuple() == (0, 5, 0, 5)
    assert totals["USD"].as_tuple() == (3, 0, 3, 0)
    assert double_entry_problems(totals) == []
