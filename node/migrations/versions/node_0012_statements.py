"""node: billing statements — one row per issued statement (numbered per account without gaps, one
per account and period), holding the signed document; append-only (triggers refuse UPDATE and DELETE).

Revision ID: node_0012
Revises: node_0011
"""

import sqlalchemy as sa
from alembic import op

revision = "node_0012"
down_revision = "node_0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "statements",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("account", sa.String(128), nullable=False),
        sa.Column("number", sa.BigInteger, nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(16), nullable=False),
        sa.Column("first_seq", sa.BigInteger, nullable=False),
        sa.Column("end_seq", sa.BigInteger, nullable=False),
        sa.Column("opening_balance", sa.BigInteger, nullable=False),
        sa.Column("closing_balance", sa.BigInteger, nullable=False),
        sa.Column("lines", sa.BigInteger, nullable=False),
        sa.Column("issued_ms", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("document", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("account", "number", name="uq_statements_number"),
        sa.UniqueConstraint("account", "period", name="uq_statements_period"),
    )
    op.create_index("statements_period", "statements", ["period", "account"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE OR REPLACE FUNCTION statements_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'statements are never changed once issued: % refused', TG_OP
                    USING ERRCODE = 'restrict_violation';
            END
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER statements_append_only BEFORE UPDATE OR DELETE ON statements "
            "FOR EACH ROW EXECUTE FUNCTION statements_refuse_change()"
        )
        op.execute(
            "CREATE TRIGGER statements_no_truncate BEFORE TRUNCATE ON statements "
            "FOR EACH STATEMENT EXECUTE FUNCTION statements_refuse_change()"
        )
        return
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER statements_no_{action.lower()} BEFORE {action} ON statements "
            f"BEGIN SELECT RAISE(ABORT, 'statements are never changed once issued: {action} refused'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS statements_append_only ON statements")
        op.execute("DROP TRIGGER IF EXISTS statements_no_truncate ON statements")
        op.execute("DROP FUNCTION IF EXISTS statements_refuse_change()")
    op.drop_table("statements")
