"""federation: state shared by replicas — seen request nonces and claims on trades in progress.

Revision ID: federation_0002
Revises: federation_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "federation_0002"
down_revision = "federation_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The primary key is what decides "seen": two replicas inserting one nonce cannot both win.
    op.create_table(
        "fed_seen_nonces",
        sa.Column("kid", sa.String(40), primary_key=True),
        sa.Column("nonce", sa.String(128), primary_key=True),
        sa.Column("expires_ts", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_fed_seen_nonces_expires_ts", "fed_seen_nonces", ["expires_ts"])
    op.create_table(
        "fed_trade_claims",
        sa.Column("partner", sa.String(63), primary_key=True),
        sa.Column("trade_id", sa.String(100), primary_key=True),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("claimed_ts", sa.BigInteger, nullable=False),
        sa.Column("expires_ts", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_fed_trade_claims_expires_ts", "fed_trade_claims", ["expires_ts"])


def downgrade() -> None:
    op.drop_index("ix_fed_trade_claims_expires_ts", "fed_trade_claims")
    op.drop_table("fed_trade_claims")
    op.drop_index("ix_fed_seen_nonces_expires_ts", "fed_seen_nonces")
    op.drop_table("fed_seen_nonces")
