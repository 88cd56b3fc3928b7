"""node: account lifecycle and interconnection — account status and verification, operator users,
the audit trail of account changes, partners that have seen a consumer, and partners' consumers
(federated accounts); times in UTC ms.

Revision ID: node_0011
Revises: node_0010
"""

import sqlalchemy as sa
from alembic import op

revision = "node_0011"
down_revision = "node_0010"
branch_labels = None
depends_on = None

_BIG = sa.BigInteger


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", _BIG, nullable=False),
        sa.Column("verification", sa.String(16), nullable=False),
        sa.Column("verified_by", sa.String(100)),
        sa.Column("verified_ms", _BIG),
        sa.Column("verification_note", sa.Text),
        sa.Column("created_ms", _BIG, nullable=False),
        sa.Column("updated_ms", _BIG, nullable=False),
    )
    op.create_table(
        "account_users",
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_id", sa.String(16), unique=True),
        sa.Column("secret_sha256", sa.String(64)),
        sa.Column("token_ms", _BIG),
    )
    op.create_table(
        "account_events",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts_ms", _BIG, nullable=False),
        sa.Column("actor", sa.String(140), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(140), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("account_events_subject", "account_events", ["kind", "subject", "seq"])
    op.create_table(
        "account_audiences",
        sa.Column("consumer", sa.String(63), primary_key=True),
        sa.Column("partner", sa.String(63), primary_key=True),
        sa.Column("first_ms", _BIG, nullable=False),
        sa.Column("last_ms", _BIG, nullable=False),
    )
    op.create_table(
        "federated_accounts",
        sa.Column("id", sa.String(140), primary_key=True),
        sa.Column("issuer", sa.String(63), nullable=False),
        sa.Column("subject", sa.String(63), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", _BIG, nullable=False),
        sa.Column("verification", sa.String(16), nullable=False),
        sa.Column("verified_by", sa.String(100)),
        sa.Column("verified_ts", _BIG),
        sa.Column("agreement", sa.String(80), nullable=False),
        sa.Column("first_seen_ms", _BIG, nullable=False),
        sa.Column("last_seen_ms", _BIG, nullable=False),
        sa.Column("checked_ms", _BIG, nullable=False),
    )
    op.create_index("federated_accounts_issuer", "federated_accounts", ["issuer", "status"])
    # A task sold to a partner names the partner's consumer as `consumer@partner` (SQLite does not
    # enforce VARCHAR lengths, so only other databases need the wider column).
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("tasks", "consumer", type_=sa.String(140), existing_type=sa.String(63))


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("tasks", "consumer", type_=sa.String(63), existing_type=sa.String(140))
    for table in ("federated_accounts", "account_audiences", "account_events", "account_users", "accounts"):
        op.drop_table(table)
