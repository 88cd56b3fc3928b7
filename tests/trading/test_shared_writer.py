"""The shared writer of grouped order writes (node.trading.grouped): lanes of different kinds
waiting together share one transaction; when that transaction fails it leaves nothing and each
kind is written alone, so one kind's failure never fails the other's calls. Its database thread
takes what came during a write without a trip back to the loop, and is never left stuck."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from node.db import make_engine, write_transaction
from node.trading.core import Trading
from node.trading.grouped import Lane, SharedWriter, WriteKind, write_groups

ROWS = sa.table("rows", sa.column("kind"), sa.column("value"))


@pytest.fixture(name="engine")
def fixture_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'shared.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE rows (kind TEXT NOT NULL, value INTEGER NOT NULL)"))
    yield engine
    engine.dispose()


class Recorded:
    """A kind of write that inserts its calls as rows, counting how it was written; `fail_in`: its
    shared write raises after inserting (a call of it fails); `fail_alone`: its write alone raises."""

    def __init__(self, name: str, fail_in: bool = False, fail_alone: bool = False) -> None:
        self.name = name
        self.fail_in = fail_in
        self.fail_alone = fail_alone
        self.shared = 0
        self.alone = 0
        self.committed = 0

    def _insert(self, conn: Connection, calls: Sequence[int]) -> list[str]:
        conn.execute(sa.insert(ROWS), [{"kind": self.name, "value": value} for value in calls])
        return [f"{self.name}:{value}" for value in calls]

    def write_in(self, conn: Connection, calls: Sequence[int]) -> tuple[list[str], Callable[[], None]]:
        self.shared += 1
        written = self._insert(conn, calls)
        if self.fail_in:
            raise RuntimeError(f"{self.name} fails together")

        def committed() -> None:
            self.committed += 1

        return written, committed

    def write_alone(self, engine: Engine, calls: Sequence[int]) -> list[str | Exception]:
        self.alone += 1
        if self.fail_alone:
            raise RuntimeError(f"{self.name} fails alone")
        with write_transaction(engine) as conn:
            return list(self._insert(conn, calls))

    def kind(self) -> WriteKind[int, str]:
        return WriteKind(self.write_in, self.write_alone)


def _rows(engine: Engine) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        return [
            (r.kind, r.value)
            for r in conn.execute(sa.select(ROWS.c.kind, ROWS.c.value).order_by(sa.text("rowid")))
        ]


def test_kinds_together_share_one_transaction_in_order(engine: Engine) -> None:
    moves, placings = Recorded("moves"), Recorded("placings")
    out = write_groups(engine, [(moves.kind(), [1, 2]), (placings.kind(), [3])])
    assert out == [["moves:1", "moves:2"], ["placings:3"]]
    assert (moves.shared, placings.shared, moves.alone, placings.alone) == (1, 1, 0, 0)
    assert (moves.committed, placings.committed) == (1, 1)
    assert _rows(engine) == [("moves", 1), ("moves", 2), ("placings", 3)]


def test_a_failing_kind_rolls_the_shared_write_back_and_each_goes_alone(engine: Engine) -> None:
    moves, placings = Recorded("moves"), Recorded("placings", fail_in=True)
    out = write_groups(engine, [(moves.kind(), [1, 2]), (placings.kind(), [3])])
    assert out == [["moves:1", "moves:2"], ["placings:3"]]
    assert (moves.alone, placings.alone) == (1, 1)
    assert (moves.committed, placings.committed) == (0, 0)  # the shared one never committed
    assert _rows(engine) == [("moves", 1), ("moves", 2), ("placings", 3)]  # nothing twice


def test_a_kind_failing_alone_fails_only_its_own_calls(engine: Engine) -> None:
    moves, placings = Recorded("moves"), Recorded("placings", fail_in=True, fail_alone=True)
    out = write_groups(engine, [(moves.kind(), [1]), (placings.kind(), [3, 4])])
    assert out[0] == ["moves:1"]
    assert [str(result) for result in out[1]] == ["placings fails alone"] * 2
    assert _rows(engine) == [("moves", 1)]


def test_one_kind_is_written_alone(engine: Engine) -> None:
    placings = Recorded("placings")
    assert write_groups(engine, [(placings.kind(), [7])]) == [["placings:7"]]
    assert (placings.shared, placings.alone) == (0, 1)


class _Db:
    """What the writer needs of `Trading`: blocking calls run on a thread with the engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, self.engine, *args)


async def test_lanes_waiting_together_are_written_together(engine: Engine) -> None:
    writer = SharedWriter(cast(Trading, _Db(engine)))
    moves_kind, placings_kind = Recorded("moves"), Recorded("placings")
    moves, placings = writer.lane(moves_kind.kind()), writer.lane(placings_kind.kind())
    # Placings are submitted first, but the moves' lane was added first: it writes first.
    results = await asyncio.gather(placings.submit(5), moves.submit(1), placings.submit(6))
    assert list(results) == ["placings:5", "moves:1", "placings:6"]
    assert writer.transactions == 1
    assert (moves.transactions, moves.calls, placings.transactions, placings.calls) == (1, 1, 1, 2)
    assert _rows(engine) == [("moves", 1), ("placings", 5), ("placings", 6)]


async def test_a_failing_call_is_its_callers_alone(engine: Engine) -> None:
    writer = SharedWriter(cast(Trading, _Db(engine)))
    good, bad = Recorded("moves"), Recorded("placings", fail_in=True, fail_alone=True)
    moves, placings = writer.lane(good.kind()), writer.lane(bad.kind())
    results = await asyncio.gather(moves.submit(1), placings.submit(2), return_exceptions=True)
    assert results[0] == "moves:1"
    assert isinstance(results[1], RuntimeError)
    assert _rows(engine) == [("moves", 1)]


class Gated(Recorded):
    """A kind whose write alone waits for `gate` when it writes the call `blocks` (it reports on
    `writing` that it started), recording the thread of each write."""

    def __init__(self, name: str, blocks: int) -> None:
        super().__init__(name)
        self.blocks = blocks
        self.writing = threading.Event()
        self.gate = threading.Event()
        self.threads: list[int] = []

    def write_alone(self, engine: Engine, calls: Sequence[int]) -> list[str | Exception]:
        self.threads.append(threading.get_ident())
        if self.blocks in calls:
            self.writing.set()
            assert self.gate.wait(10), "the test never opened the gate"
        return super().write_alone(engine, calls)


class _CountedDb(_Db):
    """`_Db` counting its trips to a thread, on an executor of its own; `refuse`: each trip raises."""

    def __init__(self, engine: Engine, refuse: bool = False) -> None:
        super().__init__(engine)
        self.trips = 0
        self.running: set[asyncio.Future[Any]] = set()
        self.refuse = refuse
        self.executor = ThreadPoolExecutor(2)

    async def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.trips += 1
        if self.refuse:
            raise RuntimeError("cannot schedule new futures after shutdown")
        trip = asyncio.get_running_loop().run_in_executor(self.executor, fn, self.engine, *args)
        self.running.add(trip)
        try:
            return await trip
        finally:
            self.running.discard(trip)

    async def idle(self) -> None:
        """Wait until no trip runs (a drain ends just after answering its last callers)."""
        if self.running:
            await asyncio.wait(self.running, timeout=10)


async def _until(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, 10)


@dataclass
class _Writing:
    """A shared writer with one lane whose first call (1) is being written, held at its gate."""

    db: _CountedDb
    writer: SharedWriter
    placing: Gated
    lane: Lane[int, str]
    first: asyncio.Future[str]


@pytest.fixture(name="writing")
async def fixture_writing(engine: Engine) -> AsyncIterator[_Writing]:
    db = _CountedDb(engine)
    writer = SharedWriter(cast(Trading, db))
    placing = Gated("placings", blocks=1)
    lane = writer.lane(placing.kind())
    first = asyncio.ensure_future(lane.submit(1))
    await _until(placing.writing)
    yield _Writing(db, writer, placing, lane, first)
    placing.gate.set()
    db.executor.shutdown()


async def test_calls_arriving_during_a_write_are_taken_by_the_same_thread(
    engine: Engine, writing: _Writing
) -> None:
    db, writer, placing, lane = writing.db, writing.writer, writing.placing, writing.lane
    later = [asyncio.ensure_future(lane.submit(value)) for value in (2, 3)]
    await asyncio.sleep(0)
    placing.gate.set()
    assert list(await asyncio.gather(writing.first, *later)) == ["placings:1", "placings:2", "placings:3"]
    # Two transactions, one after the other on the same thread, without a trip back to the loop.
    assert (writer.transactions, lane.transactions, lane.calls) == (2, 2, 3)
    assert db.trips == 1
    assert len(set(placing.threads)) == 1
    assert _rows(engine) == [("placings", 1), ("placings", 2), ("placings", 3)]
    # Idle again: the next call starts a new drain.
    await db.idle()
    assert await lane.submit(4) == "placings:4"
    assert db.trips == 2


async def test_a_caller_that_gives_up_is_written_and_the_others_answered(
    engine: Engine, writing: _Writing
) -> None:
    gone, stays = asyncio.ensure_future(writing.lane.submit(2)), asyncio.ensure_future(writing.lane.submit(3))
    await asyncio.sleep(0)
    gone.cancel()
    writing.placing.gate.set()
    assert list(await asyncio.gather(writing.first, stays)) == ["placings:1", "placings:3"]
    assert gone.cancelled()
    # Taken with the group before it gave up, like a response lost after its commit.
    assert _rows(engine) == [("placings", 1), ("placings", 2), ("placings", 3)]


async def test_a_writer_whose_thread_cannot_start_fails_the_calls_and_recovers(engine: Engine) -> None:
    db = _CountedDb(engine, refuse=True)
    writer = SharedWriter(cast(Trading, db))
    placings = writer.lane(Recorded("placings").kind())
    results = await asyncio.gather(placings.submit(1), placings.submit(2), return_exceptions=True)
    assert [str(result) for result in results] == ["cannot schedule new futures after shutdown"] * 2
    assert placings.waiting == []
    assert _rows(engine) == []  # nothing of them written
    db.refuse = False
    assert await placings.submit(3) == "placings:3"
    db.executor.shutdown()


def test_a_write_ending_after_its_loop_closed_ends_the_drain(engine: Engine) -> None:
    db = _CountedDb(engine)
    writer = SharedWriter(cast(Trading, db))
    placing = Gated("placings", blocks=1)
    lane = writer.lane(placing.kind())

    async def stopped_while_writing() -> None:
        waiting = asyncio.ensure_future(lane.submit(1))
        await _until(placing.writing)
        assert not waiting.done()

    asyncio.run(stopped_while_writing())  # the loop closes while its call is being written
    placing.gate.set()
    db.executor.shutdown(wait=True)  # the drain's thread ended, its answer dropped
    assert _rows(engine) == [("placings", 1)]
    db.executor = ThreadPoolExecutor(2)

    async def again() -> str:
        return await lane.submit(2)

    assert asyncio.run(again()) == "placings:2"  # the writer was left idle, not stuck
    db.executor.shutdown()
