"""node: the task document an order carries to the partner that delivers it (canonical JSON, signed
as part of the trade request; null for an order that runs nothing).

Revision ID: node_0008
Revises: node_0007
"""

import sqlalchemy as sa
from alembic import op

revision = "node_0008"
down_revision = "node_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trading_orders") as batch:
        batch.add_column(sa.Column("task", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("trading_orders") as batch:
        batch.drop_column("task")
