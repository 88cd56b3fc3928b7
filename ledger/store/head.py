"""The head row every writer locks first: the log's size, its last time, the sweep watermark and the
version of what writers may have cached (dense sequence numbers, monotonic time, one order for
writers so they never wait on each other in a cycle).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from ledger.store.db import Cursor, Statement, pg_json_keys
from ledger.store.statements import SELECT_KNOWN_IDS_PG


class Head(NamedTuple):
    """The locked head row."""

    next_seq: int  # the log's size
    last_ts_ms: int
    swept_ms: int  # every hold with a deadline up to here is resolved
    version: int  # bumped by every write that changes balances or account state


HEAD = "SELECT next_seq, last_ts_ms, swept_ms, version FROM ledger_head WHERE id = 1"
# PostgreSQL: the head's lock, in the statement that also sets the transaction's planner settings for
# the statements after it. Every lookup of a write transaction is by key: never let a table without
# statistics yet (a young ledger, before autovacuum's first ANALYZE) be scanned whole, nor a batch's
# rows be merge- or hash-joined with a whole table (the balances of a batch's 64 accounts, joined by
# merge with 1,000 balance rows, read all 1,000: 0.38 of 0.95 ms of the one-round-trip statement).
LOCK_HEAD_PG = (
    "SELECT next_seq, last_ts_ms, swept_ms, version, set_config('enable_seqscan', 'off', true), "
    "set_config('enable_mergejoin', 'off', true), set_config('enable_hashjoin', 'off', true) "
    "FROM ledger_head WHERE id = 1 FOR UPDATE"
)


def head_of(row: Sequence[Any]) -> Head:
    """The Head of a `HEAD` or `LOCK_HEAD_PG` row."""
    return Head(int(row[0]), int(row[1]), int(row[2]), int(row[3]))


def lock_head(cur: Cursor) -> Head:
    """Lock the head row (first, in every writer, so writers never wait on each other in a cycle)."""
    [row] = cur.execute(LOCK_HEAD_PG if cur.postgres else HEAD)
    return head_of(row)


def begin_pg(cur: Cursor, ids: Iterable[str]) -> tuple[Head, list[tuple[Any, ...]]]:
    """PostgreSQL, in one round trip: BEGIN, lock the head row, and find which of `ids` are stored or
    remembered as failed (read after the lock is held, so nothing committed before it is missed):
    the head and the (id, failure status or None) rows."""
    keys = list(ids)
    statements = [Statement(LOCK_HEAD_PG)]
    if keys:
        statements.append(Statement(SELECT_KNOWN_IDS_PG, [pg_json_keys(keys)] * 2))
    [row], *known = cur.pipeline(statements, begin=True)
    return head_of(row), known[0] if known else []
