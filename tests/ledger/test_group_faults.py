"""Group commit under faults, on both backends: a storage failure inside a shared transaction, callers
cancelled while they wait, a full queue, a connection cut mid-batch (PostgreSQL); and the node's
admin route and trading's ledger calls going through the committer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger import (
    GroupCommitter,
    LedgerBusy,
    Status,
    StorageError,
    TransferRequest,
    TransferResult,
    committer_for,
    get_transfer,
)
from node.db import make_engine, upgrade
from node.http.statuses import status_for
from node.trading import books
from tests.ledger.grouping import DEADLINE_S, gathered, write_lock_held
from tests.ledger.support import all_transfers, balances, open_accounts, replayed, single
from tests.support.nodes import make_node_dir, running_node
from tests.support.polling import eventually, wait_for


def inject_fault(engine: Engine, transfer_id: str) -> None:
    """Make the database refuse to store `transfer_id` (a trigger), as a storage failure would."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER group_fault BEFORE INSERT ON ledger_transfers "
                f"WHEN NEW.id = '{transfer_id}' BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION group_fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"IF NEW.id = '{transfer_id}' THEN RAISE EXCEPTION 'injected fault'; END IF; "
                "RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER group_fault BEFORE INSERT ON ledger_transfers "
                "FOR EACH ROW EXECUTE FUNCTION group_fault()"
            )


def remove_fault(engine: Engine) -> None:
    """Drop the trigger `inject_fault` made."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER group_fault")
        else:
            conn.exec_driver_sql("DROP TRIGGER group_fault ON ledger_transfers")
            conn.exec_driver_sql("DROP FUNCTION group_fault()")


def batches_of(*ids: str) -> list[list[TransferRequest]]:
    """One caller per id, each sending one transfer a → b of 1."""
    return [[single(transfer_id, "a", "b", 1)] for transfer_id in ids]


@pytest.mark.slow
def test_storage_failure_fails_every_caller_of_the_transaction(engine: Engine) -> None:
    """The database fails while storing one caller's transfer in a shared transaction: every caller of
    that transaction gets a StorageError, nothing of it is written, the transaction before it stands,
    and once the fault is gone the same batches are each created exactly once."""
    open_accounts(engine, "a", "b")
    inject_fault(engine, "poison")
    callers = batches_of("ok-1", "ok-2", "poison", "ok-3")
    committer = GroupCommitter(engine)

    async def run() -> tuple[list[TransferResult], list[object]]:
        with write_lock_held(engine):
            first = asyncio.ensure_future(committer.submit_async([single("first", "a", "b", 1)]))
            await eventually(lambda: committer.writing == 1, DEADLINE_S, "the first transaction waiting")
            rest = [asyncio.ensure_future(committer.submit_async(batch)) for batch in callers]
            await eventually(lambda: committer.waiting == len(callers), DEADLINE_S, "the others queued")
        return await first, list(await asyncio.gather(*rest, return_exceptions=True))

    try:
        first, failed = asyncio.run(run())
        assert [r.status for r in first] == [Status.CREATED]
        assert all(isinstance(error, StorageError) for error in failed), failed
        assert len({id(error) for error in failed}) == len(callers)  # each caller its own exception
        assert "injected fault" in str(failed[0])
        assert [t.id for t in all_transfers(engine)] == ["first"]
        remove_fault(engine)
        again = [committer.submit(batch) for batch in callers]
    finally:
        committer.close()
    assert [r.status for [r] in again] == [Status.CREATED] * len(callers)
    assert [t.id for t in all_transfers(engine)] == ["first", "ok-1", "ok-2", "poison", "ok-3"]
    assert balances(engine) == replayed(engine)


def test_cancelled_callers(engine: Engine) -> None:
    """A caller cancelled while queued is never written and nobody else loses anything; one cancelled
    while its transaction is being written is written once (its answer is lost, as after a commit)."""
    open_accounts(engine, "a", "b")
    committer = GroupCommitter(engine)

    async def run() -> dict[str, object]:
        with write_lock_held(engine):
            writing = asyncio.ensure_future(committer.submit_async([single("in-flight", "a", "b", 1)]))
            await eventually(lambda: committer.writing == 1, DEADLINE_S, "the first transaction waiting")
            queued = {
                name: asyncio.ensure_future(committer.submit_async([single(name, "a", "b", 1)]))
                for name in ("q1", "q2", "q3")
            }
            await eventually(lambda: committer.waiting == 3, DEADLINE_S, "three callers queued")
            writing.cancel()
            queued["q2"].cancel()
            await eventually(
                lambda: committer.waiting == 2, DEADLINE_S, "the cancelled caller gone from the queue"
            )
        done = await asyncio.gather(writing, *queued.values(), return_exceptions=True)
        return dict(zip(["in-flight", "q1", "q2", "q3"], done, strict=True))

    try:
        outcome = asyncio.run(run())
        assert isinstance(outcome["in-flight"], asyncio.CancelledError)
        assert isinstance(outcome["q2"], asyncio.CancelledError)
        assert [r.status for r in outcome["q1"]] == [Status.CREATED]  # type: ignore[attr-defined]
        assert [r.status for r in outcome["q3"]] == [Status.CREATED]  # type: ignore[attr-defined]
        assert get_transfer(engine, "q2") is None
        assert get_transfer(engine, "in-flight") is not None
        assert committer.stats.cancelled == 1
        retried = committer.submit(batches_of("q2")[0]) + committer.submit(batches_of("in-flight")[0])
    finally:
        committer.close()
    assert [r.status for r in retried] == [Status.CREATED, Status.EXISTS]
    assert sorted(t.id for t in all_transfers(engine)) == ["in-flight", "q1", "q2", "q3"]
    assert balances(engine) == replayed(engine)


def test_queue_is_bounded(engine: Engine) -> None:
    """Beyond `max_queued` waiting transfers a caller is refused at once with LedgerBusy (503,
    nothing written); a batch larger than the bound still enters an empty queue."""
    open_accounts(engine, "a", "b")
    committer = GroupCommitter(engine, max_queued=3)
    try:
        with ThreadPoolExecutor(5) as pool, write_lock_held(engine):
            first = pool.submit(committer.submit, [single("first", "a", "b", 1)])
            wait_for(lambda: committer.writing == 1, DEADLINE_S, "the first transaction waiting")
            big = pool.submit(committer.submit, [single(f"big{n}", "a", "b", 1) for n in range(5)])
            wait_for(lambda: committer.waiting == 1, DEADLINE_S, "the large batch queued")
            with pytest.raises(LedgerBusy) as refused:
                committer.submit([single("refused", "a", "b", 1)])
        assert status_for(refused.value) == 503
        assert refused.value.code == "ledger_busy"
        assert [r.status for r in first.result(timeout=60) + big.result(timeout=60)] == [Status.CREATED] * 6
    finally:
        committer.close()
    assert committer.stats.refused == 1
    assert get_transfer(engine, "refused") is None


@pytest.fixture(name="tagged")
def fixture_tagged(postgres_url: str) -> Iterator[tuple[Engine, Engine, str]]:
    """(engine whose connections carry an application name, admin engine, that name) on a fresh schema."""
    name = f"cpnode-group-fault-{time.monotonic_ns()}"
    writer = make_engine(f"{postgres_url}&application_name={name}")
    upgrade(writer)
    admin = sa.create_engine(postgres_url)
    yield writer, admin, name
    writer.dispose()
    admin.dispose()


@pytest.mark.postgres
def test_connection_cut_under_a_shared_transaction(tagged: tuple[Engine, Engine, str]) -> None:
    """The connection of a shared transaction is cut while it waits for the head lock: the whole batch
    is retried on a new connection and every caller's transfer is applied exactly once."""
    writer, admin, name = tagged
    open_accounts(writer, "a", "b")
    committer = GroupCommitter(writer)
    blocker = admin.connect()
    blocker.execute(sa.text("SELECT 1 FROM ledger_head WHERE id = 1 FOR UPDATE"))
    try:
        with ThreadPoolExecutor(8) as pool:
            futures = [
                pool.submit(committer.submit, batch) for batch in batches_of(*(f"t{n}" for n in range(8)))
            ]
            wait_for(gathered(committer, 8), DEADLINE_S, "every caller at the committer")
            killed = 0

            def cut() -> bool:
                nonlocal killed
                with admin.begin() as conn:
                    killed += len(
                        conn.execute(
                            sa.text(
                                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                "application_name = :name AND wait_event_type = 'Lock'"
                            ),
                            {"name": name},
                        ).all()
                    )
                return killed > 0

            wait_for(cut, DEADLINE_S, "a writer waiting on the head lock, cut")
            blocker.rollback()
            results = [future.result(timeout=120) for future in futures]
    finally:
        blocker.close()
        committer.close()
    assert {r.status for [r] in results} <= {Status.CREATED, Status.EXISTS}
    assert sorted(t.id for t in all_transfers(writer)) == sorted(f"t{n}" for n in range(8))
    assert balances(writer) == replayed(writer)


async def test_admin_route_groups_concurrent_requests(tmp_path: Path, db_url: str) -> None:
    """24 concurrent `POST /api/v1/ledger/transfers` share transactions: the same id sent by 12 clients
    is created once and 11 times `exists`, the other 12 are created, and the node's committer wrote
    them in fewer transactions than requests."""
    config = make_node_dir(tmp_path, "alpha", db_url=db_url)
    async with running_node(config) as server, aiohttp.ClientSession(server.url) as http:
        assert server.ctx is not None
        engine = server.ctx.engine
        admin = {"Authorization": f"Bearer {server.ctx.admin_token}"}
        open_accounts(engine, "a", "b")
        committer = committer_for(engine)

        async def post(transfer_id: str) -> tuple[int, str]:
            body = {
                "transfers": [
                    {
                        "id": transfer_id,
                        "kind": "single",
                        "debit_account": "a",
                        "credit_account": "b",
                        "currency": "CNY",
                        "amount": 1,
                    }
                ]
            }
            async with http.post("/api/v1/ledger/transfers", json=body, headers=admin) as response:
                [result] = (await response.json())["results"]
                return response.status, result["status"]

        ids = ["same"] * 12 + [f"own{n}" for n in range(12)]
        with write_lock_held(engine):
            requests = [asyncio.ensure_future(post(transfer_id)) for transfer_id in ids]
            await eventually(gathered(committer, len(ids)), DEADLINE_S, "every request at the committer")
        answers = await asyncio.gather(*requests)
    assert sorted(answers[:12]) == [(200, "created")] + [(200, "exists")] * 11
    assert answers[12:] == [(200, "created")] * 12
    assert committer.stats.transactions < committer.stats.callers


def test_trading_submits_through_the_committer(engine: Engine) -> None:
    """Trading's ledger writes (`books.submit`, from worker threads) share transactions when they
    arrive together, and each still answers for its own batch."""
    open_accounts(engine, "a", "b", no_overdraft=("a",))
    committer = committer_for(engine)
    transactions, callers = committer.stats.transactions, committer.stats.callers
    batches = [[single(f"in{n}", "b", "a", 5, linked=True), single(f"out{n}", "a", "b", 5)] for n in range(6)]
    batches.append([single("overdraw", "a", "b", 1)])
    try:
        with ThreadPoolExecutor(len(batches)) as pool, write_lock_held(engine):
            futures = [pool.submit(books.submit, engine, batch) for batch in batches]
            wait_for(gathered(committer, len(batches)), DEADLINE_S, "every trading write at the committer")
        causes = [future.result(timeout=60) for future in futures]
    finally:
        committer.close()
    assert causes[:6] == [None] * 6
    assert causes[6] is Status.EXCEEDS_CREDITS
    assert committer.stats.callers - callers == len(batches)
    assert committer.stats.transactions - transactions < len(batches)
    assert len(all_transfers(engine)) == 12
