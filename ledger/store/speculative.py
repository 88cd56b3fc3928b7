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

from ledger.holds import HoldState
from ledger.records import TransferRequest, TransferResult
from ledger.store.cache import MAX_CACHED_ACCOUNTS, WriterCache
from ledger.store.db import Cursor, StaleRead, Statement, now_ms, pg_json_keys
from ledger.store.head import LOCK_HEAD_PG, Head
from ledger.store.rows import balance_rows, transfer_rows
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
    and time when the guard held; else nothing was written, the cache is put back as it was (what
    the rules changed in it undone) and StaleRead makes the caller go the reading way."""
    assert cache.next_seq is not None
    head = Head(cache.next_seq, cache.last_ts_ms, 0, cache.version)
    ts_ms = max(now_ms() if now is None else now, head.last_ts_ms)
    # Before the rules run (they add what they create to the cache): ids the cache cannot answer for.
    keys = pg_json_keys(list(request_ids(requests).difference(cache.transfers)))
    undo = Undo(cache, requests)
    view = LedgerView(cache.accounts, cache.transfers, {}, cache.holds)
    results, outcome = apply_runs(view, runs, ts_ms, head.next_seq)
    try:
        held = _send(cur, cache, outcome, head, ts_ms, keys)
    except StaleRead:
        undo(outcome)
        raise
    if held != 1:
        undo(outcome)
        raise StaleRead("another writer moved the head, or an id of the batch is known; reading afresh")
    return results, outcome, head, ts_ms


class Undo:
    """What applying a batch may change in the cache, kept before the rules run to put it back if the
    batch is not written: the balances of the accounts it names (those of the holds it resolves
    too) and the states of those holds; the transfers it creates are dropped again."""

    __slots__ = ("balances", "cache", "holds")

    def __init__(self, cache: WriterCache, requests: Sequence[TransferRequest]) -> None:
        accounts, transfers, holds = cache.accounts, cache.transfers, cache.holds
        named: list[str] = []
        self.holds: dict[str, HoldState | None] = {}
        for r in requests:  # `can_speculate` held: every name below is in the cache
            pending_id, debit, credit = r.pending_id, r.debit_account, r.credit_account
            if type(pending_id) is str:
                hold = transfers[pending_id]
                named += (hold.debit_account, hold.credit_account)
                self.holds[pending_id] = holds.get(pending_id)
            if type(debit) is str:
                named.append(debit)
            if type(credit) is str:
                named.append(credit)
        self.balances = [(b, b.as_tuple()) for b in (accounts[a].balance for a in set(named))]
        self.cache = cache

    def __call__(self, outcome: BatchOutcome) -> None:
        """Put the cache back as it was before `outcome` was applied to it."""
        for balance, (dp, dpo, cp, cpo) in self.balances:
            balance.debits_pending, balance.debits_posted = dp, dpo
            balance.credits_pending, balance.credits_posted = cp, cpo
        transfers, holds = self.cache.transfers, self.cache.holds
        for transfer in outcome.created:
            transfers.pop(transfer.id, None)
            holds.pop(transfer.id, None)
        for pending_id, state in self.holds.items():
            if state is None:
                holds.pop(pending_id, None)
            else:
                holds[pending_id] = state


def _send(cur: Cursor, cache: WriterCache, outcome: BatchOutcome, head: Head, ts_ms: int, keys: str) -> int:
    """BEGIN, the head's lock, the guarded writes of `outcome` and COMMIT in one round trip: 1 when
    the guard held (written), else 0 (nothing written)."""
    parts = [GUARD_PG]
    params: list[Any] = [head.version, head.next_seq, ts_ms, keys, keys]
    try:
        if outcome.failures:
            parts.append(f"failures AS ({INSERT_FAILURES_PG_IF_OK} RETURNING 1)")
            rows = [(f.id, f.status.value, f.field, ts_ms) for f in outcome.failures]
            params.append(orjson.dumps(rows))
        if outcome.touched:
            parts.append(f"balances AS ({UPDATE_BALANCES_PG_IF_OK} RETURNING 1)")
            params.append(balance_rows(cache, outcome.touched))
        created = outcome.created
        if created:
            parts.append(f"head AS ({ADVANCE_HEAD_IF_OK} RETURNING 1)")
            parts.append(f"transfers AS ({INSERT_TRANSFERS_PG_IF_OK} RETURNING 1)")
            params += [head.next_seq + len(created), ts_ms, transfer_rows(created)]
    except orjson.JSONEncodeError as exc:  # an id JSON cannot carry: the reading way writes it
        raise StaleRead(f"cannot send the batch in one statement: {exc}") from exc
    statements = [
        Statement(LOCK_HEAD_PG),
        Statement(f"WITH {', '.join(parts)} SELECT count(*) FROM ok", params),  # noqa: S608 - constants
    ]
    _, [(held,)] = cur.pipeline(statements, begin=True, commit=True)
    return int(held)
