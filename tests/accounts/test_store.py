"""Account storage on SQLite and PostgreSQL: lifecycle changes with their events in one transaction,
users and their tokens, the partners that have seen a consumer, and federated accounts that keep
the highest status version their home node stated."""

from __future__ import annotations

from typing import Any

import pytest
from nacl.signing import SigningKey
from sqlalchemy.engine import Engine

from federation.assertions import AccountState, Assertion, Verification
from node.accounts import federated_store, store
from node.accounts.lifecycle import AccountRequestError, AccountStateError

NOW = 1_800_000_000_000


def _assertion(status: str, version: int) -> Assertion:
    state = AccountState("alice", status, version, Verification("verified", "admin", 1))
    key = SigningKey(b"\x03" * 32).verify_key
    return Assertion("a", "b", state, "sha256:x", key, "id", 1, 2)


def test_changes_and_their_events(engine: Engine) -> None:
    """Each change bumps the version and writes one event; a refused change writes nothing."""
    assert store.get(engine, "consumer", "alice").status == "active"
    store.created(engine, "consumer", "alice", "admin", NOW)
    store.verify(engine, "consumer", "alice", "verified", "user:olga", "passport", NOW + 1)
    suspended = store.change(engine, "consumer", "alice", "suspend", "admin", NOW + 2, "why")
    assert (suspended.status, suspended.version, suspended.verified_by) == ("suspended", 2, "user:olga")
    with pytest.raises(AccountStateError):
        store.change(engine, "consumer", "alice", "suspend", "admin", NOW + 3)
    events = store.events(engine, "consumer", "alice")
    assert [(e.action, e.actor, e.ts_ms) for e in events] == [
        ("create", "admin", NOW),
        ("verify", "user:olga", NOW + 1),
        ("suspend", "admin", NOW + 2),
    ]
    assert store.events(engine, after=events[0].seq, limit=1)[0].action == "verify"
    assert set(store.list_records(engine, "consumer")) == {"alice"}


def test_users_and_their_tokens(engine: Engine) -> None:
    """A user's token authenticates it until replaced; names are unique; a bad token is nobody."""
    token, user = store.create_user(engine, "olga", "operator", "admin", NOW)
    assert user.view()["role"] == "operator"
    found = store.user_of(engine, token)
    assert found is not None
    assert (found.name, found.role, found.account.status) == ("olga", "operator", "active")
    with pytest.raises(AccountRequestError):
        store.create_user(engine, "olga", "auditor", "admin", NOW)
    fresh = store.new_user_token_for(engine, "olga", "admin", NOW + 1)
    assert store.user_of(engine, token) is None
    assert store.user_of(engine, fresh) is not None
    assert store.user_of(engine, fresh[:-1] + ("A" if fresh[-1] != "A" else "B")) is None
    assert [u.name for u in store.list_users(engine)] == ["olga"]


def test_federated_accounts_keep_the_highest_version(engine: Engine) -> None:
    """An assertion creates the account; a newer status changes it; an older one changes nothing."""
    federated_store.saw(engine, "alice", "b", NOW)
    federated_store.saw(engine, "alice", "b", NOW + 1)
    assert federated_store.audiences(engine, "alice") == ["b"]
    assert federated_store.seen_by(engine, "b", ["alice", "bob"]) == {"alice"}

    account = federated_store.seen(engine, _assertion("active", 3), NOW)
    assert (account.id, account.status, account.version) == ("alice@a", "active", 3)
    suspended = AccountState("alice", "suspended", 4, Verification())
    assert federated_store.apply_states(engine, "a", [suspended], NOW + 1, "push") == 1
    again = federated_store.seen(engine, _assertion("active", 3), NOW + 2)  # issued before the suspension
    assert (again.status, again.version, again.last_seen_ms) == ("suspended", 4, NOW + 2)
    assert (
        federated_store.apply_states(
            engine, "a", [AccountState("alice", "active", 2, Verification())], NOW + 3, "sync"
        )
        == 0
    )
    assert federated_store.subjects_by_issuer(engine) == {"a": ["alice"]}
    closed = AccountState("alice", "closed", 5, Verification())
    assert federated_store.apply_states(engine, "a", [closed], NOW + 4, "sync") == 1
    assert federated_store.subjects_by_issuer(engine) == {}
    actions = [(e.action, e.detail.get("via")) for e in store.events(engine, "federated")]
    assert actions == [("create", None), ("suspended", "push"), ("closed", "sync")]


def test_a_status_told_before_the_account_is_seen_is_kept(engine: Engine) -> None:
    """A suspension pushed for a consumer not seen here yet is kept (first seen: none), so the
    assertion issued before it finds the account suspended when first shown; only then is it seen."""
    suspended = AccountState("alice", "suspended", 4, Verification())
    assert federated_store.apply_states(engine, "a", [suspended], NOW, "push") == 1
    told = federated_store.get(engine, "alice@a")
    assert told is not None
    assert (told.status, told.version, told.view()["first_seen_ms"]) == ("suspended", 4, None)
    assert federated_store.subjects_by_issuer(engine) == {"a": ["alice"]}
    account = federated_store.seen(engine, _assertion("active", 3), NOW + 1)
    assert (account.status, account.version, account.first_seen_ms) == ("suspended", 4, NOW + 1)
    assert federated_store.seen(engine, _assertion("active", 3), NOW + 2).first_seen_ms == NOW + 1
    events = [(e.action, e.detail) for e in store.events(engine, "federated")]
    assert events == [
        ("suspended", {"from": None, "version": 4, "via": "push"}),
        ("create", {"agreement": "sha256:x", "status": "suspended"}),
    ]


def test_an_account_written_meanwhile_by_another_replica_is_taken_as_stored(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica that read no row for `alice@a` while another wrote it (an assertion's first use, or
    a pushed status) neither fails on the key nor writes a second `create`: it takes the state
    as for a stored account."""
    federated_store.seen(engine, _assertion("active", 3), NOW)
    read = federated_store._read
    missed: list[str] = []

    def stale_once(conn: Any, account_id: str) -> Any:
        if not missed:
            missed.append(account_id)
            return None
        return read(conn, account_id)

    monkeypatch.setattr(federated_store, "_read", stale_once)
    again = federated_store.seen(engine, _assertion("active", 3), NOW + 1)
    assert (again.status, again.first_seen_ms, again.last_seen_ms) == ("active", NOW, NOW + 1)
    missed.clear()
    suspended = AccountState("alice", "suspended", 4, Verification())
    assert federated_store.apply_states(engine, "a", [suspended], NOW + 2, "push") == 1
    assert [e.action for e in store.events(engine, "federated")] == ["create", "suspended"]
