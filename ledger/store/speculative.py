"""A batch written in one round trip on what the writer's cache assumes (PostgreSQL).

When the engine's writer cache knows the head its last commit left and holds every account and hold
a batch names, the rules run before anything is read, and BEGIN, the head's lock, the writes and
COMMIT go to the server together; every write is guarded by the head still being the one assumed
and none of the batch's ids being known (statements.GUARD_PG), so a batch that guessed wrong writes
nothing and goes the reading way (`ledger.store.writer.submit_batches`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from ledger.records import TransferRequest, TransferResult
from ledger.store.cache import MAX_CACHED_ACCOUNTS, WriterCache
from ledger.store.db import Cursor, StaleRead, Statement, now_ms, pg_json_keys
from ledger.store.head import LOCK_HEAD_PG, Head
from ledger.store.runs import apply_runs, request_ids
from ledger.store.statements import (
    ADVANCE_HEAD_IF_OK,
    GUARD_PG,
    INSERT_FAILURES_PG_IF_OK,
    INSERT_TRANSFERS_PG_IF_OK,
    UPDATE_BALANCES_PG_IF_OK,
)
from ledger.view import BatchOutcome, LedgerView


def can_speculate(cache: WriterCache, requests: Sequence[TransferRequest]) -> bool:
    """Whether the cache knows the head its writer left and holds everything `requests` name (their
    accounts, and the holds they resolve with those holds' accounts), so the batch can be applied
    before anything is read (`speculate`)."""
    if cache.next_seq is None or len(cache.accounts) > MAX_CACHED_ACCOUNTS:
        return False
    accounts, transfers = cache.accounts, cache.transfers
    for r in requests:
        pending_id = r.pending_id
        if pending_id is not None:
            hold = transfers.get(pending_id) if type(pending_id) is str else None
            if hold is None or hold.debit_account not in accounts or hold.credit_account not in accounts:
                return False
        for account_id in (r.debit_account, r.credit_account):
            if type(account_id) is str and account_id not in accounts:
                return False
    return True


def speculate(
    cur: Cursor,
    cache: WriterCache,
    requests: Sequence[TransferRequest],
    runs: Sequence[Sequence[Sequence[TransferRequest]]],
    now: int | None,
) -> tuple[list[list[TransferResult]], BatchOutcome, Head, int]:
    """PostgreSQL, one round trip: apply the batch to the cache as if the head were still the one
    this engine's writer left and none of its ids were known, then send BEGIN, the head's lock, the
    writes guarded by exactly that (statements.GUARD_PG) and COMMIT together. Results, outcome, head
    and time when the guard held; else nothing was written and StaleRead makes the caller drop the
    cache (already changed) and go the reading way."""
    assert cache.next_seq is not None
    head = Head(cache.next_seq, cache.last_ts_ms, 0, cache.version)
    ts_ms = max(now_ms() if now is None else now, head.last_ts_ms)
    # Before the rules run (they add what they create to the cache): ids the cache cannot answer for.
    keys = pg_json_keys(list(request_ids(requests).difference(cache.transfers)))
    view = LedgerView(cache.accounts, cache.transfers, {}, cache.holds)
    results, outcome = apply_runs(view, runs, ts_ms, head.next_seq)
    parts = [GUARD_PG]
    params: list[Any] = [head.version, head.next_seq, ts_ms, keys, keys]
    try:
        if outcome.failures:
            parts.append(f"failures AS ({INSERT_FAILURES_PG_IF_OK} RETURNING 1)")
            rows = [(f.id, f.status.value, f.field, ts_ms) for f in outcome.failures]
            params.append(orjson.dumps(rows).decode())
        if outcome.touched:
            accounts, nums = cache.accounts, cache.nums
            touched = sorted(outcome.touched)
            balances = [(nums[a], *accounts[a].balance.as_tuple()) for a in touched]
            parts.append(f"balances AS ({UPDATE_BALANCES_PG_IF_OK} RETURNING 1)")
            params.append(orjson.dumps(balances).decode())
        created = outcome.created
        if created:
            parts.append(f"head AS ({ADVANCE_HEAD_IF_OK} RETURNING 1)")
            parts.append(f"transfers AS ({INSERT_TRANSFERS_PG_IF_OK} RETURNING 1)")
            params += [
                head.next_seq + len(created),
                ts_ms,
                orjson.dumps([tuple(t) for t in created]).decode(),
            ]
    except orjson.JSONEncodeError as exc:  # an id JSON cannot carry: the reading way writes it
        raise StaleRead(f"cannot send the batch in one statement: {exc}") from exc
    statements = [
        Statement(LOCK_HEAD_PG),
        Statement(f"WITH {', '.join(parts)} SELECT count(*) FROM ok", params),  # noqa: S608 - constants
    ]
    _, [(held,)] = cur.pipeline(statements, begin=True, commit=True)
    if held != 1:
        raise StaleRead("another writer moved the head, or an id of the batch is known; reading afresh")
    return results, outcome, head, ts_ms
