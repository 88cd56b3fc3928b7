"""Federation storage on both backends (SQLite file and PostgreSQL schema): partners, single-use
challenges, catalogs that only move forward, trades stored once, config partners kept in step."""

from __future__ import annotations

import time

import pytest
from nacl.signing import SigningKey
from sqlalchemy.engine import Engine

from federation import store
from federation.catalog import CatalogHead, ReceivedCatalog
from federation.errors import AuthError, ConflictError, NotFoundError
from federation.keys import public_key_text
from federation.login import new_challenge
from federation.partners import Agreement, Partner


def partner(name: str, source: str = "cli") -> Partner:
    """A partner with a fresh key."""
    return Partner(
        name,
        ("http://127.0.0.1:9",),
        public_key_text(SigningKey.generate().verify_key),
        Agreement(pools=("p",), markup_bp=250, credit_limit=10_000),
        source,
    )


def test_partners_round_trip_and_conflicts(engine: Engine) -> None:
    """A pinned partner reads back equal; a second add of the name conflicts; config partners cannot be removed here."""
    beta = partner("beta")
    store.add_partner(engine, beta, 1)
    assert store.get_partner(engine, "beta") == beta
    with pytest.raises(ConflictError):
        store.add_partner(engine, partner("beta"), 2)
    store.sync_config_partners(engine, [partner("gamma", "config")], 3)
    assert [p.name for p in store.list_partners(engine)] == ["beta", "gamma"]
    with pytest.raises(ConflictError):
        store.remove_partner(engine, "gamma")
    store.sync_config_partners(engine, [], 4)
    store.remove_partner(engine, "beta")
    assert store.list_partners(engine) == []
    with pytest.raises(NotFoundError):
        store.remove_partner(engine, "beta")


def test_challenge_is_consumed_once(engine: Engine) -> None:
    """A login challenge can be consumed exactly once."""
    challenge = new_challenge("alpha", "beta", int(time.time()))
    store.store_challenge(engine, challenge, int(time.time()))
    loaded = store.load_challenge(engine, challenge.value)
    assert loaded == challenge
    store.consume_challenge(engine, loaded)
    with pytest.raises(AuthError):
        store.consume_challenge(engine, loaded)
    assert store.load_challenge(engine, challenge.value).state == "used"  # type: ignore[union-attr]


def test_received_catalogs_only_move_forward(engine: Engine) -> None:
    """Storing an older or equal catalog version changes nothing; a newer one replaces it and is logged."""
    store.add_partner(engine, partner("beta"), 1)
    newer = ReceivedCatalog(CatalogHead(2, "b" * 64, 10, 20), [{"id": "x"}], "ed25519:k")
    older = ReceivedCatalog(CatalogHead(1, "a" * 64, 10, 20), [], "ed25519:k")
    assert store.store_received(engine, "beta", newer, b"{}", 11)
    assert not store.store_received(engine, "beta", older, b"{}", 12)
    assert store.received_head(engine, "beta") == newer.head
    assert [e["kind"] for e in store.catalog_events(engine, "beta")] == ["accepted"]


def test_trade_answer_is_stored_once(engine: Engine) -> None:
    """The first answer to a (partner, trade id) wins; a second write is refused."""
    assert store.put_trade(engine, "beta", "t1", "h" * 64, 201, b'{"a":1}', 1)
    assert not store.put_trade(engine, "beta", "t1", "h" * 64, 201, b'{"a":2}', 2)
    assert bytes(store.get_trade(engine, "beta", "t1")["response"]) == b'{"a":1}'  # type: ignore[index]


def test_issued_versions_are_unique(engine: Engine) -> None:
    """Two issuers of the same catalog version: only the first is stored."""
    issued = store.IssuedCatalog("beta", CatalogHead(1, "a" * 64, 1, 2), "c" * 64, 0, b"{}")
    assert store.insert_issued(engine, issued)
    assert not store.insert_issued(engine, issued)
    assert store.latest_issued(engine, "beta") == issued
