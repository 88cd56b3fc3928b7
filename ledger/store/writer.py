"""The write path: a batch of transfer requests becomes one database transaction.

Per batch: lock the head row (dense sequence numbers, monotonic time), load what the batch touches
with a few key-set queries (its ids, the holds it resolves, its accounts, which PostgreSQL locks in
id order), run the pure rules, then write new transfers, remembered failures and account balances
with executemany, and advance the head (PostgreSQL: transfers, balances and head in one statement,
the rows as one JSONB parameter; ledger/store/statements.py). The expiry sweeper goes through the
same path, and so does group commit (`submit_batches`: several callers' batches in one transaction,
each applied as if on its own).

What the rules need and an earlier batch of this engine already read comes from the writer cache
(ledger/store/cache.py), trusted only while the head's version is the one it was left at.

Round trips on PostgreSQL (libpq's pipeline mode, `Cursor.pipeline`, ledger/store/pgwire.py): BEGIN, the head's lock and
the lookup of the batch's ids go together, and the writes with the COMMIT (two). When the cache
knows the head its last commit left and holds everything the batch names, the batch is applied
first and sent in one round trip, its writes guarded by that head (ledger/store/speculative.py).
The head row: ledger/store/head.py; several callers' batches as one: ledger/store/runs.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy.engine import Connection, Engine

from ledger.errors import RequestError
from ledger.holds import STATE_AFTER, HoldState
from ledger.records import (
    AccountKind,
    AccountSpec,
    Balance,
    Status,
    Transfer,
    TransferKind,
    TransferRequest,
    TransferResult,
)
from ledger.rules import expire_holds
from ledger.store.cache import WriterCache, keep, put_back, specs_of, take, take_any
from ledger.store.db import (
    Cursor,
    StaleRead,
    Statement,
    batch_transaction,
    gc_paused,
    now_ms,
    with_retries,
    write_transaction,
)
from ledger.store.head import Head, begin_pg, lock_head
from ledger.store.rows import balance_rows, transfer_rows
from ledger.store.runs import apply_runs, chain_free_runs, combined_of, request_ids
from ledger.store.schema import TRANSFER_COLUMNS
from ledger.store.speculative import can_speculate, speculate
from ledger.store.statements import (
    ADVANCE_HEAD,
    INSERT_TRANSFER,
    INSERT_TRANSFERS_PG,
    SELECT_ACCOUNTS,
    SELECT_ACCOUNTS_PG,
    SELECT_BALANCES,
    SELECT_DUE_HOLDS,
    SELECT_KNOWN_IDS,
    SELECT_KNOWN_IDS_PG,
    SELECT_TRANSFERS,
    UPDATE_BALANCES,
    UPDATE_BALANCES_PG,
)
from ledger.view import AccountState, BatchOutcome, LedgerView

MAX_BATCH = 10_000
_PENDING = TransferKind.PENDING
_KIND_VALUE = {kind: kind.value for kind in TransferKind}  # plain str binds on sqlite3's fast path
_ACCOUNT_KINDS = {kind.value: kind for kind in AccountKind}


def transfer_from_tuple(row: Sequence[Any]) -> Transfer:
    """A Transfer from a `SELECT <every transfer column>` row."""
    return Transfer._make((row[0], row[1], TransferKind(row[2]), *row[3:12], bool(row[12]), *row[13:18]))


def load_accounts(cur: Cursor, cache: WriterCache, ids: Iterable[str]) -> None:
    """Read the accounts among `ids` that the cache lacks into it (on PostgreSQL locking them in id order)."""
    specs = specs_of(cur.conn.engine)
    states, nums = cache.accounts, cache.nums
    wanted = set(ids).difference(states)
    if not wanted:
        return
    if cur.postgres:
        known: list[str] = []
        unknown = wanted
    else:  # SQLite: the file lock is held; read only balances of accounts whose spec is cached
        known = [account_id for account_id in wanted if account_id in specs]
        unknown = wanted.difference(known)
    for account_id, closed, dp, dpo, cp, cpo, num in cur.select_in(SELECT_BALANCES, known):
        states[account_id] = AccountState(specs[account_id], Balance(dp, dpo, cp, cpo), closed)
        nums[account_id] = num
    sql = SELECT_ACCOUNTS_PG if cur.postgres else SELECT_ACCOUNTS
    for row in cur.select_in(sql, unknown):
        account_id, currency, kind, limit_debits, limit_credits, partner, closed, dp, dpo, cp, cpo, num = row
        spec = specs.get(account_id)
        if spec is None:
            kind = _ACCOUNT_KINDS.get(kind) or AccountKind(kind)
            spec = specs[account_id] = AccountSpec(
                account_id, currency, kind, bool(limit_debits), bool(limit_credits), partner
            )
        states[account_id] = AccountState(spec, Balance(dp, dpo, cp, cpo), closed)
        nums[account_id] = num


def hold_states(cur: Cursor, pending_ids: Iterable[str]) -> dict[str, HoldState]:
    """The state of each stored hold: pending unless a transfer resolves it (the resolve-once index)."""
    ids = list(pending_ids)
    states = dict.fromkeys(ids, HoldState.PENDING)
    for pending_id, kind in cur.select_in(
        "SELECT pending_id, kind FROM ledger_transfers WHERE pending_id {in}", ids
    ):
        states[pending_id] = STATE_AFTER[TransferKind(kind)]
    return states


def load_view(
    cur: Cursor,
    requests: Sequence[TransferRequest],
    cache: WriterCache,
    known: Sequence[tuple[Any, ...]] | None = None,
) -> LedgerView:
    """Read (and on PostgreSQL lock) everything `requests` can touch that the cache (valid at this
    head version) does not hold already; the view shares the cache's dictionaries. `known`: the
    (id, failure status or None) rows of the requests' ids, when already read (`begin_pg`)."""
    transfers, holds = cache.transfers, cache.holds
    view = LedgerView(cache.accounts, transfers, {}, holds)
    # Built from JSON: any field may hold any type, so only strings are looked up.
    pending_ids = {p for r in requests if type(p := r.pending_id) is str}
    account_ids = {d for r in requests if type(d := r.debit_account) is str}
    account_ids.update(c for r in requests if type(c := r.credit_account) is str)
    stored = pending_ids.difference(transfers)
    if known is None:
        sql = SELECT_KNOWN_IDS_PG if cur.postgres else SELECT_KNOWN_IDS
        known = cur.with_keys(sql, request_ids(requests).difference(transfers))
    for known_id, status in known:
        if status is not None:
            view.failed[known_id] = Status(status)
        elif known_id not in transfers:
            stored.add(known_id)
    for row in cur.select_in(SELECT_TRANSFERS, stored):
        transfer = transfer_from_tuple(row)
        transfers[transfer.id] = transfer
        if transfer.kind is _PENDING:
            resolved_by = row[len(TRANSFER_COLUMNS)]
            holds[transfer.id] = (
                HoldState.PENDING if resolved_by is None else STATE_AFTER[TransferKind(resolved_by)]
            )
    for pending_id in pending_ids:  # a resolution touches its hold's accounts
        hold = transfers.get(pending_id)
        if hold is not None and hold.kind is _PENDING:
            account_ids.add(hold.debit_account)
            account_ids.add(hold.credit_account)
    load_accounts(cur, cache, account_ids)
    return view


INSERT_FAILURE = "INSERT INTO ledger_failures (id, status, field, ts_ms) VALUES (?, ?, ?, ?)"


def persist(
    cur: Cursor, cache: WriterCache, outcome: BatchOutcome, next_seq: int, ts_ms: int, *, commit: bool = False
) -> None:
    """Write a batch's outcome: transfers, failures, balances, and the new head; on PostgreSQL in one
    round trip, with the COMMIT when `commit` (in a `batch_transaction`)."""
    failures = [(f.id, f.status.value, f.field, ts_ms) for f in outcome.failures]
    if cur.postgres:
        statements = [Statement(INSERT_FAILURE, failures, many=True)] if failures else []
        statements += _persist_pg(cache, outcome, next_seq, ts_ms)
        if statements or commit:
            cur.pipeline(statements, commit=commit)
        return
    if failures:
        cur.executemany(INSERT_FAILURE, failures)
    created = outcome.created
    kinds = _KIND_VALUE
    if created:
        # Plain values bind on the driver's fast path (a StrEnum or a bool makes sqlite3 search for an
        # adapter on every row).
        cur.executemany(
            INSERT_TRANSFER,
            [
                (
                    sq,
                    id_,
                    kinds[kd],
                    dr,
                    cr,
                    cy,
                    am,
                    pi,
                    pa,
                    to,
                    ex,
                    co,
                    1 if ln else 0,
                    ts,
                    oi,
                    ti,
                    pt,
                    dg,
                )
                for (sq, id_, kd, dr, cr, cy, am, pi, pa, to, ex, co, ln, ts, oi, ti, pt, dg) in created
            ],
        )
    if outcome.touched:
        accounts, nums = cache.accounts, cache.nums
        balances = [
            (b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted, nums[account_id])
            for account_id in outcome.touched
            for b in (accounts[account_id].balance,)
        ]
        if cur.executemany(UPDATE_BALANCES, balances) != len(balances):
            raise StaleRead("a cached balance row was not found; reading accounts again")
    if created:
        cur.execute(ADVANCE_HEAD, (next_seq + len(created), ts_ms))


def _persist_pg(cache: WriterCache, outcome: BatchOutcome, next_seq: int, ts_ms: int) -> list[Statement]:
    """PostgreSQL: the new transfers, every balance (rows locked in id order) and the head in one
    statement (data-modifying CTEs); none when there is nothing to write."""
    parts: list[str] = []
    params: list[Any] = []
    if outcome.touched:
        parts.append(f"balances AS ({UPDATE_BALANCES_PG} RETURNING 1)")
        params.append(balance_rows(cache, outcome.touched))
    created = outcome.created
    if created:
        parts.append(f"head AS ({ADVANCE_HEAD} RETURNING 1)")
        params += [next_seq + len(created), ts_ms, transfer_rows(created)]
    if not parts:
        return []
    return [Statement(f"WITH {', '.join(parts)} {INSERT_TRANSFERS_PG if created else 'SELECT 1'}", params)]


def submit(
    engine: Engine, requests: Sequence[TransferRequest], *, now: int | None = None
) -> list[TransferResult]:
    """Apply a batch of transfer requests in one transaction; one result per request, in order."""
    return submit_batches(engine, [requests], now=now)[0]


def check_size(requests: Sequence[TransferRequest]) -> None:
    """Refuse a batch larger than one transaction may hold (RequestError)."""
    if len(requests) > MAX_BATCH:
        raise RequestError(f"a batch holds at most {MAX_BATCH} transfers, got {len(requests)}")


def submit_batches(
    engine: Engine,
    batches: Sequence[Sequence[TransferRequest]],
    *,
    now: int | None = None,
    held: Callable[[], Connection] | None = None,
) -> list[list[TransferResult]]:
    """Apply several batches in one transaction, each exactly as if submitted on its own, in order.

    Each batch gets its own results (indexes from 0) and its own linked chains (a chain open at
    the end of a batch fails there; it never joins the next batch's requests); a later batch sees
    what earlier ones created or refused. The transaction holds at most MAX_BATCH requests.
    `held`: PostgreSQL, gives the connection a long-lived writer keeps (`batch_transaction`)."""
    for batch in batches:
        check_size(batch)
    combined = combined_of(batches)
    check_size(combined)
    if not combined:
        return [[] for _ in batches]
    runs = chain_free_runs(batches)

    def attempt() -> list[list[TransferResult]]:
        with batch_transaction(engine, held() if held is not None else None) as conn:
            cur = Cursor(conn)
            # Taken out while in use (a failure leaves no cache behind): on PostgreSQL first, to see
            # whether it lets the batch go in one round trip; else after the head's lock, as the
            # cache of whoever held the lock before.
            cache = take_any(engine) if cur.postgres else None
            if cache is not None and can_speculate(cache, combined):
                try:
                    results, outcome, head, ts_ms = speculate(cur, cache, combined, runs, now)
                except StaleRead:
                    # Nothing written, the cache as the last commit left it: kept for the retry, which
                    # goes the reading way (the head read under its lock; the cache used only if the
                    # head's version is still its own) and reads only what the cache lacks.
                    cache.next_seq = None
                    put_back(engine, cache)
                    raise
            else:
                if cache is not None:
                    put_back(engine, cache)
                known = None
                if cur.postgres:  # BEGIN, the head and the ids in one round trip
                    head, known = begin_pg(cur, request_ids(combined))
                else:
                    head = lock_head(cur)
                cache = take(engine, head.version)
                ts_ms = max(now_ms() if now is None else now, head.last_ts_ms)
                view = load_view(cur, combined, cache, known)
                results, outcome = apply_runs(view, runs, ts_ms, head.next_seq)
                persist(cur, cache, outcome, head.next_seq, ts_ms, commit=True)
        keep_committed(engine, cache, head, outcome, ts_ms)
        return results

    with gc_paused():
        return with_retries(attempt, f"batch of {len(combined)} transfer(s)")


def keep_committed(engine: Engine, cache: WriterCache, head: Head, outcome: BatchOutcome, ts_ms: int) -> None:
    """After a batch's transaction committed: the cache holds version + 1 (or the same version if
    nothing was created) and the holds created, and is kept for the next writer."""
    created = outcome.created
    cache.version = head.version + (1 if created else 0)
    cache.next_seq = head.next_seq + len(created)
    cache.last_ts_ms = ts_ms if created else head.last_ts_ms
    transfers = cache.transfers
    for transfer in created:  # keep holds only: every object kept costs each GC pass
        if transfer.kind is not _PENDING:
            del transfers[transfer.id]
    keep(engine, cache)


def expire_due(engine: Engine, *, now: int | None = None, limit: int = 1_000) -> list[Transfer]:
    """Expire up to `limit` holds whose deadline has come; return the expiry transfers written.

    Holds are found by deadline above the sweep watermark; after a run every hold with a deadline
    up to the new watermark is resolved, and the head's time is moved up to it, so a hold created
    later always has its deadline above it."""

    def attempt() -> list[Transfer]:
        with write_transaction(engine) as conn:
            cur = Cursor(conn)
            head = lock_head(cur)
            ts_ms = max(now_ms() if now is None else now, head.last_ts_ms)
            rows = cur.execute(SELECT_DUE_HOLDS, (head.swept_ms, ts_ms, limit))
            holds = [transfer_from_tuple(row) for row in rows]
            last_deadline = holds[-1].expires_ms if holds else None
            watermark = (
                ts_ms
                if len(holds) < limit or last_deadline is None
                else max(head.swept_ms, last_deadline - 1)
            )
            cache = WriterCache(head.version)
            cache.holds.update((hold.id, HoldState.PENDING) for hold in holds)
            cache.transfers.update((hold.id, hold) for hold in holds)
            load_accounts(
                cur, cache, {a for hold in holds for a in (hold.debit_account, hold.credit_account)}
            )
            view = LedgerView(cache.accounts, cache.transfers, {}, cache.holds)
            outcome = expire_holds(view, holds, ts_ms, head.next_seq)
            persist(cur, cache, outcome, head.next_seq, ts_ms)
            cur.execute(
                "UPDATE ledger_head SET swept_ms = ?, last_ts_ms = ? WHERE id = 1",
                (watermark, max(ts_ms, watermark)),
            )
            return outcome.created

    with gc_paused():
        return with_retries(attempt, "expiry sweep")
