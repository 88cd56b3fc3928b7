"""connectors: each registration carries a generation, so every replica can tell an upgrade apart.

Several replicas host the same plugins from the stored set. A re-registration (an upgrade, or a
remote plugin registering again with new tokens) gets a new random `generation`; a replica that
hosts an older generation replaces its copy. `reload_code` says the registration asked for the
plugin's module to be re-imported, which the other replicas then do as well.

Revision ID: connectors_0002
Revises: connectors_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "connectors_0002"
down_revision = "connectors_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows registered before this revision share the empty generation: every replica already
    # agrees on them, and their next registration gives them a real one.
    op.add_column(
        "connector_plugins",
        sa.Column("generation", sa.String(32), nullable=False, server_default=""),
    )
    op.add_column(
        "connector_plugins",
        sa.Column("reload_code", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("connector_plugins", "reload_code")
    op.drop_column("connector_plugins", "generation")
