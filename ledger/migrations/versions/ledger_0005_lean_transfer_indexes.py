"""ledger: two fewer index entries for every transfer written.

The index on `ledger_transfers.ts_ms` goes: the log's times never go back (every writer stamps
max(now, the head's last time) under the head's lock), so a time is found by a binary search over
sequence numbers (`ledger.store.reads.seq_at_time`), and time windows are sequence ranges. On
PostgreSQL the hold's resolve-once constraint on `pending_id` becomes a unique index of the rows
that name a hold (`WHERE pending_id IS NOT NULL`): the same rule (NULLs never conflict), without an
entry for each of the transfers that resolve nothing. SQLite keeps its constraint (it is part of
the table's definition there; changing it rebuilds the table).

Revision ID: ledger_0005
Revises: ledger_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "ledger_0005"
down_revision = "ledger_0004"
branch_labels = None
depends_on = None

PENDING_ONCE = "uq_ledger_transfers_pending_once"


def upgrade() -> None:
    """Drop the time index; on PostgreSQL make the resolve-once constraint a partial unique index."""
    op.drop_index("ix_ledger_transfers_ts_ms", table_name="ledger_transfers")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(PENDING_ONCE, "ledger_transfers", type_="unique")
        op.create_index(
            PENDING_ONCE,
            "ledger_transfers",
            ["pending_id"],
            unique=True,
            postgresql_where=sa.text("pending_id IS NOT NULL"),
        )


def downgrade() -> None:
    """Put back the time index and the resolve-once constraint."""
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(PENDING_ONCE, table_name="ledger_transfers")
        op.create_unique_constraint(PENDING_ONCE, "ledger_transfers", ["pending_id"])
    op.create_index("ix_ledger_transfers_ts_ms", "ledger_transfers", ["ts_ms"])
