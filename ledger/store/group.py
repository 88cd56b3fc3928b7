"""Group commit: concurrent callers' transfer batches share one write transaction.

Callers (threads, or asyncio tasks through `submit_async`) put their batch in a queue and wait on a
future. One committer thread per engine takes whatever is queued, in arrival order and up to
MAX_BATCH requests, and writes it through `ledger.store.writer.submit_batches`: one transaction in
which each caller's batch is applied exactly as if it had been submitted on its own, in turn. The
committer never waits for company: a caller that finds it idle is committed at once, and callers
that arrive while a commit runs are gathered for the next one, like a database's group commit, so
the batch size follows the load. A lone thread writes its own batch (no hand-off) when the last
transaction had one caller; an asyncio task always hands off to the committer thread (its event
loop must not block), and all tasks of one loop answered by a transaction are woken in one call.

What each caller gets is what a separate `submit` in the same order would have given it: its own
results (indexes from 0), its own linked chains (never joined to another caller's), the same
`exists`, `exists_with_different_field` or `id_already_failed` answers for ids an earlier caller of
the same transaction used, and refusals that touch nobody else. Storage errors: the transaction
fails whole (nothing of it is written) and every caller of it gets a StorageError, as each would
have had its own if the database failed under it; a retry answers `exists` for anything that did
commit. The queue is bounded (`max_queued` requests): beyond it callers get `LedgerBusy` (503) at
once. A caller cancelled before its batch is taken is dropped without a trace; one cancelled later
is written with the rest (its results are discarded, like a response lost after a commit).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection, Engine

from ledger.errors import StorageError
from ledger.records import TransferRequest, TransferResult
from ledger.store.db import autocommit_connection
from ledger.store.writer import MAX_BATCH, check_size, submit_batches

log = logging.getLogger("cpnode.ledger")
MAX_QUEUED = 4 * MAX_BATCH
IDLE_S = 2.0  # an idle committer thread exits after this long; the next caller starts another


class LedgerBusy(StorageError):
    """The group committer's queue is full: nothing was written; retry shortly."""

    code = "ledger_busy"
    headers = {"Retry-After": "1"}  # noqa: RUF012 - read by the node's error rendering


@dataclass(frozen=True, slots=True)
class Group:
    """One committed transaction: each caller's batch in the order it was applied."""

    batches: tuple[Sequence[TransferRequest], ...]
    seconds: float  # time spent in the writer
    failed: bool


@dataclass
class GroupStats:
    """Counters since the committer was made."""

    transactions: int = 0
    callers: int = 0
    transfers: int = 0
    largest: int = 0  # most callers in one transaction
    cancelled: int = 0  # callers dropped before their batch was taken
    refused: int = 0  # callers turned away with LedgerBusy
    sizes: dict[int, int] = field(default_factory=dict)  # callers per transaction → how often


@dataclass(slots=True, eq=False)
class _Waiting:
    """A queued caller: its batch, and where its answer goes: a thread's future, or an asyncio
    future with its event loop (answered in one call per loop and transaction)."""

    requests: Sequence[TransferRequest]
    future: Future[list[TransferResult]] | asyncio.Future[list[TransferResult]]
    loop: asyncio.AbstractEventLoop | None = None


_Outcome = list[TransferResult] | BaseException


def _settle(answers: list[tuple[asyncio.Future[list[TransferResult]], _Outcome]]) -> None:
    """In an event loop: give each waiting task its outcome (a task cancelled meanwhile has none)."""
    for future, outcome in answers:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class GroupCommitter:
    """Combines concurrent callers' batches for one engine into shared transactions (see module doc)."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = MAX_BATCH,
        max_queued: int = MAX_QUEUED,
        idle_s: float = IDLE_S,
        on_commit: Callable[[Group], None] | None = None,
    ) -> None:
        if not 1 <= max_batch <= MAX_BATCH or max_queued < 1:
            raise ValueError(f"max_batch must be 1..{MAX_BATCH} and max_queued positive")
        self._engine = weakref.ref(engine)  # the registry is keyed weakly by the engine
        self.max_batch = max_batch
        self.max_queued = max_queued
        self.idle_s = idle_s
        self.on_commit = on_commit
        self.stats = GroupStats()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[_Waiting] = deque()
        self._queued = 0  # requests waiting in the queue
        self._thread: threading.Thread | None = None
        self._busy = False  # a transaction of this committer is being written
        self._writing = 0  # the callers it holds
        self._last_callers = 0  # how many callers the last transaction held
        self._closed = False
        self._held: Connection | None = None  # PostgreSQL: the committer thread's own connection
        self._postgres = engine.dialect.name == "postgresql"

    @property
    def waiting(self) -> int:
        """How many callers are queued for the next transaction."""
        with self._lock:
            return len(self._queue)

    @property
    def writing(self) -> int:
        """How many callers' batches the transaction being written holds (0 when idle)."""
        with self._lock:
            return self._writing

    def enqueue(self, requests: Sequence[TransferRequest]) -> Future[list[TransferResult]]:
        """Queue a batch; the future resolves to its results (or the error that stopped it)."""
        check_size(requests)
        future: Future[list[TransferResult]] = Future()
        if not requests:
            future.set_result([])
            return future
        waiting = _Waiting(requests, future)
        self._put(waiting)
        future.add_done_callback(lambda done: self._forget(waiting) if done.cancelled() else None)
        return future

    def submit(self, requests: Sequence[TransferRequest]) -> list[TransferResult]:
        """Like `ledger.submit`, from any thread: the caller's batch in the next shared transaction.

        When nothing is being written, nobody waits and the last transaction had one caller, the
        calling thread writes its batch itself (no hand-off); otherwise it queues for the committer."""
        check_size(requests)
        if not requests:
            return []
        with self._lock:
            # Lead when the committer is idle and the last transaction had one caller (no sign of
            # company); after a shared one, callers queue, so those released together are gathered.
            lead = not self._busy and not self._queue and not self._closed and self._last_callers <= 1
            if lead:
                self._busy = True
                self._writing = 1
        if not lead:
            return self.enqueue(requests).result()
        try:
            return self._write((requests,))[0]
        finally:
            with self._lock:
                self._busy = False
                self._writing = 0
                if self._queue:  # callers that came while this one wrote
                    self._wake_committer()

    async def submit_async(self, requests: Sequence[TransferRequest]) -> list[TransferResult]:
        """Like `ledger.submit`, from an event loop, without holding a thread while waiting."""
        check_size(requests)
        if not requests:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[TransferResult]] = loop.create_future()
        waiting = _Waiting(requests, future, loop)
        self._put(waiting)
        try:
            return await future
        except asyncio.CancelledError:
            self._forget(waiting)  # still queued: it leaves now and is never written
            raise

    def close(self, timeout_s: float = 30.0) -> None:
        """Refuse new callers, let the queued ones be committed, and stop the committer thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
            self._wake.notify()
        engine = self._engine()
        with _REGISTRY_LOCK:
            if engine is not None and _COMMITTERS.get(engine) is self:
                del _COMMITTERS[engine]  # the next committer_for(engine) makes a fresh one
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def _put(self, waiting: _Waiting) -> None:
        """Queue a caller and wake the committer, or refuse it (closed; LedgerBusy when the queue is
        full: a batch always fits an empty queue, otherwise it holds at most max_queued requests)."""
        size = len(waiting.requests)
        with self._lock:
            if self._closed:
                raise StorageError("the ledger's group committer is closed")
            if self._queue and self._queued + size > self.max_queued:
                self.stats.refused += 1
                raise LedgerBusy(f"the ledger is busy: {self._queued} transfers are waiting; retry shortly")
            self._queue.append(waiting)
            self._queued += size
            try:
                self._wake_committer()
            except StorageError:
                self._queue.pop()
                self._queued -= size
                raise

    def _wake_committer(self) -> None:
        """Under the lock: make sure the committer thread runs and sees the queue."""
        if self._thread is not None:
            self._wake.notify()
            return
        thread = threading.Thread(target=self._run, name="ledger-group-commit", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:
            raise StorageError(f"cannot start the ledger's group committer: {exc}") from exc
        self._thread = thread

    def _forget(self, waiting: _Waiting) -> None:
        """A caller was cancelled: if it is still queued, it leaves the queue now."""
        with self._lock:
            try:
                self._queue.remove(waiting)
            except ValueError:  # already taken (and dropped) by the committer
                return
            self._queued -= len(waiting.requests)
            self.stats.cancelled += 1

    def _take(self) -> list[_Waiting]:
        """Under the lock: the callers of the next transaction, oldest first, up to max_batch requests."""
        queue, size = self._queue, 0
        taken: list[_Waiting] = []
        while queue and (not taken or size + len(queue[0].requests) <= self.max_batch):
            waiting = queue.popleft()
            self._queued -= len(waiting.requests)
            # Taken: a later cancel no longer keeps the batch from being written.
            if isinstance(waiting.future, Future):
                wanted = waiting.future.set_running_or_notify_cancel()
            else:
                wanted = not waiting.future.cancelled()
            if wanted:
                taken.append(waiting)
                size += len(waiting.requests)
            else:
                self.stats.cancelled += 1
        return taken

    def _run(self) -> None:
        """The committer thread: write what is queued, transaction after transaction, until idle."""
        try:
            self._serve()
        finally:
            self._drop_held()

    def _serve(self) -> None:
        """The committer thread's loop (see `_run`)."""
        while True:
            with self._lock:
                while not self._queue or self._busy:
                    if self._queue:  # a caller is writing its own batch; it wakes us when done
                        self._wake.wait()
                    elif self._closed or (not self._wake.wait(self.idle_s) and not self._queue):
                        self._thread = None
                        return
                self._busy = True
                taken = self._take()
                self._writing = len(taken)
            try:
                if taken:
                    self._commit(taken)
            finally:
                with self._lock:
                    self._busy = False
                    self._writing = 0

    def _commit(self, taken: list[_Waiting]) -> None:
        """Write the taken callers' batches and hand each its results or the error."""
        outcomes: list[_Outcome]
        try:
            held = self._connection if self._postgres else None
            outcomes = list(self._write(tuple(waiting.requests for waiting in taken), held))
        except StorageError as exc:
            outcomes = []
            for _ in taken:  # each caller its own exception object (tracebacks are per raise)
                error = StorageError(str(exc))
                error.__cause__ = exc
                outcomes.append(error)
        except BaseException as exc:  # a bug must not leave callers waiting forever
            log.exception("group commit of %d caller(s) failed", len(taken))
            self._answer(taken, [exc] * len(taken))
            if not isinstance(exc, Exception):
                raise
            return
        self._answer(taken, outcomes)

    @staticmethod
    def _answer(taken: list[_Waiting], outcomes: list[_Outcome]) -> None:
        """Hand each caller its outcome: threads directly, each event loop in one call."""
        loops: dict[
            asyncio.AbstractEventLoop, list[tuple[asyncio.Future[list[TransferResult]], _Outcome]]
        ] = {}
        for waiting, outcome in zip(taken, outcomes, strict=True):
            future = waiting.future
            if isinstance(future, Future):
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
            elif waiting.loop is not None:
                loops.setdefault(waiting.loop, []).append((future, outcome))
        for loop, answers in loops.items():
            try:
                loop.call_soon_threadsafe(_settle, answers)
            except RuntimeError:  # the loop was closed: nobody waits for these any more
                log.debug("group commit: %d answer(s) for a closed event loop dropped", len(answers))

    def _connection(self) -> Connection:
        """The committer thread's PostgreSQL connection, kept between its transactions (no pool
        checkout and ping each time); one left in a transaction, broken or closed is replaced."""
        held = self._held
        if held is not None:
            driver = None if held.invalidated or held.closed else held.connection.driver_connection
            if driver is None or driver.closed or driver.broken or driver.pgconn.transaction_status != 0:
                self._drop_held()
                held = None
        if held is None:
            engine = self._engine()
            if engine is None:
                raise StorageError("the ledger's engine is gone")
            held = self._held = autocommit_connection(engine)
        return held

    def _drop_held(self) -> None:
        """Close the committer thread's connection, if it has one (from that thread)."""
        held, self._held = self._held, None
        if held is None:
            return
        try:
            if not held.invalidated and not held.closed:
                driver = held.connection.driver_connection
                if driver is None or driver.broken or driver.pgconn.transaction_status != 0:
                    held.invalidate()  # never back to the pool in doubt
            held.close()
        except Exception:  # a dead connection: nothing to give back
            log.debug("group commit: closing the committer's connection failed", exc_info=True)

    def _write(
        self, batches: tuple[Sequence[TransferRequest], ...], held: Callable[[], Connection] | None = None
    ) -> list[list[TransferResult]]:
        """One transaction for `batches` through the writer, counted and reported."""
        engine = self._engine()
        if engine is None:  # unreachable while a caller holds the engine, which it does
            raise StorageError("the ledger's engine is gone")
        started = time.perf_counter()
        failed = True
        try:
            results = submit_batches(engine, batches, held=held)
            failed = False
            return results
        finally:
            self._count(batches, time.perf_counter() - started, failed)

    def _count(self, batches: tuple[Sequence[TransferRequest], ...], seconds: float, failed: bool) -> None:
        self._last_callers = len(batches)
        stats = self.stats
        stats.transactions += 1
        stats.callers += len(batches)
        stats.transfers += sum(len(batch) for batch in batches)
        stats.largest = max(stats.largest, len(batches))
        stats.sizes[len(batches)] = stats.sizes.get(len(batches), 0) + 1
        if self.on_commit is not None:
            try:
                self.on_commit(Group(batches, seconds, failed))
            except Exception:
                log.exception("group commit listener failed")


_COMMITTERS: weakref.WeakKeyDictionary[Engine, GroupCommitter] = weakref.WeakKeyDictionary()
_REGISTRY_LOCK = threading.Lock()


def committer_for(engine: Engine) -> GroupCommitter:
    """The engine's shared group committer (made on first use, with the defaults)."""
    committer = _COMMITTERS.get(engine)
    if committer is None:
        with _REGISTRY_LOCK:
            committer = _COMMITTERS.get(engine)
            if committer is None:
                committer = _COMMITTERS[engine] = GroupCommitter(engine)
    return committer


def submit_grouped(engine: Engine, requests: Sequence[TransferRequest]) -> list[TransferResult]:
    """`ledger.submit` through the engine's group committer (blocking; from any thread)."""
    return committer_for(engine).submit(requests)


async def submit_grouped_async(engine: Engine, requests: Sequence[TransferRequest]) -> list[TransferResult]:
    """`ledger.submit` through the engine's group committer, awaited on the event loop."""
    return await committer_for(engine).submit_async(requests)
