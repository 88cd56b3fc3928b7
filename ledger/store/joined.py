"""Transfers written inside a write transaction the caller holds, so that a caller's own rows (an
order's state, say) and the ledger's transfers commit together or not at all.

The caller opens the write transaction on the ledger's engine (SQLite `BEGIN IMMEDIATE`, which
`cpnode_write=True` asks for; PostgreSQL an ordinary transaction) and calls `submit_in` first, before
it writes or locks anything of its own: the ledger's head row is locked first, as every ledger writer
does, so writers never wait on each other in a cycle. The batch is applied exactly as `submit`
applies it (same rules, same results, idempotent ids, linked chains), on what is read under the
head's lock, and written without committing: the caller commits (or rolls back, and nothing of the
batch is written). There is no retry here: a transient failure fails the caller's transaction, which
is the caller's to retry whole.

The engine's writer cache (ledger.store.cache) is taken when it is valid at the head's version (so
the accounts and holds it knows are not read again) and, once the caller has committed, handed back
with what the batch wrote by `JoinedBatch.committed`: the next batch, joined or grouped, finds it
valid. A caller that rolls back, or never calls it, leaves no cache behind; the head's version,
bumped by the write, tells every other writer that what it cached before is stale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection, Engine

from ledger.errors import StorageError
from ledger.records import TransferRequest, TransferResult
from ledger.store.cache import WriterCache, take
from ledger.store.db import Cursor, StaleRead, now_ms
from ledger.store.head import Head, lock_head
from ledger.store.runs import apply_runs, chain_free_runs, combined_of
from ledger.store.writer import check_size, keep_committed, load_view, persist
from ledger.view import BatchOutcome


@dataclass
class JoinedBatch:
    """What `submit_in` wrote: one result per request, and the writer cache to hand back once the
    caller's transaction has committed. `batches`: the results of each batch `submit_batches_in`
    was given (indexes from 0 in each)."""

    results: list[TransferResult]
    engine: Engine | None = None
    cache: WriterCache | None = None
    head: Head | None = None
    outcome: BatchOutcome | None = None
    ts_ms: int = 0
    batches: list[list[TransferResult]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every transfer is stored (created now or before)."""
        return all(result.ok for result in self.results)

    def committed(self) -> None:
        """After the caller's transaction committed: keep the cache, as a writer's own commit does
        (call once, and only after a commit)."""
        cache, head, outcome, engine = self.cache, self.head, self.outcome, self.engine
        if cache is None or head is None or outcome is None or engine is None:
            return
        self.cache = None
        keep_committed(engine, cache, head, outcome, self.ts_ms)


def lock_in(conn: Connection) -> None:
    """Lock the ledger's head in the caller's open write transaction, first, as `submit_in` would:
    for a caller whose batch depends on rows it writes before it (a compare-and-set deciding which
    transfers to make), so that the head is still its first lock."""
    lock_head(Cursor(conn))


def submit_in(
    conn: Connection, requests: Sequence[TransferRequest], *, now: int | None = None
) -> JoinedBatch:
    """Apply a batch inside the caller's open write transaction `conn` (uncommitted; see module doc):
    one result per request, in order, as `submit` would give them."""
    return submit_batches_in(conn, [requests], now=now)


def submit_batches_in(
    conn: Connection, batches: Sequence[Sequence[TransferRequest]], *, now: int | None = None
) -> JoinedBatch:
    """Apply several batches inside the caller's open write transaction `conn`, each exactly as if
    submitted on its own, in order, as `submit_batches` applies them (a linked chain never crosses
    a batch's end; a later batch sees what earlier ones did): one read of what they touch and one
    write for all. `JoinedBatch.batches` holds each batch's results; `results` all of them."""
    for batch in batches:
        check_size(batch)
    requests = combined_of(batches)
    check_size(requests)
    if not requests:
        return JoinedBatch([], batches=[[] for _ in batches])
    cur = Cursor(conn)
    head = lock_head(cur)
    cache = take(conn.engine, head.version)
    ts_ms = max(now_ms() if now is None else now, head.last_ts_ms)
    view = load_view(cur, requests, cache)
    each, outcome = apply_runs(view, chain_free_runs(batches), ts_ms, head.next_seq)
    try:
        persist(cur, cache, outcome, head.next_seq, ts_ms)
    except StaleRead as exc:  # the caller's transaction cannot be retried from here
        raise StorageError(f"batch of {len(requests)} transfer(s): {exc}") from exc
    results = [result for part in each for result in part] if len(each) > 1 else each[0]
    return JoinedBatch(results, conn.engine, cache, head, outcome, ts_ms, each)
