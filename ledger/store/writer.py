"""The write path: a batch of transfer requests becomes one database transaction.

Per batch: lock the head row (dense sequence numbers, monotonic time), load what the batch touches
with a few IN queries (its ids, the holds it resolves, its accounts, which PostgreSQL locks in id
order), run the pure rules, then write new transfers, remembered failures and account balances
with executemany, and advance the head. The expiry sweeper goes through the same path.

This is the hot path, so it speaks to the driver's cursor directly (qmark for sqlite3, format for
psycopg) instead of building SQLAlchemy statements per batch; the transaction itself is still the
SQLAlchemy connection's (SQLite BEGIN IMMEDIATE via `cpnode_write`).

Cache: the head row carries a `version` that every write touching balances, holds or account
state increments. Each engine keeps the accounts and holds its last committed batch saw, tagged
with the version it left behind. A batch that finds the head (read under its lock) at that same
version knows nobody else wrote since, so it reuses those balances and hold states instead of
reading them again; any other version (another process or thread wrote), an error, or a
rollback drops the cache.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy.engine import Connection, Engine

from ledger.errors import RequestError
from ledger.holds import STATE_AFTER, HoldState
from ledger.records import (
    AccountKind,
    AccountSpec,
    Balance,
    Status,
    Transfer,
    TransferKind,
    TransferRequest,
    TransferResult,
)
from ledger.rules import apply_batch, expire_holds
from ledger.store.db import IN_CHUNK, gc_paused, now_ms, with_retries, write_transaction
from ledger.store.schema import TRANSFER_COLUMNS
from ledger.view import AccountState, BatchOutcome, LedgerView

MAX_BATCH = 10_000
_COLUMNS = ", ".join(TRANSFER_COLUMNS)
_ACCOUNT_COLUMNS = (
    "id, currency, kind, debits_must_not_exceed_credits, credits_must_not_exceed_debits, partner, "
    "closed_seq, debits_pending, debits_posted, credits_pending, credits_posted"
)
# SQL assembled once from the column constants above (no outside input reaches these strings).
# Stored transfers by id, each with the kind of the transfer that resolved it (when it is a resolved hold).
_SELECT_TRANSFERS = (
    f"SELECT {_COLUMNS}, (SELECT r.kind FROM ledger_transfers AS r WHERE r.pending_id = t.id) "  # noqa: S608
    "FROM ledger_transfers AS t WHERE t.id {in}"
)
_SELECT_ACCOUNTS = f"SELECT {_ACCOUNT_COLUMNS} FROM ledger_accounts WHERE id {{in}}"  # noqa: S608
# For accounts whose spec is cached, only what changes.
_SELECT_BALANCES = (
    "SELECT id, closed_seq, debits_pending, debits_posted, credits_pending, credits_posted "
    "FROM ledger_accounts WHERE id {in}"
)
# Which of a batch's ids are stored or remembered as failed, in one statement.
_SELECT_KNOWN_IDS = "SELECT id, NULL FROM ledger_transfers WHERE id {in} UNION ALL SELECT id, status FROM ledger_failures WHERE id {in}"
_INSERT_TRANSFER = (
    f"INSERT INTO ledger_transfers ({_COLUMNS}) VALUES ({', '.join('?' * len(TRANSFER_COLUMNS))})"  # noqa: S608
)
_SELECT_DUE_HOLDS = (
    f"SELECT {_COLUMNS} FROM ledger_transfers AS h WHERE h.kind = 'pending' "  # noqa: S608
    "AND h.expires_ms IS NOT NULL AND h.expires_ms > ? AND h.expires_ms <= ? "
    "AND NOT EXISTS (SELECT 1 FROM ledger_transfers AS r WHERE r.pending_id = h.id) "
    "ORDER BY h.expires_ms, h.seq LIMIT ?"
)
_PG_COLUMN_TYPES = (
    "bigint",
    "text",
    "text",
    "text",
    "text",
    "text",
    "bigint",
    "text",
    "bigint",
    "bigint",
    "bigint",
    "integer",
    "boolean",
    "bigint",
    "text",
    "text",
    "text",
    "text",
)
_INSERT_TRANSFERS_PG = (
    f"INSERT INTO ledger_transfers ({_COLUMNS}) SELECT * FROM unnest("  # noqa: S608 - constants
    + ", ".join(f"?::{kind}[]" for kind in _PG_COLUMN_TYPES)
    + ")"
)
_UPDATE_BALANCES_PG = (
    "UPDATE ledger_accounts AS a SET debits_pending = v.dp, debits_posted = v.dpo, "
    "credits_pending = v.cp, credits_posted = v.cpo FROM ("
    "SELECT * FROM unnest(?::text[], ?::bigint[], ?::bigint[], ?::bigint[], ?::bigint[]) "
    "AS u(id, dp, dpo, cp, cpo) ORDER BY id) AS v WHERE a.id = v.id"
)
# Account specs never change once created, so each engine keeps the ones it has read.
_SPECS: weakref.WeakKeyDictionary[Engine, dict[str, AccountSpec]] = weakref.WeakKeyDictionary()
MAX_CACHED_ACCOUNTS = 1_000_000
MAX_CACHED_HOLDS = 100_000


@dataclass
class _AccountCache:
    version: int
    states: dict[str, AccountState]
    holds: dict[str, tuple[Transfer, HoldState]] = field(default_factory=dict)  # by pending id


_CACHES: weakref.WeakKeyDictionary[Engine, _AccountCache] = weakref.WeakKeyDictionary()


class Head(NamedTuple):
    """The locked head row."""

    next_seq: int  # the log's size
    last_ts_ms: int
    swept_ms: int  # every hold with a deadline up to here is resolved
    version: int  # bumped by every write that changes balances or account state


class Cursor:
    """The driver cursor of a SQLAlchemy connection, with the dialect's placeholders and IN lists."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        self.p = "%s" if self.postgres else "?"
        self.cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (empty for statements without any)."""
        self.cursor.execute(sql.replace("?", self.p) if self.postgres else sql, params)
        return list(self.cursor.fetchall()) if self.cursor.description else []

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each row of parameters."""
        if rows:
            self.cursor.executemany(sql.replace("?", self.p) if self.postgres else sql, rows)

    def select_in(self, sql: str, keys: Iterable[str]) -> list[tuple[Any, ...]]:
        """Run `sql` with each `{in}` standing for membership in `keys`: one array parameter on
        PostgreSQL, chunks of bound parameters on SQLite."""
        ordered = list(keys)
        if not ordered:
            return []
        uses = sql.count("{in}")
        if self.postgres:
            return self.execute(sql.replace("{in}", "= ANY(?)"), [ordered] * uses)
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(ordered), IN_CHUNK):
            part = ordered[start : start + IN_CHUNK]
            rows.extend(self.execute(sql.replace("{in}", f"IN ({','.join('?' * len(part))})"), part * uses))
        return rows


def transfer_from_tuple(row: Sequence[Any]) -> Transfer:
    """A Transfer from a `SELECT <every transfer column>` row."""
    return Transfer._make((row[0], row[1], TransferKind(row[2]), *row[3:12], bool(row[12]), *row[13:18]))


def lock_head(cur: Cursor) -> Head:
    """Lock the head row (first, in every writer, so writers never wait on each other in a cycle)."""
    sql = "SELECT next_seq, last_ts_ms, swept_ms, version FROM ledger_head WHERE id = 1"
    if cur.postgres:
        # Every lookup of a write transaction is by key: never let a table without statistics yet
        # (a young ledger, before autovacuum's first ANALYZE) be scanned whole. Same round trip.
        cur.cursor.execute("SET LOCAL enable_seqscan = off; " + sql + " FOR UPDATE")
        cur.cursor.nextset()  # the SET's result comes first
        [row] = cur.cursor.fetchall()
    else:
        [row] = cur.execute(sql)
    return Head(*(int(value) for value in row))


def load_accounts(cur: Cursor, states: dict[str, AccountState], ids: Iterable[str]) -> None:
    """Read the accounts among `ids` that `states` lacks into it (on PostgreSQL locking them in id order)."""
    specs = _SPECS.setdefault(cur.conn.engine, {})
    wanted = {account_id for account_id in ids if account_id not in states}
    if cur.postgres:
        known: list[str] = []
        unknown = wanted
        suffix = " ORDER BY id FOR UPDATE"
    else:  # SQLite: the file lock is held; read only balances of accounts whose spec is cached
        known = [account_id for account_id in wanted if account_id in specs]
        unknown = wanted.difference(known)
        suffix = ""
    for account_id, closed, dp, dpo, cp, cpo in cur.select_in(_SELECT_BALANCES, known):
        states[account_id] = AccountState(specs[account_id], Balance(dp, dpo, cp, cpo), closed)
    for (
        account_id,
        currency,
        kind,
        limit_debits,
        limit_credits,
        partner,
        closed,
        dp,
        dpo,
        cp,
        cpo,
    ) in cur.select_in(_SELECT_ACCOUNTS + suffix, unknown):
        spec = specs.get(account_id)
        if spec is None:
            spec = specs[account_id] = AccountSpec(
                account_id, currency, AccountKind(kind), bool(limit_debits), bool(limit_credits), partner
            )
        states[account_id] = AccountState(spec, Balance(dp, dpo, cp, cpo), closed)


def hold_states(cur: Cursor, pending_ids: Iterable[str]) -> dict[str, HoldState]:
    """The state of each stored hold: pending unless a transfer resolves it (the resolve-once index)."""
    ids = list(pending_ids)
    states = dict.fromkeys(ids, HoldState.PENDING)
    for pending_id, kind in cur.select_in(
        "SELECT pending_id, kind FROM ledger_transfers WHERE pending_id {in}", ids
    ):
        states[pending_id] = STATE_AFTER[TransferKind(kind)]
    return states


def load_view(
    cur: Cursor,
    requests: Sequence[TransferRequest],
    accounts: dict[str, AccountState],
    holds: dict[str, tuple[Transfer, HoldState]] | None = None,
) -> LedgerView:
    """Read (and on PostgreSQL lock) everything `requests` can touch; `accounts` and `holds` hold what
    is known already (a valid cache)."""
    view = LedgerView(accounts=accounts)
    ids: set[str] = set()
    pending_ids: set[str] = set()
    account_ids: set[str] = set()
    for r in requests:  # built from JSON: any field may hold any type, so keep only strings
        if type(r.id) is str:
            ids.add(r.id)
        if type(r.pending_id) is str:
            pending_ids.add(r.pending_id)
        if type(r.debit_account) is str:
            account_ids.add(r.debit_account)
        if type(r.credit_account) is str:
            account_ids.add(r.credit_account)
    stored = set(pending_ids)
    for pending_id in pending_ids.intersection(holds or ()):
        assert holds is not None
        hold, state = holds[pending_id]
        view.transfers[pending_id] = hold
        view.holds[pending_id] = state
        account_ids.add(hold.debit_account)
        account_ids.add(hold.credit_account)
        stored.discard(pending_id)
    for known_id, status in cur.select_in(_SELECT_KNOWN_IDS, ids):
        if status is None:
            stored.add(known_id)
        else:
            view.failed[known_id] = Status(status)
    for row in cur.select_in(_SELECT_TRANSFERS, stored):
        transfer = transfer_from_tuple(row)
        view.transfers[transfer.id] = transfer
        if transfer.kind is TransferKind.PENDING:
            resolved_by = row[len(TRANSFER_COLUMNS)]
            view.holds[transfer.id] = (
                HoldState.PENDING if resolved_by is None else STATE_AFTER[TransferKind(resolved_by)]
            )
            if transfer.id in pending_ids:
                account_ids.add(transfer.debit_account)
                account_ids.add(transfer.credit_account)
    load_accounts(cur, accounts, account_ids)
    return view


def persist(cur: Cursor, view: LedgerView, outcome: BatchOutcome, next_seq: int, ts_ms: int) -> None:
    """Write a batch's outcome: transfers, failures, balances, and the new head."""
    created = outcome.created
    if created:
        # Plain values bind on the drivers' fast paths (a StrEnum or a bool makes sqlite3 search for an
        # adapter on every row).
        if cur.postgres:  # one statement: the rows as columns of arrays, unnested
            arrays = [list(column) for column in zip(*created, strict=True)]
            arrays[2] = [kind.value for kind in arrays[2]]
            cur.execute(_INSERT_TRANSFERS_PG, arrays)
        else:
            rows = [(t[0], t[1], t[2].value, *t[3:12], int(t[12]), *t[13:]) for t in created]
            cur.executemany(_INSERT_TRANSFER, rows)
    if outcome.failures:
        cur.executemany(
            "INSERT INTO ledger_failures (id, status, field, ts_ms) VALUES (?, ?, ?, ?)",
            [(f.id, f.status.value, f.field, ts_ms) for f in outcome.failures],
        )
    accounts = view.accounts
    if cur.postgres:
        # One statement for every balance (arrays unnested), rows locked in id order.
        touched = sorted(outcome.touched)
        if touched:
            columns: list[list[Any]] = [touched, [], [], [], []]
            for account_id in touched:
                b = accounts[account_id].balance
                columns[1].append(b.debits_pending)
                columns[2].append(b.debits_posted)
                columns[3].append(b.credits_pending)
                columns[4].append(b.credits_posted)
            cur.execute(_UPDATE_BALANCES_PG, columns)
    else:
        balances = []
        for account_id in outcome.touched:
            b = accounts[account_id].balance
            balances.append(
                (b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted, account_id)
            )
        cur.executemany(
            "UPDATE ledger_accounts SET debits_pending = ?, debits_posted = ?, credits_pending = ?, "
            "credits_posted = ? WHERE id = ?",
            balances,
        )
    if created:
        cur.execute(
            "UPDATE ledger_head SET next_seq = ?, last_ts_ms = ?, version = version + 1 WHERE id = 1",
            (next_seq + len(created), ts_ms),
        )


def submit(
    engine: Engine, requests: Sequence[TransferRequest], *, now: int | None = None
) -> list[TransferResult]:
    """Apply a batch of transfer requests in one transaction; one result per request, in order."""
    if len(requests) > MAX_BATCH:
        raise RequestError(f"a batch holds at most {MAX_BATCH} transfers, got {len(requests)}")
    if not requests:
        return []

    def attempt() -> list[TransferResult]:
        cache = _CACHES.pop(engine, None)  # taken out: a failure below leaves no cache behind
        with write_transaction(engine) as conn:
            cur = Cursor(conn)
            head = lock_head(cur)
            if cache is None or cache.version != head.version or len(cache.states) > MAX_CACHED_ACCOUNTS:
                cache = _AccountCache(head.version, {})
            ts_ms = max(now_ms() if now is None else now, head.last_ts_ms)
            view = load_view(cur, requests, cache.states, cache.holds)
            outcome = apply_batch(view, requests, ts_ms, head.next_seq)
            persist(cur, view, outcome, head.next_seq, ts_ms)
        # Committed: the cached balances and holds are now those of version + 1 (or unchanged if
        # nothing was created).
        cache.version = head.version + (1 if outcome.created else 0)
        if len(cache.holds) > MAX_CACHED_HOLDS:
            cache.holds.clear()
        for hold_id, state in view.holds.items():
            cache.holds[hold_id] = (view.transfers[hold_id], state)
        _CACHES[engine] = cache
        return outcome.results

    with gc_paused():
        return with_retries(attempt, f"batch of {len(requests)} transfer(s)")


def expire_due(engine: Engine, *, now: int | None = None, limit: int = 1_000) -> list[Transfer]:
    """Expire up to `limit` holds whose deadline has come; return the expiry transfers written.

    Holds are found by deadline above the sweep watermark; after a run every hold with a deadline
    up to the new watermark is resolved, and the head's time is moved up to it, so a hold created
    later always has its deadline above it."""

    def attempt() -> list[Transfer]:
        with write_transaction(engine) as conn:
            cur = Cursor(conn)
            head = lock_head(cur)
            ts_ms = max(now_ms() if now is None else now, head.last_ts_ms)
            rows = cur.execute(_SELECT_DUE_HOLDS, (head.swept_ms, ts_ms, limit))
            holds = [transfer_from_tuple(row) for row in rows]
            last_deadline = holds[-1].expires_ms if holds else None
            watermark = (
                ts_ms
                if len(holds) < limit or last_deadline is None
                else max(head.swept_ms, last_deadline - 1)
            )
            view = LedgerView(holds={hold.id: HoldState.PENDING for hold in holds})
            view.transfers.update((hold.id, hold) for hold in holds)
            load_accounts(
                cur, view.accounts, {a for hold in holds for a in (hold.debit_account, hold.credit_account)}
            )
            outcome = expire_holds(view, holds, ts_ms, head.next_seq)
            persist(cur, view, outcome, head.next_seq, ts_ms)
            cur.execute(
                "UPDATE ledger_head SET swept_ms = ?, last_ts_ms = ? WHERE id = 1",
                (watermark, max(ts_ms, watermark)),
            )
            return outcome.created

    with gc_paused():
        return with_retries(attempt, "expiry sweep")
