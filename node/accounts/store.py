"""Accounts in the database: status and verification of consumers and operator users, users' roles
and tokens, and the audit trail (tables in node.accounts.tables).

Every change and its audit event are written in one transaction, and every credential check reads
the account's row, so a suspension through one replica is refused by every replica at its next
request (nothing is cached). A consumer without a row (one created before accounts had a
lifecycle) is active and unverified; its row is written at its first change.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dbprep import Prepared, columns
from node.accounts.lifecycle import (
    AccountRequestError,
    Action,
    Kind,
    Status,
    UnknownAccountError,
    check_verifiable,
    next_status,
    refusal,
)
from node.accounts.tables import accounts_t, events_t, users_t
from node.db import write_transaction
from node.http.auth import new_token_id, new_user_token, parse_user_token, secret_matches

MAX_EVENTS = 1000
GET_MANY_CHUNK = 500  # ids in one IN list (well under every backend's bound-parameter limit)
_NO_DIGEST = "0" * 64
_ID_ATTEMPTS = 5


def now_ms() -> int:
    """The current UTC time in milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class AccountRecord:
    """One account's lifecycle state."""

    kind: Kind
    id: str
    status: Status = "active"
    version: int = 0
    verification: str = "unverified"
    verified_by: str | None = None
    verified_ms: int | None = None
    verification_note: str | None = None
    created_ms: int | None = None
    updated_ms: int | None = None

    def view(self) -> dict[str, Any]:
        """What the API shows of the account's lifecycle."""
        return {
            "kind": self.kind,
            "id": self.id,
            "status": self.status,
            "version": self.version,
            "verification": {
                "status": self.verification,
                "by": self.verified_by,
                "ts_ms": self.verified_ms,
                "note": self.verification_note,
            },
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
        }


@dataclass(frozen=True)
class AccountEvent:
    """One audit event: who did what to which account, and when."""

    seq: int
    ts_ms: int
    actor: str
    kind: str
    subject: str
    action: str
    detail: dict[str, Any]

    def view(self) -> dict[str, Any]:
        """What the API shows of an event."""
        return {
            "seq": self.seq,
            "ts_ms": self.ts_ms,
            "actor": self.actor,
            "kind": self.kind,
            "subject": self.subject,
            "action": self.action,
            "detail": self.detail,
        }


_RECORD_FIELDS = tuple(f.name for f in fields(AccountRecord))  # the row's columns of the same names


def _record(row: Any) -> AccountRecord:
    """An account's record from its row (a SQLAlchemy row, or a dict from dbprep)."""
    values = columns(row)
    return AccountRecord(**{name: values[name] for name in _RECORD_FIELDS})


def _mine(kind: Kind, account_id: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (accounts_t.c.kind == kind, accounts_t.c.id == account_id)


# Read by every credential check and every order: rendered once, run on the driver's cursor.
_ACCOUNT = Prepared(
    sa.select(accounts_t).where(
        accounts_t.c.kind == sa.bindparam("p_kind"), accounts_t.c.id == sa.bindparam("p_id")
    )
)


def read(conn: Connection, kind: Kind, account_id: str) -> AccountRecord | None:
    """The stored row of an account, None when it has none."""
    row = _ACCOUNT.first(conn, {"p_kind": kind, "p_id": account_id})
    return None if row is None else _record(row)


def get(engine: Engine, kind: Kind, account_id: str) -> AccountRecord:
    """An account's state (active and unverified when it has no row yet)."""
    with engine.connect() as conn:
        return read(conn, kind, account_id) or AccountRecord(kind, account_id)


def get_many(engine: Engine, kind: Kind, account_ids: Sequence[str]) -> dict[str, AccountRecord]:
    """The states of these accounts by id, read GET_MANY_CHUNK at a time (active and unverified for
    those without a row)."""
    found: dict[str, AccountRecord] = {}
    unique = sorted(set(account_ids))
    with engine.connect() as conn:
        for start in range(0, len(unique), GET_MANY_CHUNK):
            chunk = unique[start : start + GET_MANY_CHUNK]
            query = sa.select(accounts_t).where(accounts_t.c.kind == kind, accounts_t.c.id.in_(chunk))
            found.update((row.id, _record(row)) for row in conn.execute(query))
    return {i: found.get(i) or AccountRecord(kind, i) for i in unique}


def require_active(engine: Engine, kind: Kind, account_id: str) -> None:
    """Refuse (403 `account_suspended` / `account_closed`) new business for an account that is not
    active, whoever asks for it."""
    with engine.connect() as conn:
        require_active_in(conn, kind, account_id)


def require_active_in(conn: Connection, kind: Kind, account_id: str) -> None:
    """`require_active` on a connection the caller holds (read with other things in one trip)."""
    found = read(conn, kind, account_id)
    refused = None if found is None else refusal(found.status, f"{kind}:{account_id}")
    if refused is not None:
        raise refused


def list_records(engine: Engine, kind: Kind) -> dict[str, AccountRecord]:
    """Every stored account row of `kind`, by id."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(accounts_t).where(accounts_t.c.kind == kind))
        return {row.id: _record(row) for row in rows}


def add_event(
    conn: Connection, ts_ms: int, actor: str, kind: str, subject: str, action: str, detail: dict[str, Any]
) -> None:
    """Append one audit event (inside the change's transaction)."""
    conn.execute(
        sa.insert(events_t).values(
            ts_ms=ts_ms,
            actor=actor,
            kind=kind,
            subject=subject,
            action=action,
            detail=json.dumps(detail, sort_keys=True, separators=(",", ":")),
        )
    )


def record_event(
    engine: Engine, actor: str, kind: str, subject: str, action: str, detail: dict[str, Any], ts_ms: int
) -> None:
    """Append one audit event in its own transaction (changes made elsewhere: tokens, creation)."""
    with write_transaction(engine) as conn:
        add_event(conn, ts_ms, actor, kind, subject, action, detail)


def _ensure(conn: Connection, kind: Kind, account_id: str, now: int) -> AccountRecord:
    found = read(conn, kind, account_id)
    if found is not None:
        return found
    conn.execute(
        sa.insert(accounts_t).values(
            kind=kind,
            id=account_id,
            status="active",
            version=0,
            verification="unverified",
            created_ms=now,
            updated_ms=now,
        )
    )
    return AccountRecord(kind, account_id, created_ms=now, updated_ms=now)


def created(engine: Engine, kind: Kind, account_id: str, actor: str, now: int) -> AccountRecord:
    """Write a new account's row with its `create` event (nothing when it has a row already)."""
    with write_transaction(engine) as conn:
        found = read(conn, kind, account_id)
        if found is not None:
            return found
        record = _ensure(conn, kind, account_id, now)
        add_event(conn, now, actor, kind, account_id, "create", {})
        return record


def _set_status(
    conn: Connection, before: AccountRecord, after: Status, action: str, actor: str, now: int, reason: str
) -> AccountRecord:
    conn.execute(
        sa.update(accounts_t)
        .where(*_mine(before.kind, before.id))
        .values(status=after, version=before.version + 1, updated_ms=now)
    )
    detail = {"from": before.status, "to": after, "reason": reason}
    add_event(conn, now, actor, before.kind, before.id, action, detail)
    record = read(conn, before.kind, before.id)
    assert record is not None
    return record


def change(
    engine: Engine, kind: Kind, account_id: str, action: Action, actor: str, now: int, reason: str = ""
) -> AccountRecord:
    """Apply a lifecycle action (suspend, reinstate, close) with its audit event; AccountStateError
    when the account's status does not allow it (nothing changes)."""
    with write_transaction(engine) as conn:
        before = _ensure(conn, kind, account_id, now)
        return _set_status(conn, before, next_status(before.status, action), action, actor, now, reason)


def begin_close(engine: Engine, consumer: str, actor: str, now: int, reason: str = "") -> AccountRecord:
    """Mark a consumer's account `closing` (its `close` event says the status it leaves); unchanged
    when it is `closing` already, AccountStateError when it is closed."""
    with write_transaction(engine) as conn:
        before = _ensure(conn, "consumer", consumer, now)
        if before.status == "closing":
            return before
        next_status(before.status, "close")
        return _set_status(conn, before, "closing", "close", actor, now, reason)


def _status_before_closing(conn: Connection, consumer: str) -> Status:
    query = (
        sa.select(events_t.c.detail)
        .where(events_t.c.kind == "consumer", events_t.c.subject == consumer, events_t.c.action == "close")
        .order_by(events_t.c.seq.desc())
        .limit(1)
    )
    detail = json.loads(conn.execute(query).scalar_one_or_none() or "{}")
    found = detail.get("from")
    return cast(Status, found) if found in ("active", "suspended") else "suspended"


def end_close(
    engine: Engine, consumer: str, done: bool, actor: str, now: int, reason: str = ""
) -> AccountRecord:
    """Leave `closing`: `closed` when `done` (event `closed`), else back to the status the close left
    (event `close_undone`); unchanged when the account is not `closing` (another writer ended it)."""
    with write_transaction(engine) as conn:
        before = _ensure(conn, "consumer", consumer, now)
        if before.status != "closing":
            return before
        if done:
            return _set_status(conn, before, "closed", "closed", actor, now, reason)
        back = _status_before_closing(conn, consumer)
        return _set_status(conn, before, back, "close_undone", actor, now, reason)


def closing_since(engine: Engine, before_ms: int) -> list[str]:
    """Consumers left `closing` since before `before_ms` (a close that stopped half-way), by id."""
    query = (
        sa.select(accounts_t.c.id)
        .where(
            accounts_t.c.kind == "consumer",
            accounts_t.c.status == "closing",
            accounts_t.c.updated_ms < before_ms,
        )
        .order_by(accounts_t.c.id)
    )
    with engine.connect() as conn:
        return [row.id for row in conn.execute(query)]


def verify(
    engine: Engine, kind: Kind, account_id: str, verdict: str, actor: str, note: str, now: int
) -> AccountRecord:
    """Record the operator's real-name verification verdict (`verified` or `rejected`) with who and when."""
    with write_transaction(engine) as conn:
        before = _ensure(conn, kind, account_id, now)
        check_verifiable(before.status)
        conn.execute(
            sa.update(accounts_t)
            .where(*_mine(kind, account_id))
            .values(
                verification=verdict,
                verified_by=actor,
                verified_ms=now,
                verification_note=note or None,
                version=before.version + 1,
                updated_ms=now,
            )
        )
        add_event(conn, now, actor, kind, account_id, "verify", {"verdict": verdict, "note": note})
        record = read(conn, kind, account_id)
    assert record is not None
    return record


def events(
    engine: Engine, kind: str | None = None, subject: str | None = None, after: int = 0, limit: int = 100
) -> list[AccountEvent]:
    """Audit events in order (of one kind, of one subject, after sequence `after`)."""
    query = sa.select(events_t).where(events_t.c.seq > after)
    if kind is not None:
        query = query.where(events_t.c.kind == kind)
    if subject is not None:
        query = query.where(events_t.c.subject == subject)
    query = query.order_by(events_t.c.seq).limit(min(limit, MAX_EVENTS))
    with engine.connect() as conn:
        return [
            AccountEvent(r.seq, r.ts_ms, r.actor, r.kind, r.subject, r.action, json.loads(r.detail))
            for r in conn.execute(query)
        ]


# --- operator users ------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    """An operator user: name, role and lifecycle state (never its token)."""

    name: str
    role: str
    token_ms: int | None
    account: AccountRecord

    def view(self) -> dict[str, Any]:
        """What the API shows of a user."""
        return {**self.account.view(), "role": self.role, "token_ms": self.token_ms}


def _store_token(conn: Connection, name: str, now: int) -> str:
    for _ in range(_ID_ATTEMPTS):
        token_id = new_token_id()
        taken = conn.execute(sa.select(users_t.c.name).where(users_t.c.token_id == token_id)).first()
        if taken is None:
            token, digest = new_user_token(token_id)
            conn.execute(
                sa.update(users_t)
                .where(users_t.c.name == name)
                .values(token_id=token_id, secret_sha256=digest, token_ms=now)
            )
            return token
    raise RuntimeError(f"no free token id after {_ID_ATTEMPTS} attempts")


def create_user(engine: Engine, name: str, role: str, actor: str, now: int) -> tuple[str, User]:
    """A new operator user with its first token (shown once); AccountRequestError when the name is taken."""
    with write_transaction(engine) as conn:
        if conn.execute(sa.select(users_t.c.name).where(users_t.c.name == name)).first() is not None:
            raise AccountRequestError(f"user {name!r} exists already", code="user_exists")
        conn.execute(sa.insert(users_t).values(name=name, role=role))
        record = _ensure(conn, "user", name, now)
        token = _store_token(conn, name, now)
        add_event(conn, now, actor, "user", name, "create", {"role": role})
    return token, User(name, role, now, record)


def new_user_token_for(engine: Engine, name: str, actor: str, now: int) -> str:
    """Replace a user's token (the old one stops working at once); the new token, shown once."""
    with write_transaction(engine) as conn:
        if conn.execute(sa.select(users_t.c.name).where(users_t.c.name == name)).first() is None:
            raise UnknownAccountError(f"no user {name!r}", code="unknown_user")
        record = read(conn, "user", name)
        if record is not None and record.status == "closed":
            raise AccountRequestError(f"user {name!r} is closed", code="account_closed")
        token = _store_token(conn, name, now)
        add_event(conn, now, actor, "user", name, "token", {})
    return token


def _user_query() -> sa.Select[Any]:
    return sa.select(users_t, accounts_t).join(
        accounts_t, sa.and_(accounts_t.c.kind == "user", accounts_t.c.id == users_t.c.name)
    )


def _user(row: Any) -> User:
    return User(row.name, row.role, row.token_ms, _record(row))


def get_user(engine: Engine, name: str) -> User | None:
    """One user, None when there is none of that name."""
    with engine.connect() as conn:
        row = conn.execute(_user_query().where(users_t.c.name == name)).first()
    return None if row is None else _user(row)


def list_users(engine: Engine) -> list[User]:
    """Every user by name."""
    with engine.connect() as conn:
        return [_user(row) for row in conn.execute(_user_query().order_by(users_t.c.name))]


def user_of(engine: Engine, token: str) -> User | None:
    """The user a bearer token authenticates (whatever its status), None when the token is
    malformed, unknown, replaced or its secret is wrong."""
    parsed = parse_user_token(token)
    if parsed is None:
        return None
    token_id, secret = parsed
    with engine.connect() as conn:
        row = conn.execute(_user_query().where(users_t.c.token_id == token_id)).first()
    matches = secret_matches(secret, _NO_DIGEST if row is None else row.secret_sha256)
    return None if row is None or not matches else _user(row)
