"""ledger: accounts, append-only transfers and failures, sequence head, checkpoints,
reconciliation discrepancies; triggers refusing UPDATE/DELETE of the append-only tables.

Revision ID: ledger_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "ledger_0001"
down_revision = None
branch_labels = ("ledger",)
depends_on = None

APPEND_ONLY = ("ledger_transfers", "ledger_failures", "ledger_checkpoints")
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _tables() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("currency", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("debits_must_not_exceed_credits", sa.Boolean, nullable=False),
        sa.Column("credits_must_not_exceed_debits", sa.Boolean, nullable=False),
        sa.Column("partner", sa.String(128), nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("closed_seq", sa.BigInteger, nullable=True),
        sa.Column("closed_ms", sa.BigInteger, nullable=True),
        sa.Column("debits_pending", sa.BigInteger, nullable=False),
        sa.Column("debits_posted", sa.BigInteger, nullable=False),
        sa.Column("credits_pending", sa.BigInteger, nullable=False),
        sa.Column("credits_posted", sa.BigInteger, nullable=False),
        sa.CheckConstraint(
            "debits_pending >= 0 AND debits_posted >= 0 AND credits_pending >= 0 AND credits_posted >= 0",
            name="ck_ledger_accounts_non_negative",
        ),
    )
    op.create_table(
        "ledger_transfers",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=False),
        sa.Column("id", sa.String(160), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("debit_account", sa.String(128), nullable=False),
        sa.Column("credit_account", sa.String(128), nullable=False),
        sa.Column("currency", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("pending_id", sa.String(160), nullable=True),
        sa.Column("pending_amount", sa.BigInteger, nullable=True),
        sa.Column("timeout_s", sa.BigInteger, nullable=True),
        sa.Column("expires_ms", sa.BigInteger, nullable=True),
        sa.Column("code", sa.Integer, nullable=False),
        sa.Column("linked", sa.Boolean, nullable=False),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
        sa.Column("order_id", sa.String(128), nullable=True),
        sa.Column("trade_id", sa.String(128), nullable=True),
        sa.Column("partner", sa.String(128), nullable=True),
        sa.Column("trade_digest", sa.String(128), nullable=True),
        sa.UniqueConstraint("id", name="uq_ledger_transfers_id"),
        # A hold resolves once: at most one post, void or expire names it.
        sa.UniqueConstraint("pending_id", name="uq_ledger_transfers_pending_once"),
    )
    op.create_index("ix_ledger_transfers_ts_ms", "ledger_transfers", ["ts_ms"])
    op.create_index(
        "ix_ledger_transfers_trade_id",
        "ledger_transfers",
        ["trade_id"],
        sqlite_where=sa.text("trade_id IS NOT NULL"),
        postgresql_where=sa.text("trade_id IS NOT NULL"),
    )
    op.create_table(
        "ledger_failures",
        sa.Column("id", sa.String(160), primary_key=True),
        sa.Column("status", sa.String(48), nullable=False),
        sa.Column("field", sa.String(32), nullable=True),
        sa.Column("ts_ms", sa.BigInteger, nullable=False),
    )
    # The expiry sweeper's scan: holds with a deadline, in deadline order.
    op.create_index(
        "ix_ledger_transfers_hold_deadline",
        "ledger_transfers",
        ["expires_ms"],
        sqlite_where=sa.text("kind = 'pending' AND expires_ms IS NOT NULL"),
        postgresql_where=sa.text("kind = 'pending' AND expires_ms IS NOT NULL"),
    )
    head = op.create_table(
        "ledger_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("next_seq", sa.BigInteger, nullable=False),
        sa.Column("last_ts_ms", sa.BigInteger, nullable=False),
        # Every hold with a deadline at or before this has been resolved (the sweeper's watermark).
        sa.Column("swept_ms", sa.BigInteger, nullable=False),
        # Bumped by every write that changes balances or account state (writers' account cache).
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "next_seq": 0, "last_ts_ms": 0, "swept_ms": 0, "version": 0}])
    op.create_table(
        "ledger_checkpoints",
        sa.Column("size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("time_ms", sa.BigInteger, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("frontier", sa.Text, nullable=False),
    )
    op.create_table(
        "ledger_discrepancies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("partner", sa.String(128), nullable=False),
        sa.Column("window_from_ms", sa.BigInteger, nullable=False),
        sa.Column("window_to_ms", sa.BigInteger, nullable=False),
        sa.Column("trade_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("ours", sa.Text, nullable=True),
        sa.Column("theirs", sa.Text, nullable=True),
        sa.Column("found_ms", sa.BigInteger, nullable=False),
        sa.Column("correction_id", sa.String(160), nullable=True),
        sa.UniqueConstraint(
            "partner",
            "window_from_ms",
            "window_to_ms",
            "trade_id",
            "kind",
            name="uq_ledger_discrepancies_once",
        ),
    )
    op.create_table(
        "ledger_reconciliations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("partner", sa.String(128), nullable=False),
        sa.Column("window_from_ms", sa.BigInteger, nullable=False),
        sa.Column("window_to_ms", sa.BigInteger, nullable=False),
        sa.Column("ran_ms", sa.BigInteger, nullable=False),
        sa.Column("our_trades", sa.Integer, nullable=False),
        sa.Column("their_trades", sa.Integer, nullable=False),
        sa.Column("discrepancies", sa.Integer, nullable=False),
        sa.Column("our_summary_sha256", sa.String(64), nullable=False),
        sa.Column("their_summary_sha256", sa.String(64), nullable=False),
    )


def _append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                    USING ERRCODE = 'restrict_violation';
            END
            $$
            """
        )
        for table in APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
            )
        return
    for table in APPEND_ONLY:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {action} refused'); END"
            )


def upgrade() -> None:
    """Create the ledger's tables, indexes and append-only triggers."""
    _tables()
    _append_only_triggers()


def downgrade() -> None:
    """Drop them again."""
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS ledger_refuse_change()")
    for table in (
        "ledger_reconciliations",
        "ledger_discrepancies",
        "ledger_checkpoints",
        "ledger_head",
        "ledger_failures",
        "ledger_transfers",
        "ledger_accounts",
    ):
        op.drop_table(table)
