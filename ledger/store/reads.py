"""Reading the log: one transfer, ranges in sequence order, balances and open holds at a sequence."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ledger.records import Balance, Status, Transfer, TransferKind
from ledger.store.db import transfer_from_row
from ledger.store.schema import accounts, balances, failures, head, transfers

STREAM_CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class Head:
    """How far the log goes: the next sequence number (= its size) and the last transfer's time."""

    size: int
    last_ts_ms: int


def read_head(conn: Connection) -> Head:
    """The log's size and last time, as seen by this connection's transaction."""
    row = conn.execute(sa.select(head.c.next_seq, head.c.last_ts_ms).where(head.c.id == 1)).one()
    return Head(int(row.next_seq), int(row.last_ts_ms))


def get_transfer(engine: Engine, transfer_id: str) -> Transfer | None:
    """The stored transfer with this id, or None."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(transfers).where(transfers.c.id == transfer_id)).first()
    return None if row is None else transfer_from_row(row)


def get_failure(engine: Engine, transfer_id: str) -> tuple[Status, str | None] | None:
    """The remembered failure (status, field) of an id that failed, or None."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(failures.c.status, failures.c.field).where(failures.c.id == transfer_id)
        ).first()
    return None if row is None else (Status(row.status), row.field)


def iter_transfers(conn: Connection, begin: int, end: int) -> Iterator[Transfer]:
    """Transfers with begin ≤ seq < end in sequence order, read in chunks."""
    cursor = begin
    while cursor < end:
        upper = min(end, cursor + STREAM_CHUNK)
        rows = conn.execute(
            sa.select(transfers)
            .where(transfers.c.seq >= cursor, transfers.c.seq < upper)
            .order_by(transfers.c.seq)
        ).all()
        for row in rows:
            yield transfer_from_row(row)
        cursor = upper


# Binary search over the log by sequence number, in one statement: the log's times never go back
# (every writer stamps max(now, the head's last time) under the head's lock; `ledger verify` checks
# it) and its sequence numbers are dense from 0, so O(log n) lookups by key find where a time starts,
# without an index on time (which every transfer written would have to update).
_MID = "(s.lo + s.hi) / 2"
_AT_OR_AFTER = f"(SELECT t.ts_ms FROM ledger_transfers AS t WHERE t.seq = {_MID}) >= :ts"  # noqa: S608
_SEQ_AT_TIME = sa.text(
    "WITH RECURSIVE s(lo, hi) AS ("  # noqa: S608 - constants
    "SELECT CAST(0 AS BIGINT), next_seq FROM ledger_head WHERE id = 1 UNION ALL "
    f"SELECT CASE WHEN {_AT_OR_AFTER} THEN s.lo ELSE {_MID} + 1 END, "
    f"CASE WHEN {_AT_OR_AFTER} THEN {_MID} ELSE s.hi END FROM s WHERE s.lo < s.hi"
    ") SELECT min(hi) FROM s"
)


def seq_at_time(conn: Connection, ts_ms: int) -> int:
    """The first sequence number whose transfer is at or after `ts_ms` (the log size if none is)."""
    return int(conn.execute(_SEQ_AT_TIME, {"ts": ts_ms}).scalar_one())


def _side_sums(seq: int, before: bool) -> list[sa.Subquery]:
    """Per account, what the transfers before `seq` (or from `seq` on) add to its debit and credit
    totals: (account, pending, posted) for each side."""
    pending = sa.case((transfers.c.kind == TransferKind.PENDING.value, transfers.c.amount), else_=0)
    posted = sa.case((transfers.c.kind == TransferKind.PENDING.value, 0), else_=transfers.c.amount)
    released = sa.func.coalesce(transfers.c.pending_amount, 0)
    where = transfers.c.seq < seq if before else transfers.c.seq >= seq
    sums = []
    for column in (transfers.c.debit_account, transfers.c.credit_account):
        sums.append(
            sa.select(
                column.label("account"),
                sa.func.sum(pending - released).label("pending"),
                sa.func.sum(posted).label("posted"),
            )
            .where(where)
            .group_by(column)
            .subquery()
        )
    return sums


def balances_at(conn: Connection, seq: int) -> dict[str, Balance]:
    """Every account's balance after the transfers with seq < `seq` (accounts whose four totals are
    all zero left out), summed in SQL over the shorter side of the log: the transfers before `seq`,
    or the current balances less the transfers from `seq` on, in one statement (so one snapshot)."""
    result: dict[str, Balance] = {}
    if seq <= read_head(conn).size - seq:
        debit, credit = _side_sums(seq, before=True)
        for side, sums in (("debit", debit), ("credit", credit)):
            for account, pending, posted in conn.execute(sa.select(sums)):
                balance = result.setdefault(account, Balance())
                if side == "debit":
                    balance.debits_pending, balance.debits_posted = int(pending), int(posted)
                else:
                    balance.credits_pending, balance.credits_posted = int(pending), int(posted)
    else:
        debit, credit = _side_sums(seq, before=False)
        zero = sa.literal(0)
        query = (
            sa.select(
                accounts.c.id,
                balances.c.debits_pending - sa.func.coalesce(debit.c.pending, zero),
                balances.c.debits_posted - sa.func.coalesce(debit.c.posted, zero),
                balances.c.credits_pending - sa.func.coalesce(credit.c.pending, zero),
                balances.c.credits_posted - sa.func.coalesce(credit.c.posted, zero),
            )
            .join(balances, balances.c.num == accounts.c.num)
            .outerjoin(debit, debit.c.account == accounts.c.id)
            .outerjoin(credit, credit.c.account == accounts.c.id)
        )
        for account, *totals in conn.execute(query):
            result[account] = Balance(*(int(t) for t in totals))
    return {account: b for account, b in result.items() if any(b.as_tuple())}


def open_holds_at(conn: Connection, seq: int) -> list[Transfer]:
    """Holds created before `seq` and not resolved by a transfer before `seq`, in sequence order."""
    resolver = transfers.alias("resolver")
    query = (
        sa.select(transfers)
        .where(
            transfers.c.kind == TransferKind.PENDING.value,
            transfers.c.seq < seq,
            ~sa.exists().where(resolver.c.pending_id == transfers.c.id, resolver.c.seq < seq),
        )
        .order_by(transfers.c.seq)
    )
    return [transfer_from_row(row) for row in conn.execute(query)]


def log_size(engine: Engine) -> int:
    """How many transfers the log holds (the next sequence number)."""
    with engine.connect() as conn:
        return read_head(conn).size
