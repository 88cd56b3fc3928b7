"""Reading one period of the log for statements: its seq range, the opening balances, and the
statement lines of the given accounts, built in one pass over the period's transfers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger.records import AccountKind, AccountSpec, Balance
from ledger.statement import POSTING_KINDS, Line, LineBuilder
from ledger.store.reads import balances_at, seq_at_time
from ledger.store.schema import transfers

_CHUNK = 5_000
# Only what a line needs, of only the transfers that move posted money, in seq order: the rows a
# month's statements read, without building every transfer record.
_POSTED = (
    sa.select(
        transfers.c.seq,
        transfers.c.id,
        transfers.c.ts_ms,
        transfers.c.debit_account,
        transfers.c.credit_account,
        transfers.c.amount,
        transfers.c.code,
        transfers.c.order_id,
        transfers.c.trade_id,
    )
    .where(
        transfers.c.seq >= sa.bindparam("first"),
        transfers.c.seq < sa.bindparam("end"),
        transfers.c.kind.in_([str(kind) for kind in sorted(POSTING_KINDS)]),
        transfers.c.amount > 0,
    )
    .order_by(transfers.c.seq)
)


@dataclass(frozen=True, slots=True)
class PeriodLines:
    """A period's seq range [first_seq, end_seq), and per account its opening posted balance and lines."""

    first_seq: int
    end_seq: int
    opening: Mapping[str, int]
    held: Mapping[str, int]  # pending debits at the period's end: money open holds keep
    lines: Mapping[str, list[Line]]


def _posted(balance: Balance | None) -> int:
    return 0 if balance is None else balance.credits_posted - balance.debits_posted


def period_lines(
    engine: Engine,
    holders: Mapping[str, AccountSpec],
    kinds: Mapping[str, AccountKind],
    from_ms: int,
    to_ms: int,
) -> PeriodLines:
    """The statement lines of every account in `holders` for the transfers stamped in [from_ms, to_ms)
    (`kinds`: every account's kind, to classify the other side of each line)."""
    with engine.connect() as conn:
        first = seq_at_time(conn, from_ms)
        end = max(first, seq_at_time(conn, to_ms))
        balances = balances_at(conn, first)
        closing = balances_at(conn, end)
        builder = LineBuilder(holders, kinds)
        result = conn.execute(_POSTED, {"first": first, "end": end})
        for chunk in result.partitions(_CHUNK):
            for row in chunk:
                builder.add_posted(row)
    return PeriodLines(
        first_seq=first,
        end_seq=end,
        opening={account_id: _posted(balances.get(account_id)) for account_id in holders},
        held={account_id: closing.get(account_id, Balance()).debits_pending for account_id in holders},
        lines=builder.lines,
    )
