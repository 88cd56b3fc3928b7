"""node: services' shared health — one row per replica with the latest health observation any API
process made of it (a health round's check, or a failed connection through the proxy): healthy or
not, why not, its endpoint and site, when (UTC ms) and by which process. Every process's health
round reads it, so all of them share one view and a process started anew knows dead replicas at once.

Revision ID: node_0018
Revises: node_0017
"""

import sqlalchemy as sa
from alembic import op

revision = "node_0018"
down_revision = "node_0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_health",
        sa.Column("replica", sa.String(100), primary_key=True),
        sa.Column("service", sa.String(63), nullable=False),
        sa.Column("healthy", sa.Boolean, nullable=False),
        sa.Column("problem", sa.Text, nullable=True),
        sa.Column("endpoint", sa.String(300), nullable=True),
        sa.Column("site", sa.String(200), nullable=True),
        sa.Column("observed_ms", sa.BigInteger, nullable=False),
        sa.Column("observer", sa.String(100), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("service_health")
