"""node: indexes for listing the newest orders and sales and summing a day's trading (the
console's pages and `GET /api/v1/trading/summary` read them on every view).

Revision ID: node_0016
Revises: node_0015
"""

from alembic import op

revision = "node_0016"
down_revision = "node_0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("trading_orders_created", "trading_orders", ["created_ts", "id"])
    op.create_index("trading_sales_created", "trading_sales", ["created_ts", "trade_id"])


def downgrade() -> None:
    op.drop_index("trading_sales_created", table_name="trading_sales")
    op.drop_index("trading_orders_created", table_name="trading_orders")
