"""node: tasks (a consumer's program run on a pool it bought, or a partner's run here) and the
history of each task's transitions; times are UTC epoch milliseconds.

Revision ID: node_0005
Revises: node_0004
"""

import sqlalchemy as sa
from alembic import op

revision = "node_0005"
down_revision = "node_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big, text = sa.BigInteger, sa.Text
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("consumer", sa.String(63), nullable=True),
        sa.Column("partner", sa.String(63), nullable=True),
        sa.Column("name", sa.String(63), nullable=True),
        sa.Column("spec", text, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("reason", text, nullable=True),
        sa.Column("detail", text, nullable=True),
        sa.Column("order_id", sa.String(100), nullable=True),
        sa.Column("order_round", big, nullable=False, server_default="0"),
        sa.Column("offer_id", sa.String(200), nullable=True),
        sa.Column("source", sa.String(80), nullable=True),
        sa.Column("pool", sa.String(200), nullable=True),
        sa.Column("region_id", sa.String(63), nullable=True),
        sa.Column("flavor_id", sa.String(63), nullable=True),
        sa.Column("units", big, nullable=True),
        sa.Column("hours", big, nullable=True),
        sa.Column("price_per_unit_hour", big, nullable=True),
        sa.Column("currency", sa.String(16), nullable=True),
        sa.Column("image", text, nullable=True),
        sa.Column("instance_id", sa.String(100), nullable=True),
        sa.Column("started_ms", big, nullable=True),
        sa.Column("ended_ms", big, nullable=True),
        sa.Column("exit_code", big, nullable=True),
        sa.Column("end_reason", sa.String(32), nullable=True),
        sa.Column("seen_running_ms", big, nullable=True),
        sa.Column("observed_started_ms", big, nullable=True),
        sa.Column("observed_ended_ms", big, nullable=True),
        sa.Column("used_s", big, nullable=True),
        sa.Column("amount", big, nullable=True),
        sa.Column("usage_record", sa.LargeBinary, nullable=True),
        sa.Column("outputs", text, nullable=True),
        sa.Column("created_ms", big, nullable=False),
        sa.Column("updated_ms", big, nullable=False),
    )
    op.create_index("tasks_state", "tasks", ["state", "updated_ms"])
    op.create_index("tasks_consumer", "tasks", ["consumer", "created_ms"])
    op.create_table(
        "task_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(100), nullable=False),
        sa.Column("ts_ms", big, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("event", sa.String(20), nullable=False),
        sa.Column("detail", text, nullable=True),
    )
    op.create_index("task_events_task", "task_events", ["task_id", "id"])


def downgrade() -> None:
    op.drop_table("task_events")
    op.drop_table("tasks")
