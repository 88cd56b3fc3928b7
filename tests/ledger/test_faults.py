"""Storage faults: a full disk (SQLite), and PostgreSQL connections dropped mid-transaction and mid-run.

The shared PostgreSQL server cannot be restarted by a test, so a restart is reproduced the way a
client sees it: the server terminates every backend of the writer's connections (pg_terminate_backend)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from ledger import Status, StorageError, get_account, submit
from node.db import make_engine, upgrade
from tests.ledger.support import all_transfers, balances, open_accounts, replayed, single
from tests.support.polling import wait_for

pytestmark = pytest.mark.slow


def test_disk_full_changes_nothing_and_retry_succeeds(tmp_path: Path) -> None:
    """SQLite only (page-count cap stands in for a full disk): the batch fails whole with a clear
    StorageError, nothing is written, and the same batch succeeds once there is room."""
    url = f"sqlite:///{tmp_path / 'full.db'}"
    roomy = make_engine(url)
    upgrade(roomy)
    open_accounts(roomy, "a", "b")
    submit(roomy, [single("t0", "a", "b", 1)])
    with roomy.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
    cramped = make_engine(url)

    @event.listens_for(cramped, "connect")
    def _cap(dbapi_connection: object, _record: object) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages + 1}")  # type: ignore[attr-defined]

    batch = [single(f"t{i}", "a", "b", 1, order_id=f"order-{i:04d}" * 8) for i in range(1, 2_000)]
    with pytest.raises(StorageError, match="disk is full; nothing was written"):
        submit(cramped, batch)
    cramped.dispose()
    assert len(all_transfers(roomy)) == 1
    assert get_account(roomy, "a").balance.debits_posted == 1
    assert {r.status for r in submit(roomy, batch)} == {Status.CREATED}
    assert balances(roomy) == replayed(roomy)
    roomy.dispose()


@pytest.fixture(name="pg")
def fixture_pg(postgres_url: str) -> Iterator[tuple[Engine, Engine, str]]:
    """(writer engine tagged with an application name, admin engine, that name) on a fresh schema."""
    name = f"cpnode-ledger-fault-{time.monotonic_ns()}"
    writer = make_engine(f"{postgres_url}&application_name={name}")
    upgrade(writer)
    admin = sa.create_engine(postgres_url)
    yield writer, admin, name
    writer.dispose()
    admin.dispose()


def _terminate(admin: Engine, name: str, waiting_only: bool = False) -> int:
    condition = "AND wait_event_type = 'Lock'" if waiting_only else ""
    with admin.begin() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE application_name = :name AND pid <> pg_backend_pid() {condition}"
            ),
            {"name": name},
        ).all()
    return len(rows)


@pytest.mark.postgres
def test_connection_killed_mid_transaction(pg: tuple[Engine, Engine, str]) -> None:
    """The writer's backend is terminated while its batch waits inside the transaction: the batch is
    retried on a new connection and applied exactly once."""
    writer, admin, name = pg
    open_accounts(writer, "a", "b")
    blocker = admin.connect()
    blocker.execute(sa.text("SELECT 1 FROM ledger_head WHERE id = 1 FOR UPDATE"))
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(submit(writer, [single("t1", "a", "b", 5)])))
    thread.start()
    wait_for(
        lambda: _terminate(admin, name, waiting_only=True) > 0, 30, "the writer waiting on the head lock"
    )
    blocker.rollback()
    blocker.close()
    thread.join(timeout=60)
    [results] = outcome
    assert [r.status for r in results] == [Status.CREATED]  # type: ignore[attr-defined]
    assert [t.id for t in all_transfers(writer)] == ["t1"]
    assert get_account(writer, "b").balance.credits_posted == 5


@pytest.mark.postgres
def test_server_drops_every_connection_mid_run(pg: tuple[Engine, Engine, str]) -> None:
    """All of the writer's connections are cut repeatedly during a run of batches: every batch lands once
    (on a loaded machine every retry of a batch can be cut; the client's resubmission is then answered
    `exists` or applied, never doubled)."""
    writer, admin, name = pg
    open_accounts(writer, "a", "b")
    done = threading.Event()
    cuts = 0

    def cutter() -> None:
        nonlocal cuts
        while not done.is_set():
            cuts += _terminate(admin, name)
            done.wait(0.01)

    thread = threading.Thread(target=cutter)
    thread.start()
    try:
        statuses = []
        for n in range(40):
            batch = [single(f"b{n}-{i}", "a", "b", 1) for i in range(10)]
            # a client resubmits a batch whose every attempt was cut (same ids) until it lands
            deadline = time.monotonic() + 120
            while True:
                try:
                    statuses += [r.status for r in submit(writer, batch)]
                    break
                except StorageError:
                    if time.monotonic() > deadline:
                        raise
                    done.wait(0.005 * (1 + n % 4))  # let one attempt fall between two cuts
    finally:
        done.set()
        thread.join(timeout=30)
    assert cuts > 0
    assert set(statuses) <= {Status.CREATED, Status.EXISTS}
    stored = all_transfers(writer)
    assert len(stored) == 400
    assert [t.seq for t in stored] == list(range(400))
    assert balances(writer) == replayed(writer)
