"""node: inference services — one row per service (its replicas' task spec, count, scale-out and
health settings) and one per replica (its task id and pinned weight); times in UTC ms.

Revision ID: node_0015
Revises: node_0014
"""

import sqlalchemy as sa
from alembic import op

revision = "node_0015"
down_revision = "node_0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("consumer", sa.String(63), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("replicas", sa.Integer, nullable=False),
        sa.Column("max_replicas", sa.Integer, nullable=False),
        sa.Column("scale_in_flight", sa.Float, nullable=False),
        sa.Column("scale_window_s", sa.Float, nullable=False),
        sa.Column("health_path", sa.String(200), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "service_replicas",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("service", sa.String(63), nullable=False),
        sa.Column("weight", sa.Integer, nullable=True),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("service_replicas_service", "service_replicas", ["service", "created_ms"])


def downgrade() -> None:
    op.drop_index("service_replicas_service", table_name="service_replicas")
    op.drop_table("service_replicas")
    op.drop_table("services")
