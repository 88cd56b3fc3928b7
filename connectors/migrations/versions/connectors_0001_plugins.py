"""connectors: registered plugins with their health state, and their latest data-source snapshots.

Revision ID: connectors_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "connectors_0001"
down_revision = None
branch_labels = ("connectors",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connector_plugins",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),  # entry_point | remote
        sa.Column("target", sa.String(500), nullable=False),  # entry point name or plugin URL
        sa.Column("options_json", sa.Text, nullable=False),
        sa.Column("version", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("call_token", sa.String(200), nullable=False),
        sa.Column("heartbeat_token_sha256", sa.String(64), nullable=False),
        sa.Column("registered_ms", sa.BigInteger, nullable=False),
        sa.Column("state_changed_ms", sa.BigInteger, nullable=False),
        sa.Column("last_seen_ms", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.Text, nullable=False),
    )
    op.create_table(
        "connector_snapshots",
        sa.Column(
            "plugin",
            sa.String(63),
            sa.ForeignKey("connector_plugins.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("fetched_ms", sa.BigInteger, nullable=False),
        sa.Column("duration_ms", sa.BigInteger, nullable=False),
        sa.Column("data_json", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("connector_snapshots")
    op.drop_table("connector_plugins")
