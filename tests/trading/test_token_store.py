"""The consumer token format (pure) and its table (migration node_0003) on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine

from node.db import make_engine, upgrade, write_transaction
from node.db.migrate import _config
from node.http.auth import new_consumer_token, new_token_id, parse_consumer_token, secret_matches
from node.trading import tokens


def test_token_format_parses_one_way_only() -> None:
    """A new token is `cpc_<8>_<43>` of A–Z a–z 0–9, parses back to its id and secret, and its
    digest is the SHA-256 of the secret; anything else does not parse."""
    token_id = new_token_id()
    token, digest = new_consumer_token(token_id)
    parsed = parse_consumer_token(token)
    assert parsed is not None
    assert parsed[0] == token_id
    assert digest == hashlib.sha256(parsed[1].encode()).hexdigest()
    assert secret_matches(parsed[1], digest)
    assert not secret_matches(parsed[1][:-1] + ("A" if parsed[1][-1] != "A" else "B"), digest)
    assert len({new_consumer_token(token_id)[0] for _ in range(50)}) == 50
    for bad in ("", "cpc_", token[4:], token + "_", token.replace("cpc_", "CPC_"), token[:-1], token + "A"):
        assert parse_consumer_token(bad) is None, bad


def test_tokens_are_issued_checked_listed_and_revoked(engine: Engine) -> None:
    """An issued token authenticates its consumer until it is revoked; revoking twice keeps the first
    time; another consumer cannot revoke it; the stored row holds the digest, never the secret."""
    token, row = tokens.issue(engine, "alice", 1_000)
    other, _ = tokens.issue(engine, "alice", 2_000)
    assert tokens.consumer_of(engine, token) == "alice"
    assert tokens.consumer_of(engine, other) == "alice"
    assert tokens.consumer_of(engine, token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert tokens.consumer_of(engine, "cpc_AAAAAAAA_" + token.split("_")[2]) is None
    assert tokens.revoke(engine, "bob", row.token_id, 3_000) is None
    revoked = tokens.revoke(engine, "alice", row.token_id, 3_000)
    assert revoked is not None
    assert revoked.revoked_ts == 3_000
    assert tokens.revoke(engine, "alice", row.token_id, 4_000) == revoked
    assert tokens.consumer_of(engine, token) is None
    assert tokens.consumer_of(engine, other) == "alice"
    assert [(t.created_ts, t.revoked_ts) for t in tokens.list_tokens(engine, "alice")] == [
        (1_000, 3_000),
        (2_000, None),
    ]
    assert tokens.list_tokens(engine, "bob") == []
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT * FROM trading_consumer_tokens")).all()
    secrets = {token.split("_")[2], other.split("_")[2]}
    assert not any(secret in str(value) for row_ in stored for value in row_ for secret in secrets)


def test_token_table_migrates_up_and_down(db_url: str) -> None:
    """node_0003 adds the token table to a database at node_0002 beside the trading tables, and its
    downgrade removes it again; upgrading once more brings it back empty."""
    engine = make_engine(db_url)
    try:
        with write_transaction(engine) as conn:
            command.upgrade(_config(conn), "node_0002")
        with engine.connect() as conn:
            assert not sa.inspect(conn).has_table("trading_consumer_tokens")
        upgrade(engine)
        with engine.connect() as conn:
            columns = {c["name"]: c for c in sa.inspect(conn).get_columns("trading_consumer_tokens")}
            indexes = {i["name"] for i in sa.inspect(conn).get_indexes("trading_consumer_tokens")}
        assert set(columns) == {"token_id", "consumer", "secret_sha256", "created_ts", "revoked_ts"}
        assert [name for name, c in columns.items() if c["nullable"]] == ["revoked_ts"]
        assert "trading_consumer_tokens_consumer" in indexes
        tokens.issue(engine, "alice", 1_000)
        with write_transaction(engine) as conn:
            command.downgrade(_config(conn), "node_0002")
        with engine.connect() as conn:
            assert not sa.inspect(conn).has_table("trading_consumer_tokens")
            assert sa.inspect(conn).has_table("trading_orders")
        upgrade(engine)
        assert tokens.list_tokens(engine, "alice") == []
    finally:
        engine.dispose()
