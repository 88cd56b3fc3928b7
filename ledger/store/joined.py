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

The engine's writer cache (ledger.store.cache) is neither used nor kept: what is read here is read
fresh, and the head's version, bumped by the write when the caller commits, tells every other writer
that what it cached is stale.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Connection

from ledger.records import TransferRequest, TransferResult
from ledger.store.cache import WriterCache
from ledger.store.db import Cursor, now_ms
from ledger.store.head import lock_head
from ledger.store.runs import apply_runs, chain_free_runs
from ledger.store.writer import check_size, load_view, persist


def submit_in(
    conn: Connection, requests: Sequence[TransferRequest], *, now: int | None = None
) -> list[TransferResult]:
    """Apply a batch inside the caller's open write transaction `conn` (uncommitted; see module doc);
    one result per request, in order, as `submit` would give them."""
    check_size(requests)
    if not requests:
        return []
    cur = Cursor(conn)
    head = lock_head(cur)
    cache = WriterCache(head.version)
    ts_ms = max(now_ms() if now is None else now, head.last_ts_ms)
    view = load_view(cur, requests, cache)
    [results], outcome = apply_runs(view, chain_free_runs([requests]), ts_ms, head.next_seq)
    persist(cur, cache, outcome, head.next_seq, ts_ms)
    return results
