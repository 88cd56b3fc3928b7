"""node: orders and sales settled for metered usage, counted in seconds (null when a settlement
gave whole hours by hand: an operator's correction).

Revision ID: node_0006
Revises: node_0005
"""

import sqlalchemy as sa
from alembic import op

revision = "node_0006"
down_revision = "node_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("trading_orders", "trading_sales"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("used_s", sa.BigInteger, nullable=True))


def downgrade() -> None:
    for table in ("trading_orders", "trading_sales"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("used_s")
