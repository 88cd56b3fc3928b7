"""node: trading — orders placed here, sales to partners, and capacity reserved by either.

Revision ID: node_0002
Revises: node_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "node_0002"
down_revision = "node_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trading_orders",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("consumer", sa.String(63), nullable=False),
        sa.Column("offer_id", sa.String(200), nullable=False),
        sa.Column("source", sa.String(80), nullable=False),
        sa.Column("partner", sa.String(63), nullable=True),
        sa.Column("pool", sa.String(200), nullable=False),
        sa.Column("units", sa.BigInteger, nullable=False),
        sa.Column("hours", sa.BigInteger, nullable=False),
        sa.Column("price_per_unit_hour", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("fee", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("trade_request", sa.LargeBinary, nullable=True),
        sa.Column("receipt", sa.LargeBinary, nullable=True),
        sa.Column("receipt_sha256", sa.String(64), nullable=True),
        sa.Column("partner_hold_expires_ts", sa.BigInteger, nullable=True),
        sa.Column("used_hours", sa.BigInteger, nullable=True),
        sa.Column("settled_amount", sa.BigInteger, nullable=True),
        sa.Column("settlement", sa.LargeBinary, nullable=True),
        sa.Column("settlement_record", sa.LargeBinary, nullable=True),
        sa.Column("settlement_sha256", sa.String(64), nullable=True),
        sa.Column("notify_partner", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("hold_expires_ts", sa.BigInteger, nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
    )
    op.create_index("trading_orders_state", "trading_orders", ["state", "updated_ts"])
    op.create_index("trading_orders_consumer", "trading_orders", ["consumer", "created_ts"])
    op.create_table(
        "trading_sales",
        sa.Column("partner", sa.String(63), primary_key=True),
        sa.Column("trade_id", sa.String(100), primary_key=True),
        sa.Column("offer_id", sa.String(200), nullable=True),
        sa.Column("pool", sa.String(200), nullable=True),
        sa.Column("units", sa.BigInteger, nullable=False),
        sa.Column("hours", sa.BigInteger, nullable=False),
        sa.Column("price_per_unit_hour", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("fee", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("request_sha256", sa.String(64), nullable=True),
        sa.Column("acceptance", sa.LargeBinary, nullable=True),
        sa.Column("receipt_sha256", sa.String(64), nullable=True),
        sa.Column("settlement_sha256", sa.String(64), nullable=True),
        sa.Column("settlement_receipt", sa.LargeBinary, nullable=True),
        sa.Column("record_sha256", sa.String(64), nullable=True),
        sa.Column("used_hours", sa.BigInteger, nullable=True),
        sa.Column("settled_amount", sa.BigInteger, nullable=True),
        sa.Column("hold_expires_ts", sa.BigInteger, nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("updated_ts", sa.BigInteger, nullable=False),
    )
    op.create_index("trading_sales_state", "trading_sales", ["state", "hold_expires_ts"])
    op.create_table(
        "trading_reservations",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("offer_id", sa.String(200), nullable=False),
        sa.Column("units", sa.BigInteger, nullable=False),
        sa.Column("expires_ts", sa.BigInteger, nullable=False),
        sa.Column("released_ts", sa.BigInteger, nullable=True),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
    )
    op.create_index("trading_reservations_offer", "trading_reservations", ["offer_id", "released_ts"])


def downgrade() -> None:
    op.drop_table("trading_reservations")
    op.drop_table("trading_sales")
    op.drop_table("trading_orders")
