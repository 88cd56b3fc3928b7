"""federation: the star case — re-publishable catalogs an aggregator relays, and what a receiver
holds of them: trusted issuers, relayed catalogs by (aggregator, issuer), and a feed cursor per
aggregator.

Revision ID: federation_0003
Revises: federation_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "federation_0003"
down_revision = "federation_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # On the aggregator: whether a partner's catalog may be passed on, and the feed position at
    # which it was stored (receivers ask for what changed after the position they hold).
    with op.batch_alter_table("fed_received_catalogs") as batch:
        batch.add_column(sa.Column("republishable", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("relay_seq", sa.BigInteger, nullable=False, server_default="0"))
    # On a receiver: issuers whose catalogs it accepts through an aggregator (pinned keys).
    op.create_table(
        "fed_issuers",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("public_key", sa.String(100), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("added_ts", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "fed_relayed_catalogs",
        sa.Column(
            "via", sa.String(63), sa.ForeignKey("fed_partners.name", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("issuer", sa.String(63), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("issued_ts", sa.BigInteger, nullable=False),
        sa.Column("expires_ts", sa.BigInteger, nullable=False),
        sa.Column("received_ts", sa.BigInteger, nullable=False),
        sa.Column("offer_count", sa.BigInteger, nullable=False),
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "fed_relay_cursors",
        sa.Column(
            "via", sa.String(63), sa.ForeignKey("fed_partners.name", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("fed_relay_cursors")
    op.drop_table("fed_relayed_catalogs")
    op.drop_table("fed_issuers")
    with op.batch_alter_table("fed_received_catalogs") as batch:
        batch.drop_column("relay_seq")
        batch.drop_column("republishable")
