"""The federation tables as SQLAlchemy Core objects, for the queries in `store`, `claims` and
`nonces` (the schema itself is created by migrations/versions/federation_*)."""

from __future__ import annotations

import sqlalchemy as sa

_md = sa.MetaData()
partners_t = sa.Table(
    "fed_partners",
    _md,
    sa.Column("name", sa.String),
    sa.Column("urls_json", sa.Text),
    sa.Column("public_key", sa.String),
    sa.Column("agreement_json", sa.Text),
    sa.Column("source", sa.String),
    sa.Column("added_ts", sa.BigInteger),
)
peer_keys_t = sa.Table(
    "fed_peer_keys",
    _md,
    sa.Column("partner", sa.String),
    sa.Column("kid", sa.String),
    sa.Column("public_key", sa.String),
    sa.Column("status", sa.String),
    sa.Column("valid_from_ts", sa.BigInteger),
    sa.Column("retired_ts", sa.BigInteger),
    sa.Column("document_expires_ts", sa.BigInteger),
)
denied_t = sa.Table(
    "fed_denied_keys",
    _md,
    sa.Column("kid", sa.String),
    sa.Column("reason", sa.Text),
    sa.Column("denied_ts", sa.BigInteger),
)
challenges_t = sa.Table(
    "fed_challenges",
    _md,
    sa.Column("challenge", sa.String),
    sa.Column("partner", sa.String),
    sa.Column("node", sa.String),
    sa.Column("state", sa.String),
    sa.Column("expires_ts", sa.BigInteger),
)
sessions_t = sa.Table(
    "fed_sessions",
    _md,
    sa.Column("partner", sa.String),
    sa.Column("token", sa.Text),
    sa.Column("kid", sa.String),
    sa.Column("expires_ts", sa.BigInteger),
)
issued_t = sa.Table(
    "fed_issued_catalogs",
    _md,
    sa.Column("partner", sa.String),
    sa.Column("version", sa.BigInteger),
    sa.Column("sha256", sa.String),
    sa.Column("content_sha256", sa.String),
    sa.Column("issued_ts", sa.BigInteger),
    sa.Column("expires_ts", sa.BigInteger),
    sa.Column("offer_count", sa.BigInteger),
    sa.Column("body", sa.LargeBinary),
)
received_t = sa.Table(
    "fed_received_catalogs",
    _md,
    sa.Column("partner", sa.String),
    sa.Column("version", sa.BigInteger),
    sa.Column("sha256", sa.String),
    sa.Column("issued_ts", sa.BigInteger),
    sa.Column("expires_ts", sa.BigInteger),
    sa.Column("received_ts", sa.BigInteger),
    sa.Column("offer_count", sa.BigInteger),
    sa.Column("key_id", sa.String),
    sa.Column("body", sa.LargeBinary),
    sa.Column("republishable", sa.Boolean),
    sa.Column("relay_seq", sa.BigInteger),
)
issuers_t = sa.Table(
    "fed_issuers",
    _md,
    sa.Column("name", sa.String),
    sa.Column("public_key", sa.String),
    sa.Column("source", sa.String),
    sa.Column("added_ts", sa.BigInteger),
)
relayed_t = sa.Table(
    "fed_relayed_catalogs",
    _md,
    sa.Column("via", sa.String),
    sa.Column("issuer", sa.String),
    sa.Column("version", sa.BigInteger),
    sa.Column("sha256", sa.String),
    sa.Column("issued_ts", sa.BigInteger),
    sa.Column("expires_ts", sa.BigInteger),
    sa.Column("received_ts", sa.BigInteger),
    sa.Column("offer_count", sa.BigInteger),
    sa.Column("key_id", sa.String),
    sa.Column("body", sa.LargeBinary),
)
relay_cursors_t = sa.Table(
    "fed_relay_cursors",
    _md,
    sa.Column("via", sa.String),
    sa.Column("seq", sa.BigInteger),
)
events_t = sa.Table(
    "fed_catalog_events",
    _md,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("partner", sa.String),
    sa.Column("at_ts", sa.BigInteger),
    sa.Column("kind", sa.String),
    sa.Column("code", sa.String),
    sa.Column("message", sa.Text),
)
sync_t = sa.Table(
    "fed_sync_state",
    _md,
    sa.Column("partner", sa.String),
    sa.Column("status", sa.String),
    sa.Column("failures", sa.Integer),
    sa.Column("next_attempt_ts", sa.BigInteger),
    sa.Column("last_attempt_ts", sa.BigInteger),
    sa.Column("last_success_ts", sa.BigInteger),
    sa.Column("last_error", sa.Text),
)
discovered_t = sa.Table(
    "fed_discovered",
    _md,
    sa.Column("name", sa.String),
    sa.Column("url", sa.Text),
    sa.Column("public_key", sa.String),
    sa.Column("fingerprint", sa.String),
    sa.Column("first_seen_ts", sa.BigInteger),
    sa.Column("last_seen_ts", sa.BigInteger),
)
trades_t = sa.Table(
    "fed_trade_requests",
    _md,
    sa.Column("partner", sa.String),
    sa.Column("trade_id", sa.String),
    sa.Column("request_sha256", sa.String),
    sa.Column("status", sa.Integer),
    sa.Column("response", sa.LargeBinary),
    sa.Column("created_ts", sa.BigInteger),
)
claims_t = sa.Table(
    "fed_trade_claims",
    _md,
    sa.Column("partner", sa.String(63), primary_key=True),
    sa.Column("trade_id", sa.String(100), primary_key=True),
    sa.Column("request_sha256", sa.String(64), nullable=False),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("claimed_ts", sa.BigInteger, nullable=False),
    sa.Column("expires_ts", sa.BigInteger, nullable=False),
)
seen_nonces_t = sa.Table(
    "fed_seen_nonces",
    _md,
    sa.Column("kid", sa.String(40), primary_key=True),
    sa.Column("nonce", sa.String(128), primary_key=True),
    sa.Column("expires_ts", sa.BigInteger, nullable=False),
)
