"""node: capacity reservations counted per pool region — the group an offer shares capacity with and
the units of it a reservation takes (null for offers that share nothing).

Revision ID: node_0004
Revises: node_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "node_0004"
down_revision = "node_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trading_reservations") as batch:
        batch.add_column(sa.Column("capacity_group", sa.String(200), nullable=True))
        batch.add_column(sa.Column("group_units", sa.BigInteger, nullable=True))
    op.create_index("trading_reservations_group", "trading_reservations", ["capacity_group", "released_ts"])


def downgrade() -> None:
    op.drop_index("trading_reservations_group", "trading_reservations")
    with op.batch_alter_table("trading_reservations") as batch:
        batch.drop_column("group_units")
        batch.drop_column("capacity_group")
