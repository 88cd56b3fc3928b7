"""node: scheduler leases, so each scheduled job runs on one replica at a time.

Revision ID: node_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "node_0001"
down_revision = None
branch_labels = ("node",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduler_leases",
        sa.Column("job_id", sa.String(200), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("acquired_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("scheduler_leases")
