"""node: supervision — supervisors a node reports to and the reports it made for them (its outbox,
with each supervisor's delivery backoff); on a supervisor, the nodes registered with it, every report
it accepted, and per node the last accepted sequence number and catalog check. Times in UTC seconds.

Revision ID: node_0013
Revises: node_0012
"""

import sqlalchemy as sa
from alembic import op

revision = "node_0013"
down_revision = "node_0012"
branch_labels = None
depends_on = None

_NAME = 63


def upgrade() -> None:
    for table in ("sup_supervisors", "sup_nodes"):
        op.create_table(
            table,
            sa.Column("name", sa.String(_NAME), primary_key=True),
            sa.Column("url", sa.Text, nullable=False),
            sa.Column("public_key", sa.String(100), nullable=False),
            sa.Column("source", sa.String(16), nullable=False),
            sa.Column("added_ts", sa.BigInteger, nullable=False),
        )
    op.create_table(
        "sup_outbox",
        sa.Column("supervisor", sa.String(_NAME), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("period_start_ts", sa.BigInteger, nullable=False),
        sa.Column("period_end_ts", sa.BigInteger, nullable=False),
        sa.Column("created_ts", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_attempt_ts", sa.BigInteger, nullable=True),
        sa.Column("sent_ts", sa.BigInteger, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index("sup_outbox_state", "sup_outbox", ["supervisor", "state", "seq"])
    op.create_table(
        "sup_delivery",
        sa.Column("supervisor", sa.String(_NAME), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("next_attempt_ts", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "sup_reports",
        sa.Column("node", sa.String(_NAME), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("issued_ts", sa.BigInteger, nullable=False),
        sa.Column("received_ts", sa.BigInteger, nullable=False),
        sa.Column("period_start_ts", sa.BigInteger, nullable=False),
        sa.Column("period_end_ts", sa.BigInteger, nullable=False),
        sa.Column("interval_s", sa.BigInteger, nullable=False),
        sa.Column("region", sa.String(200), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_index("sup_reports_received", "sup_reports", ["node", "received_ts"])
    op.create_table(
        "sup_node_state",
        sa.Column("node", sa.String(_NAME), primary_key=True),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("last_sha256", sa.String(64), nullable=False),
        sa.Column("last_received_ts", sa.BigInteger, nullable=False),
        sa.Column("interval_s", sa.BigInteger, nullable=False),
        sa.Column("check_status", sa.String(20), nullable=True),
        sa.Column("check_detail", sa.Text, nullable=True),
        sa.Column("check_ts", sa.BigInteger, nullable=True),
        sa.Column("checked_seq", sa.BigInteger, nullable=True),
    )


def downgrade() -> None:
    for table in (
        "sup_node_state",
        "sup_reports",
        "sup_delivery",
        "sup_outbox",
        "sup_nodes",
        "sup_supervisors",
    ):
        op.drop_table(table)
