"""node: task migrations — one row per migration (its state, what it created, its progress) and the
history of its transitions; times in UTC ms.

Revision ID: node_0009
Revises: node_0008
"""

import sqlalchemy as sa
from alembic import op

revision = "node_0009"
down_revision = "node_0008"
branch_labels = None
depends_on = None

_NAMES = (
    "task_id",
    "destination_pool",
    "destination_region",
    "destination_flavor",
    "destination_instance",
    "network",
    "source_site",
    "destination_site",
    "path_id",
    "express_job",
)
_COUNTS = (
    "bandwidth_mbps",
    "path_reprovisions",
    "transfer_attempts",
    "transfer_resumes",
    "attempts",
    "version",
)
_TIMES = ("source_stopped_ms", "committed_ms", "destination_started_ms")


def upgrade() -> None:
    op.create_table(
        "migrations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("source_pool", sa.String(100), nullable=False),
        sa.Column("source_instance", sa.String(100), nullable=False),
        *(sa.Column(name, sa.String(100), nullable=True) for name in _NAMES),
        *(sa.Column(name, sa.Text, nullable=True) for name in ("path", "plan", "checkpoint", "progress")),
        sa.Column("undo", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in _COUNTS),
        *(sa.Column(name, sa.BigInteger, nullable=True) for name in _TIMES),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("migrations_state", "migrations", ["state", "updated_ms"])
    op.create_index("migrations_created", "migrations", ["created_ms"])
    op.create_table(
        "migration_events",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("migration_id", sa.String(64), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("from_state", sa.String(32), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("migration_events_migration", "migration_events", ["migration_id", "seq"])


def downgrade() -> None:
    op.drop_table("migration_events")
    op.drop_table("migrations")
