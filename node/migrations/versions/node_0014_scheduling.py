"""node: scheduling — the merged network view (one row, refreshed by the scheduler), strategies by
name and version with their parameters, A/B splits of a strategy's versions, and which strategy
chose each order (with the latency to the users it expected); times in UTC.

Revision ID: node_0014
Revises: node_0013
"""

import sqlalchemy as sa
from alembic import op

revision = "node_0014"
down_revision = "node_0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "network_views",
        sa.Column("id", sa.String(20), primary_key=True),
        sa.Column("view", sa.Text, nullable=False),
        sa.Column("refreshed_ts", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "strategies",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("retired_ts", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "strategy_splits",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("split", sa.Text, nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "strategy_orders",
        sa.Column("order_id", sa.String(100), primary_key=True),
        sa.Column("consumer", sa.String(63), nullable=False),
        sa.Column("strategy", sa.String(63), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("site", sa.String(100), nullable=True),
        sa.Column("latency_us", sa.BigInteger, nullable=True),
        sa.Column("chosen_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("strategy_orders_by_strategy", "strategy_orders", ["strategy", "version"])


def downgrade() -> None:
    op.drop_index("strategy_orders_by_strategy", table_name="strategy_orders")
    for table in ("strategy_orders", "strategy_splits", "strategies", "network_views"):
        op.drop_table(table)
