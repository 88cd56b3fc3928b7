"""The write path: a batch of transfer requests becomes one database transaction.

Per batch: lock the head row (dense sequence numbers and monotonic time), load what the batch
touches with a few IN queries (its ids, the holds it resolves, its accounts in id order, locked),
run the pure rules, then write new transfers, remembered failures, account balances and open holds
with executemany, and advance the head. The expiry sweeper goes through the same path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ledger.errors import RequestError
from ledger.holds import STATE_AFTER, HoldState
from ledger.records import Status, Transfer, TransferKind, TransferRequest, TransferResult
from ledger.rules import AccountState, BatchOutcome, LedgerView, apply_batch, expire_holds
from ledger.store.db import (
    account_from_row,
    now_ms,
    select_accounts,
    select_in,
    select_transfers,
    transfer_from_row,
    transfer_to_row,
    with_retries,
    write_transaction,
)
from ledger.store.schema import accounts, failures, head, open_holds, transfers

MAX_BATCH = 10_000

_update_balance = (
    sa.update(accounts)
    .where(accounts.c.id == sa.bindparam("account_id"))
    .values(
        debits_pending=sa.bindparam("dp"),
        debits_posted=sa.bindparam("dpo"),
        credits_pending=sa.bindparam("cp"),
        credits_posted=sa.bindparam("cpo"),
    )
)


def lock_head(conn: Connection) -> tuple[int, int]:
    """Lock the head row; return (next sequence number, last transfer time in ms)."""
    row = conn.execute(
        sa.select(head.c.next_seq, head.c.last_ts_ms).where(head.c.id == 1).with_for_update()
    ).one()
    return int(row.next_seq), int(row.last_ts_ms)


def _hold_states(conn: Connection, holds: Sequence[Transfer]) -> dict[str, HoldState]:
    ids = [hold.id for hold in holds]
    if not ids:
        return {}
    still_open = {
        row.pending_id
        for row in select_in(
            conn,
            lambda part: sa.select(open_holds.c.pending_id).where(open_holds.c.pending_id.in_(part)),
            ids,
        )
    }
    states = {pending_id: HoldState.PENDING for pending_id in still_open}
    closed = [pending_id for pending_id in ids if pending_id not in still_open]
    for row in select_in(
        conn,
        lambda part: sa.select(transfers.c.pending_id, transfers.c.kind).where(
            transfers.c.pending_id.in_(part)
        ),
        closed,
    ):
        states[row.pending_id] = STATE_AFTER[TransferKind(row.kind)]
    return states


def _load_accounts(conn: Connection, view: LedgerView, ids: set[str]) -> None:
    lock = conn.dialect.name == "postgresql"
    for row in select_in(conn, lambda part: select_accounts(part, for_update=lock), ids):
        account = account_from_row(row)
        view.accounts[account.id] = AccountState(account.spec, account.balance, account.closed_seq)


def load_view(conn: Connection, requests: Sequence[TransferRequest]) -> LedgerView:
    """Read (and on PostgreSQL lock) everything `requests` can touch."""
    view = LedgerView()
    ids = {r.id for r in requests if isinstance(r.id, str)}
    pending_ids = {
        r.pending_id
        for r in requests
        if r.kind in (TransferKind.POST, TransferKind.VOID) and isinstance(r.pending_id, str)
    }
    for row in select_in(conn, select_transfers, ids | pending_ids):
        transfer = transfer_from_row(row)
        view.transfers[transfer.id] = transfer
    for row in select_in(
        conn, lambda part: sa.select(failures.c.id, failures.c.status).where(failures.c.id.in_(part)), ids
    ):
        view.failed[row.id] = Status(row.status)
    holds = [t for t in view.transfers.values() if t.id in pending_ids and t.kind is TransferKind.PENDING]
    view.holds.update(_hold_states(conn, holds))
    account_ids = {a for r in requests for a in (r.debit_account, r.credit_account) if isinstance(a, str)}
    account_ids.update(a for hold in holds for a in (hold.debit_account, hold.credit_account))
    _load_accounts(conn, view, account_ids)
    return view


def persist(conn: Connection, view: LedgerView, outcome: BatchOutcome, next_seq: int, ts_ms: int) -> None:
    """Write a batch's outcome: transfers, failures, balances, open holds, and the new head."""
    if outcome.created:
        conn.execute(sa.insert(transfers), [transfer_to_row(t) for t in outcome.created])
    if outcome.failures:
        conn.execute(
            sa.insert(failures),
            [
                {"id": f.id, "status": str(f.status), "field": f.field, "ts_ms": ts_ms}
                for f in outcome.failures
            ],
        )
    if outcome.touched:
        params: list[dict[str, Any]] = []
        for account_id in sorted(outcome.touched):
            b = view.accounts[account_id].balance
            params.append(
                {
                    "account_id": account_id,
                    "dp": b.debits_pending,
                    "dpo": b.debits_posted,
                    "cp": b.credits_pending,
                    "cpo": b.credits_posted,
                }
            )
        conn.execute(_update_balance, params)
    resolved = set(outcome.resolved)
    opened = [t for t in outcome.created if t.kind is TransferKind.PENDING and t.id not in resolved]
    if opened:
        conn.execute(
            sa.insert(open_holds),
            [{"pending_id": t.id, "seq": t.seq, "expires_ms": t.expires_ms} for t in opened],
        )
    created_ids = {t.id for t in outcome.created}
    closed = sorted(pending_id for pending_id in resolved if pending_id not in created_ids)
    if closed:
        conn.execute(
            sa.delete(open_holds).where(open_holds.c.pending_id.in_(sa.bindparam("ids", expanding=True))),
            {"ids": closed},
        )
    if outcome.created:
        conn.execute(
            sa.update(head)
            .where(head.c.id == 1)
            .values(next_seq=next_seq + len(outcome.created), last_ts_ms=ts_ms)
        )


def submit(
    engine: Engine, requests: Sequence[TransferRequest], *, now: int | None = None
) -> list[TransferResult]:
    """Apply a batch of transfer requests in one transaction; one result per request, in order."""
    if len(requests) > MAX_BATCH:
        raise RequestError(f"a batch holds at most {MAX_BATCH} transfers, got {len(requests)}")
    if not requests:
        return []

    def attempt() -> list[TransferResult]:
        with write_transaction(engine) as conn:
            next_seq, last_ts = lock_head(conn)
            ts_ms = max(now_ms() if now is None else now, last_ts)
            view = load_view(conn, requests)
            outcome = apply_batch(view, requests, ts_ms, next_seq)
            persist(conn, view, outcome, next_seq, ts_ms)
            return outcome.results

    return with_retries(attempt, f"batch of {len(requests)} transfer(s)")


def expire_due(engine: Engine, *, now: int | None = None, limit: int = 1_000) -> list[Transfer]:
    """Expire up to `limit` holds whose deadline has come; return the expiry transfers written."""

    def attempt() -> list[Transfer]:
        with write_transaction(engine) as conn:
            next_seq, last_ts = lock_head(conn)
            ts_ms = max(now_ms() if now is None else now, last_ts)
            due = [
                row.pending_id
                for row in conn.execute(
                    sa.select(open_holds.c.pending_id)
                    .where(open_holds.c.expires_ms <= ts_ms)
                    .order_by(open_holds.c.expires_ms, open_holds.c.seq)
                    .limit(limit)
                )
            ]
            if not due:
                return []
            holds = sorted(
                (transfer_from_row(r) for r in select_in(conn, select_transfers, due)), key=lambda t: t.seq
            )
            view = LedgerView(holds={hold.id: HoldState.PENDING for hold in holds})
            _load_accounts(
                conn, view, {a for hold in holds for a in (hold.debit_account, hold.credit_account)}
            )
            outcome = expire_holds(view, holds, ts_ms, next_seq)
            persist(conn, view, outcome, next_seq, ts_ms)
            return outcome.created

    return with_retries(attempt, "expiry sweep")
