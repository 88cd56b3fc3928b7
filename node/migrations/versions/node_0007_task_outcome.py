"""node: how a task's run ended (succeeded, failed or stopped), kept once the task is released.

Revision ID: node_0007
Revises: node_0006
"""

import sqlalchemy as sa
from alembic import op

revision = "node_0007"
down_revision = "node_0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("outcome", sa.String(20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("outcome")
