"""node: consumers' API tokens — the SHA-256 of each secret, never the secret; times in UTC ms.

Revision ID: node_0003
Revises: node_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "node_0003"
down_revision = "node_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trading_consumer_tokens",
        sa.Column("token_id", sa.String(16), primary_key=True),
        sa.Column("consumer", sa.String(63), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("revoked_ts", sa.BigInteger, nullable=True),
    )
    op.create_index("trading_consumer_tokens_consumer", "trading_consumer_tokens", ["consumer", "created_ts"])


def downgrade() -> None:
    op.drop_table("trading_consumer_tokens")
