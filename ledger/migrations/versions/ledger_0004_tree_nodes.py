"""ledger: stored hashes of the Merkle tree's perfect subtrees of 256 leaves and more.

Inclusion and consistency proofs and audit exports used to recompute every leaf hash of the log;
with these rows they read O(log n) subtree hashes and at most one tile of 256 transfers. The table
starts empty: the next checkpoint fills it from the transfers (once, in one pass), and until then
proofs recompute what is missing. Append-only like the log it is derived from.

Revision ID: ledger_0004
Revises: ledger_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "ledger_0004"
down_revision = "ledger_0003"
branch_labels = None
depends_on = None

TABLE = "ledger_tree_nodes"


def upgrade() -> None:
    """Create the table and refuse UPDATE and DELETE on it (the function is ledger_0001's)."""
    op.create_table(
        TABLE,
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
        )
        return
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {TABLE}_no_{action.lower()} BEFORE {action} ON {TABLE} "
            f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: {action} refused'); END"
        )


def downgrade() -> None:
    """Drop the table (its triggers go with it)."""
    op.drop_table(TABLE)
