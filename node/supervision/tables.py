"""Supervision tables (migration node_0013) as SQLAlchemy Core objects, for `store`."""

from __future__ import annotations

import sqlalchemy as sa

_md = sa.MetaData()
_BIG = sa.BigInteger


def _pinned(name: str) -> sa.Table:
    return sa.Table(
        name,
        _md,
        sa.Column("name", sa.String(63), primary_key=True),
        sa.Column("url", sa.Text),
        sa.Column("public_key", sa.String(100)),
        sa.Column("source", sa.String(16)),
        sa.Column("added_ts", _BIG),
    )


# A node's side: whom it reports to, what it made for them, and each one's delivery backoff.
supervisors_t = _pinned("sup_supervisors")
outbox_t = sa.Table(
    "sup_outbox",
    _md,
    sa.Column("supervisor", sa.String(63), primary_key=True),
    sa.Column("seq", _BIG, primary_key=True),
    *(sa.Column(name, _BIG) for name in ("period_start_ts", "period_end_ts", "created_ts")),
    sa.Column("sha256", sa.String(64)),
    sa.Column("body", sa.LargeBinary),
    sa.Column("state", sa.String(16)),
    sa.Column("attempts", sa.Integer),
    sa.Column("last_attempt_ts", _BIG),
    sa.Column("sent_ts", _BIG),
    sa.Column("last_error", sa.Text),
)
delivery_t = sa.Table(
    "sup_delivery",
    _md,
    sa.Column("supervisor", sa.String(63), primary_key=True),
    sa.Column("failures", sa.Integer),
    sa.Column("next_attempt_ts", _BIG),
)
# A supervisor's side: registered nodes, every accepted report, and per node its last one and check.
nodes_t = _pinned("sup_nodes")
reports_t = sa.Table(
    "sup_reports",
    _md,
    sa.Column("node", sa.String(63), primary_key=True),
    sa.Column("seq", _BIG, primary_key=True),
    sa.Column("sha256", sa.String(64)),
    sa.Column("key_id", sa.String(40)),
    *(
        sa.Column(name, _BIG)
        for name in ("issued_ts", "received_ts", "period_start_ts", "period_end_ts", "interval_s")
    ),
    sa.Column("region", sa.String(200)),
    sa.Column("body", sa.LargeBinary),
)
node_state_t = sa.Table(
    "sup_node_state",
    _md,
    sa.Column("node", sa.String(63), primary_key=True),
    sa.Column("last_seq", _BIG),
    sa.Column("last_sha256", sa.String(64)),
    sa.Column("last_received_ts", _BIG),
    sa.Column("interval_s", _BIG),
    sa.Column("check_status", sa.String(20)),
    sa.Column("check_detail", sa.Text),
    sa.Column("check_ts", _BIG),
    sa.Column("checked_seq", _BIG),
)
