"""Interconnected accounts in the database: at the home node, which partners have seen each consumer
(`account_audiences`: they are told of its lifecycle changes); at the partner, the home nodes'
consumers seen here (`federated_accounts`, named `subject@issuer`).

A federated account keeps the highest status version its home node has stated (in an assertion,
a pushed status or a status read on sync): a statement with a lower version changes nothing, so an
assertion issued before a suspension cannot undo it. A status pushed for a consumer not seen here
yet (its assertion issued, not used) is kept too, with `first_seen_ms` 0 until the consumer comes:
an assertion issued before that suspension is then refused the first time it is shown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from federation.assertions import AccountState, Assertion
from node.accounts.store import add_event
from node.accounts.tables import audiences_t, federated_t
from node.db import write_transaction
from node.db.dialects import dialect_insert


def saw(engine: Engine, consumer: str, partner: str, now_ms: int) -> None:
    """Record that `partner` was given an assertion about `consumer`."""
    with write_transaction(engine) as conn:
        mine = (audiences_t.c.consumer == consumer, audiences_t.c.partner == partner)
        updated = conn.execute(sa.update(audiences_t).where(*mine).values(last_ms=now_ms)).rowcount
        if not updated:
            conn.execute(
                sa.insert(audiences_t).values(
                    consumer=consumer, partner=partner, first_ms=now_ms, last_ms=now_ms
                )
            )


def audiences(engine: Engine, consumer: str) -> list[str]:
    """The partners that have seen `consumer`, by name."""
    query = (
        sa.select(audiences_t.c.partner)
        .where(audiences_t.c.consumer == consumer)
        .order_by(audiences_t.c.partner)
    )
    with engine.connect() as conn:
        return [row.partner for row in conn.execute(query)]


def seen_by(engine: Engine, partner: str, consumers: list[str]) -> set[str]:
    """Those of `consumers` that `partner` has seen."""
    query = sa.select(audiences_t.c.consumer).where(
        audiences_t.c.partner == partner, audiences_t.c.consumer.in_(consumers)
    )
    with engine.connect() as conn:
        return {row.consumer for row in conn.execute(query)}


@dataclass(frozen=True)
class FederatedAccount:
    """A partner's consumer as this node knows it."""

    id: str
    issuer: str
    subject: str
    status: str
    version: int
    verification: str
    verified_by: str | None
    verified_ts: int | None
    agreement: str
    first_seen_ms: int
    last_seen_ms: int
    checked_ms: int

    def view(self) -> dict[str, Any]:
        """What the API shows of a federated account."""
        return {
            "id": self.id,
            "issuer": self.issuer,
            "subject": self.subject,
            "status": self.status,
            "version": self.version,
            "verification": {"status": self.verification, "by": self.verified_by, "ts": self.verified_ts},
            "agreement": self.agreement,
            "first_seen_ms": self.first_seen_ms or None,  # None: told of, not seen here yet
            "last_seen_ms": self.last_seen_ms or None,
            "checked_ms": self.checked_ms,
        }


def _federated(row: Any) -> FederatedAccount:
    return FederatedAccount(
        row.id,
        row.issuer,
        row.subject,
        row.status,
        row.version,
        row.verification,
        row.verified_by,
        row.verified_ts,
        row.agreement,
        row.first_seen_ms,
        row.last_seen_ms,
        row.checked_ms,
    )


def _read(conn: Connection, account_id: str) -> FederatedAccount | None:
    row = conn.execute(sa.select(federated_t).where(federated_t.c.id == account_id)).first()
    return None if row is None else _federated(row)


def _state_values(state: AccountState) -> dict[str, Any]:
    v = state.verification
    return {
        "status": state.status,
        "version": state.version,
        "verification": v.status,
        "verified_by": v.by,
        "verified_ts": v.ts,
    }


def _new_row(issuer: str, state: AccountState, agreement: str, seen_ms: int, now_ms: int) -> dict[str, Any]:
    """A federated account's first row (`seen_ms` 0: told of by its home node, not seen here yet)."""
    return {
        "id": f"{state.subject}@{issuer}",
        "issuer": issuer,
        "subject": state.subject,
        **_state_values(state),
        "agreement": agreement,
        "first_seen_ms": seen_ms,
        "last_seen_ms": seen_ms,
        "checked_ms": now_ms,
    }


def _insert(conn: Connection, values: dict[str, Any]) -> bool:
    """Insert a federated account unless its id is there already (another replica may have written
    it since we read): one atomic `INSERT … ON CONFLICT DO NOTHING`; whether this one inserted it."""
    statement = (
        dialect_insert(conn, federated_t)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[federated_t.c.id])
        .returning(federated_t.c.id)
    )
    return conn.execute(statement).first() is not None


def _told_first(conn: Connection, issuer: str, state: AccountState, now_ms: int, via: str) -> bool:
    """Keep the state told of an account not seen here yet (first seen: 0); whether it is not active."""
    if not _insert(conn, _new_row(issuer, state, "", 0, now_ms)):
        return _apply(conn, issuer, state, now_ms, via)  # written meanwhile by another replica
    add_event(
        conn,
        now_ms,
        f"partner:{issuer}",
        "federated",
        f"{state.subject}@{issuer}",
        state.status,
        {"from": None, "version": state.version, "via": via},
    )
    return state.status != "active"


def _apply(conn: Connection, issuer: str, state: AccountState, now_ms: int, via: str) -> bool:
    """Take `state` when its version is newer than the stored one; whether the status changed."""
    account_id = f"{state.subject}@{issuer}"
    before = _read(conn, account_id)
    if before is None:
        return _told_first(conn, issuer, state, now_ms, via)
    if state.version <= before.version:
        conn.execute(sa.update(federated_t).where(federated_t.c.id == account_id).values(checked_ms=now_ms))
        return False
    conn.execute(
        sa.update(federated_t)
        .where(federated_t.c.id == account_id)
        .values(**_state_values(state), checked_ms=now_ms)
    )
    if before.status != state.status:
        add_event(
            conn,
            now_ms,
            f"partner:{issuer}",
            "federated",
            account_id,
            state.status,
            {"from": before.status, "version": state.version, "via": via},
        )
        return True
    return False


def seen(engine: Engine, assertion: Assertion, now_ms: int) -> FederatedAccount:
    """Create or update the federated account an accepted assertion names; its state afterwards."""
    account_id = assertion.account
    with write_transaction(engine) as conn:
        before = _read(conn, account_id)
        row = _new_row(assertion.issuer, assertion.state, assertion.agreement, now_ms, now_ms)
        if not (before is None and _insert(conn, row)):
            before = before or _read(conn, account_id)  # None: written meanwhile by another replica
            assert before is not None
            _apply(conn, assertion.issuer, assertion.state, now_ms, "assertion")
            first = before.first_seen_ms or now_ms  # 0: only told of until now
            conn.execute(
                sa.update(federated_t)
                .where(federated_t.c.id == account_id)
                .values(first_seen_ms=first, last_seen_ms=now_ms, agreement=assertion.agreement)
            )
        found = _read(conn, account_id)
        assert found is not None
        if before is None or not before.first_seen_ms:
            add_event(
                conn,
                now_ms,
                f"partner:{assertion.issuer}",
                "federated",
                account_id,
                "create",
                {"agreement": assertion.agreement, "status": found.status},
            )
    return found


def apply_states(engine: Engine, issuer: str, states: list[AccountState], now_ms: int, via: str) -> int:
    """Take the newer of `states` for `issuer`'s accounts seen here; how many changed status."""
    with write_transaction(engine) as conn:
        return sum(_apply(conn, issuer, state, now_ms, via) for state in states)


def get(engine: Engine, account_id: str) -> FederatedAccount | None:
    """One federated account by `subject@issuer`."""
    with engine.connect() as conn:
        return _read(conn, account_id)


def list_accounts(engine: Engine, issuer: str | None = None) -> list[FederatedAccount]:
    """Federated accounts (of one issuer) by id."""
    query = sa.select(federated_t).order_by(federated_t.c.id)
    if issuer is not None:
        query = query.where(federated_t.c.issuer == issuer)
    with engine.connect() as conn:
        return [_federated(row) for row in conn.execute(query)]


def subjects_by_issuer(engine: Engine) -> dict[str, list[str]]:
    """The subjects of every issuer's accounts that are not closed (what a sync asks about)."""
    query = (
        sa.select(federated_t.c.issuer, federated_t.c.subject)
        .where(federated_t.c.status != "closed")
        .order_by(federated_t.c.issuer, federated_t.c.subject)
    )
    out: dict[str, list[str]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            out.setdefault(row.issuer, []).append(row.subject)
    return out
