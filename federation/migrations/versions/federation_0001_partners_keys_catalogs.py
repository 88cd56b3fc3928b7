"""federation: partners, peer keys, deny-list, login challenges, sessions, catalogs, sync state,
discovered candidates, trade requests.

Revision ID: federation_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "federation_0001"
down_revision = None
branch_labels = ("federation",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fed_partners",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("urls_json", sa.Text, nullable=False),
        sa.Column("public_key", sa.String(100), nullable=False),
        sa.Column("agreement_json", sa.Text, nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("added_ts", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "fed_peer_keys",
        sa.Column(
            "partner", sa.String(63), sa.ForeignKey("fed_partners.name", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("kid", sa.String(40), primary_key=True),
        sa.Column("public_key", sa.String(100), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("valid_from_ts", sa.BigInteger, nullable=False),
        sa.Column("retired_ts", sa.BigInteger, nullable=True),
        sa.Column("document_expires_ts", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "fed_denied_keys",
        sa.Column("kid", sa.String(40), primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("denied_ts", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "fed_challenges",
        sa.Column("challenge", sa.String(64), primary_key=True),
        sa.Column("partner", sa.String(63), nullable=False),
        sa.Column("node", sa.String(63), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("expires_ts", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "fed_sessions",
        sa.Column(
            "partner", sa.String(63), sa.ForeignKey("fed_partners.name", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("token", sa.Text, nullable=False),
        sa.Column("kid", sa.String(40), nullable=False),
        sa.Column("expires_ts", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "fed_issued_catalogs",
        sa.Column("partner", sa.String(63), primary_key=True),
        sa.Column("version", sa.BigInteger, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content_sha256", sa.String(64), nullable=False),
        sa.Column("issued_ts", sa.BigInteger, nullable=False),
        sa.Column("expires_ts", sa.BigInteger, nullable=False),
        sa.Column("offer_count", sa.BigInteger, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "fed_received_catalogs",
        sa.Column(
            "partner", sa.String(63), sa.ForeignKey("fed_partners.name", ondelete="CASCADE"), primary_key=True
        ),
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
        "fed_catalog_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("partner", sa.String(63), nullable=False, index=True),
        sa.Column("at_ts", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_table(
        "fed_sync_state",
        sa.Column(
            "partner", sa.String(63), sa.ForeignKey("fed_partners.name", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("next_attempt_ts", sa.BigInteger, nullable=False),
        sa.Column("last_attempt_ts", sa.BigInteger, nullable=True),
        sa.Column("last_success_ts", sa.BigInteger, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_table(
        "fed_discovered",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("public_key", sa.String(100), nullable=False),
        sa.Column("fingerprint", sa.String(60), nullable=False),
        sa.Column("first_seen_ts", sa.BigInteger, nullable=False),
        sa.Column("last_seen_ts", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "fed_trade_requests",
        sa.Column("partner", sa.String(63), primary_key=True),
        sa.Column("trade_id", sa.String(100), primary_key=True),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("response", sa.LargeBinary, nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "fed_trade_requests",
        "fed_discovered",
        "fed_sync_state",
        "fed_catalog_events",
        "fed_received_catalogs",
        "fed_issued_catalogs",
        "fed_sessions",
        "fed_challenges",
        "fed_denied_keys",
        "fed_peer_keys",
        "fed_partners",
    ):
        op.drop_table(table)
