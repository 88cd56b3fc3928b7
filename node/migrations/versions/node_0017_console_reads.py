"""node: what the console's pages read often —
- pools' utilisation over time: one row per pool per sample (units in use and in all, in the pool's
  capacity unit), taken by the scheduler's `telemetry.pool_samples` job and kept for
  `[metrics] pool_samples_keep_h`; times in UTC seconds;
- covering indexes for the day's trading summary (`GET /api/v1/trading/summary`, on the overview
  every few seconds): the sums are read from the index alone, not from each order's row.

Revision ID: node_0017
Revises: node_0016
"""

import sqlalchemy as sa
from alembic import op

revision = "node_0017"
down_revision = "node_0016"
branch_labels = None
depends_on = None
SUMMED = ("created_ts", "currency", "amount", "settled_amount", "fee")


def upgrade() -> None:
    op.create_table(
        "telemetry_pool_samples",
        sa.Column("pool", sa.String(128), primary_key=True),
        sa.Column("ts", sa.BigInteger, primary_key=True),
        sa.Column("used", sa.BigInteger, nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("unit", sa.String(32), nullable=False),
    )
    op.create_index("telemetry_pool_samples_ts", "telemetry_pool_samples", ["ts"])
    for table in ("trading_orders", "trading_sales"):
        op.create_index(f"{table}_day_sums", table, [*SUMMED])


def downgrade() -> None:
    for table in ("trading_orders", "trading_sales"):
        op.drop_index(f"{table}_day_sums", table_name=table)
    op.drop_index("telemetry_pool_samples_ts", table_name="telemetry_pool_samples")
    op.drop_table("telemetry_pool_samples")
