"""node: migrations to a partner's pool — the partner and the order (trade) on the source side, and
on the destination side the migrations partners bring here (their trade, instance, credential
window and state); times in UTC ms, credential windows in UTC epoch seconds.

Revision ID: node_0010
Revises: node_0009
"""

import sqlalchemy as sa
from alembic import op

revision = "node_0010"
down_revision = "node_0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("migrations", sa.Column("partner", sa.String(100), nullable=True))
    op.add_column("migrations", sa.Column("order_id", sa.String(100), nullable=True))
    op.create_table(
        "inbound_migrations",
        sa.Column("partner", sa.String(100), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("trade_id", sa.String(100), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("instance_id", sa.String(100), nullable=True),
        sa.Column("files", sa.Text, nullable=True),
        sa.Column("not_before", sa.BigInteger, nullable=True),
        sa.Column("expires", sa.BigInteger, nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("inbound_migrations_trade", "inbound_migrations", ["trade_id"], unique=True)


def downgrade() -> None:
    op.drop_table("inbound_migrations")
    op.drop_column("migrations", "order_id")
    op.drop_column("migrations", "partner")
