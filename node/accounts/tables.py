"""Account tables (migration node_0011): each account's status and verification, operator users and
their tokens, the audit trail of changes, the partners that have seen each consumer here, and the
partners' consumers seen here (federated accounts). Times are UTC ms."""

from __future__ import annotations

import sqlalchemy as sa

_md = sa.MetaData()
_BIG = sa.BigInteger

accounts_t = sa.Table(
    "accounts",
    _md,
    sa.Column("kind", sa.String(16), primary_key=True),  # consumer | user
    sa.Column("id", sa.String(63), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("version", _BIG, nullable=False),  # +1 on every status or verification change
    sa.Column("verification", sa.String(16), nullable=False),
    sa.Column("verified_by", sa.String(100)),
    sa.Column("verified_ms", _BIG),
    sa.Column("verification_note", sa.Text),
    sa.Column("created_ms", _BIG, nullable=False),
    sa.Column("updated_ms", _BIG, nullable=False),
)

users_t = sa.Table(
    "account_users",
    _md,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("token_id", sa.String(16), unique=True),
    sa.Column("secret_sha256", sa.String(64)),
    sa.Column("token_ms", _BIG),
)

events_t = sa.Table(
    "account_events",
    _md,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts_ms", _BIG, nullable=False),
    sa.Column("actor", sa.String(140), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("subject", sa.String(140), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),  # canonical JSON
)

audiences_t = sa.Table(
    "account_audiences",
    _md,
    sa.Column("consumer", sa.String(63), primary_key=True),
    sa.Column("partner", sa.String(63), primary_key=True),
    sa.Column("first_ms", _BIG, nullable=False),
    sa.Column("last_ms", _BIG, nullable=False),
)

federated_t = sa.Table(
    "federated_accounts",
    _md,
    sa.Column("id", sa.String(140), primary_key=True),  # subject@issuer
    sa.Column("issuer", sa.String(63), nullable=False),
    sa.Column("subject", sa.String(63), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("version", _BIG, nullable=False),  # the issuer's status version
    sa.Column("verification", sa.String(16), nullable=False),
    sa.Column("verified_by", sa.String(100)),
    sa.Column("verified_ts", _BIG),
    sa.Column("agreement", sa.String(80), nullable=False),
    sa.Column("first_seen_ms", _BIG, nullable=False),
    sa.Column("last_seen_ms", _BIG, nullable=False),
    sa.Column("checked_ms", _BIG, nullable=False),  # last status from the issuer (push or sync)
)
