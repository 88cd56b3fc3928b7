"""Writes of concurrent orders grouped into shared transactions, like a group commit: a write goes to
a database thread at once when none is being written; the ones that arrive meanwhile share the
next transaction (up to `MAX_GROUP` of each kind), which that thread starts as soon as its write
ends.

Two kinds of write share one writer (`SharedWriter`), each in a lane of its own: the moves to
`accepted` of the answers one trade batch brings back together, each with the hold of what the
order owes its partner (`holding.move_orders_holding`), and new partner orders being placed (their
insert, hold and moves to `requested`: `placing.place_group`). Whatever of both kinds waits when a
write starts goes into one durable transaction, the moves first (they lock the ledger's head
first, as every writer does): one commit and one trip to a database thread where two would queue
for the process's write lock one after the other. Should that transaction fail, it is rolled back
whole and each kind's group is written again in a transaction of its own, as it would be alone
(`WriteKind.write_alone`: placing then isolates the order that fails), so one kind's trouble never
fails the other's calls. Each call's write is still its own (a compare-and-set on its order, its
own ledger batch) and answered on its own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Connection, Engine

from ledger import TransferRequest, TransferResult
from node.db import write_transaction
from node.trading import holding
from node.trading.core import Trading
from node.trading.machine import OrderEvent
from node.trading.records import Order

log = logging.getLogger("cpnode.trading")
C = TypeVar("C")
R = TypeVar("R")
MAX_GROUP = 64  # writes of one kind per transaction at most

Results = Sequence[Any]  # one result or error per call
Committed = Callable[[], None]  # what to call once the shared transaction has committed


@dataclass(frozen=True)
class WriteKind(Generic[C, R]):
    """One kind of grouped write. `write_in` writes a group inside a shared write transaction and
    raises on any call's failure (the whole transaction is then rolled back); `write_alone` writes
    a group in a durable transaction of its own, each call's error its result."""

    write_in: Callable[[Connection, Sequence[C]], tuple[Sequence[R | Exception], Committed]]
    write_alone: Callable[[Engine, Sequence[C]], Sequence[R | Exception]]


@dataclass
class _Waiting(Generic[C, R]):
    call: C
    done: asyncio.Future[R]


class Lane(Generic[C, R]):
    """The calls of one kind waiting for their shared writer; `transactions` and `calls` count the
    groups written and the calls in them."""

    def __init__(self, writer: SharedWriter, kind: WriteKind[C, R]) -> None:
        self.kind = kind
        self.waiting: list[_Waiting[C, R]] = []
        self.transactions = 0
        self.calls = 0
        self._writer = writer

    async def submit(self, call: C) -> R:
        """Write `call` with the calls waiting with it; its result (or its error, raised)."""
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        with self._writer.lock:  # the writer's thread takes from `waiting`
            self.waiting.append(_Waiting(call, done))
        self._writer.wake()
        return await done

    def take(self) -> list[_Waiting[C, R]]:
        """The next group of waiting calls (counted), removed from the lane (under the writer's lock)."""
        group, self.waiting = self.waiting[:MAX_GROUP], self.waiting[MAX_GROUP:]
        if group:
            self.transactions += 1
            self.calls += len(group)
        return group


Taken = list[tuple[Lane[Any, Any], list[_Waiting[Any, Any]]]]  # the groups of one transaction


class SharedWriter:
    """Lanes of grouped writes sharing one writer and its transactions (see the module docstring);
    lanes write in the order they were added.

    The writes run on a database thread that drains the lanes, as the ledger's group committer
    does: after each transaction it hands that group's callers their results on the event loop and
    takes, at once, what came meanwhile. So consecutive transactions follow each other with no trip
    back to the loop between them, and the loop only answers. `lock` guards the lanes' waiting
    calls and whether a drain runs (at most one at a time)."""

    def __init__(self, trading: Trading) -> None:
        self.trading = trading
        self.lanes: list[Lane[Any, Any]] = []
        self.transactions = 0
        self.lock = threading.Lock()
        self._draining = False
        self._drain: asyncio.Task[None] | None = None  # the drain's await on the loop (kept alive)

    def lane(self, kind: WriteKind[C, R]) -> Lane[C, R]:
        """A new lane for writes of `kind`, written after the lanes added before it."""
        lane = Lane(self, kind)
        self.lanes.append(lane)
        return lane

    def wake(self) -> None:
        """Start a drain, unless one runs (it takes what waits when its write ends)."""
        with self.lock:
            if self._draining:
                return
            self._draining = True
        self._drain = asyncio.create_task(self._run())

    async def _run(self) -> None:
        """Run the drain on a database thread. Cancelled, the drain goes on to its end; a thread
        that cannot be started fails the calls waiting (nothing of them is written)."""
        try:
            await self.trading.db(self._drain_in_thread, asyncio.get_running_loop())
        except Exception as exc:  # `_drain_in_thread` never raises: it did not run
            with self.lock:
                self._draining = False
                failed: Taken = [(lane, lane.waiting) for lane in self.lanes if lane.waiting]
                for lane in self.lanes:
                    lane.waiting = []
            _answer(failed, [[exc] * len(group) for _, group in failed])

    def _drain_in_thread(self, engine: Engine, loop: asyncio.AbstractEventLoop) -> None:
        """On a database thread: write what waits, transaction after transaction, until nothing
        does; each transaction's callers are answered on `loop` once it is written."""
        idle = False
        try:
            while not idle:
                idle = self._write_next(engine, loop)
        except BaseException:  # a bug: this drain ends, the next call starts another
            log.exception("the grouped order writer stopped")
        finally:
            if not idle:
                with self.lock:
                    self._draining = False

    def _write_next(self, engine: Engine, loop: asyncio.AbstractEventLoop) -> bool:
        """Write the next transaction's groups and answer their callers; True (and the drain ended,
        under the lock) when nothing waits."""
        with self.lock:
            taken: Taken = [(lane, group) for lane in self.lanes if (group := lane.take())]
            if not taken:
                self._draining = False
                return True
            self.transactions += 1
        results: list[Results]
        try:
            results = write_groups(engine, [(lane.kind, [w.call for w in group]) for lane, group in taken])
        except Exception as exc:  # not even written alone: each caller hears it
            results = [[exc] * len(group) for _, group in taken]
        try:
            loop.call_soon_threadsafe(_answer, taken, results)
        except RuntimeError:  # the loop is closed: nobody waits for these any more
            log.debug("grouped writes: answers for a closed event loop dropped")
        return False


def _answer(taken: Taken, results: Sequence[Results]) -> None:
    """On the loop: each call's result (or its error) to its caller, unless it gave up waiting."""
    for (_, group), written in zip(taken, results, strict=True):
        for waiting, result in zip(group, written, strict=True):
            if waiting.done.done():
                continue
            if isinstance(result, Exception):
                waiting.done.set_exception(result)
            else:
                waiting.done.set_result(result)


def write_groups(
    engine: Engine, groups: Sequence[tuple[WriteKind[Any, Any], Sequence[Any]]]
) -> list[Results]:
    """Write each kind's group of calls: several kinds in one durable transaction, in order; if it
    fails, or there is one kind only, each group in a transaction of its own. One result or error
    per call, per group."""
    if len(groups) > 1:
        try:
            done: list[Committed] = []
            out: list[Results] = []
            with write_transaction(engine) as conn:
                for kind, calls in groups:
                    results, committed = kind.write_in(conn, calls)
                    out.append(results)
                    done.append(committed)
        except Exception as exc:  # rolled back whole: each kind alone, as if they had not met
            log.debug("shared write of %d kinds failed (%s); writing each alone", len(groups), exc)
        else:
            for committed in done:  # in the order written: the ledger's last batch is current
                committed()
            return out
    return [_alone(kind, engine, calls) for kind, calls in groups]


def _alone(kind: WriteKind[Any, Any], engine: Engine, calls: Sequence[Any]) -> Results:
    """`kind.write_alone`, its failure as every call's result."""
    try:
        return kind.write_alone(engine, calls)
    except Exception as exc:
        return [exc] * len(calls)


_MoveCall = tuple[str, Any, OrderEvent, dict[str, Any]]
Held = tuple[Order | None, TransferResult | None]


def moves_kind(
    trading: Trading, hold_of: Callable[[Order], TransferRequest | None]
) -> WriteKind[_MoveCall, Held]:
    """Order moves, each with the ledger transfer `hold_of` makes of the moved order (None when it
    makes none): the moved order (None if it was not in its state any more) and its transfer's
    result, or the StateError refusing its event."""

    def results(
        written: Sequence[tuple[Order | Exception | None, TransferResult | None]],
    ) -> list[Held | Exception]:
        return [moved if isinstance(moved, Exception) else (moved, held) for moved, held in written]

    def write_in(conn: Connection, moves: Sequence[_MoveCall]) -> tuple[list[Held | Exception], Committed]:
        written, batch = holding.move_orders_holding_in(conn, moves, hold_of, trading.clock())
        return results(written), batch.committed

    def write_alone(engine: Engine, moves: Sequence[_MoveCall]) -> list[Held | Exception]:
        return results(holding.move_orders_holding(engine, moves, hold_of, trading.clock()))

    return WriteKind(write_in, write_alone)


class GroupedMoves:
    """Order moves with their ledger transfers, in a lane of the shared writer."""

    def __init__(self, lane: Lane[_MoveCall, Held]) -> None:
        self.lane = lane

    async def move_holding(self, order: Order, event: OrderEvent, **values: Any) -> Held:
        """Move `order` from its state by `event`, writing `values`, and write the ledger transfer
        `hold_of` makes of the moved order with it, in a durable transaction shared with the writes
        waiting with it: the moved order (None if it moved meanwhile) and its transfer's result
        (None when it made none)."""
        return await self.lane.submit((order.id, order.state, event, values))
