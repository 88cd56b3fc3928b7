"""connectors: compute gateways — registration codes used once, and each gateway's standing token.

A registration code (signed by the node, naming a pool and an expiry) may register a gateway once:
its id is inserted here when it is used, and a second use collides on the primary key. The gateway
then holds a token of its own (stored as its SHA-256) to register again after a restart.

Revision ID: connectors_0003
Revises: connectors_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "connectors_0003"
down_revision = "connectors_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connector_gateway_codes",
        sa.Column("code_id", sa.String(64), primary_key=True),
        sa.Column("pool", sa.String(63), nullable=False),
        sa.Column("used_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "connector_gateways",
        sa.Column("pool", sa.String(63), primary_key=True),
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("registered_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("connector_gateways")
    op.drop_table("connector_gateway_codes")
