"""The write path's SQL, assembled once from the column constants (no outside input reaches these
strings). Placeholders are `?` (the write path's cursor turns them into `%s` for psycopg); `{in}`
stands for membership in a key set (see `ledger.store.db.Cursor.select_in`).

PostgreSQL gets a batch's rows as one JSONB parameter (orjson encodes it in C; psycopg would dump
arrays element by element in Python, which at group-commit batch sizes costs more than the rules),
and writes transfers, balances and the head in one statement (data-modifying CTEs, see
`ledger.store.writer`).
"""

from __future__ import annotations

from ledger.store.db import PG_IN_JSON
from ledger.store.schema import TRANSFER_COLUMNS

COLUMNS = ", ".join(TRANSFER_COLUMNS)
ACCOUNT_COLUMNS = (
    "a.id, a.currency, a.kind, a.debits_must_not_exceed_credits, a.credits_must_not_exceed_debits, "
    "a.partner, a.closed_seq, b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted, b.num"
)
# Stored transfers by id, each with the kind of the transfer that resolved it (when it is a resolved hold).
SELECT_TRANSFERS = (
    f"SELECT {COLUMNS}, (SELECT r.kind FROM ledger_transfers AS r WHERE r.pending_id = t.id) "  # noqa: S608
    "FROM ledger_transfers AS t WHERE t.id {in}"
)
# Accounts with their balances (PostgreSQL locks both rows, in id order).
SELECT_ACCOUNTS = (
    f"SELECT {ACCOUNT_COLUMNS} FROM ledger_accounts AS a "  # noqa: S608
    "JOIN ledger_balances AS b ON b.num = a.num WHERE a.id {in}"
)
SELECT_ACCOUNTS_PG = SELECT_ACCOUNTS + " ORDER BY a.id FOR UPDATE"
# For accounts whose spec is cached (SQLite), only what changes.
SELECT_BALANCES = (
    "SELECT a.id, a.closed_seq, b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted, "
    "b.num FROM ledger_accounts AS a JOIN ledger_balances AS b ON b.num = a.num WHERE a.id {in}"
)
# Which of a batch's ids are stored or remembered as failed, in one statement.
SELECT_KNOWN_IDS = (
    "SELECT t.id, NULL FROM json_each(?1) AS k JOIN ledger_transfers AS t ON t.id = k.value UNION ALL "
    "SELECT f.id, f.status FROM json_each(?1) AS k JOIN ledger_failures AS f ON f.id = k.value"
)
SELECT_KNOWN_IDS_PG = (
    f"SELECT id, NULL FROM ledger_transfers WHERE id {PG_IN_JSON} "  # noqa: S608 - constants
    f"UNION ALL SELECT id, status FROM ledger_failures WHERE id {PG_IN_JSON}"
)
INSERT_TRANSFER = (
    f"INSERT INTO ledger_transfers ({COLUMNS}) VALUES ({', '.join('?' * len(TRANSFER_COLUMNS))})"  # noqa: S608
)
UPDATE_BALANCES = (
    "UPDATE ledger_balances SET debits_pending = ?, debits_posted = ?, credits_pending = ?, "
    "credits_posted = ? WHERE num = ?"
)
SELECT_DUE_HOLDS = (
    f"SELECT {COLUMNS} FROM ledger_transfers AS h WHERE h.kind = 'pending' "  # noqa: S608
    "AND h.expires_ms IS NOT NULL AND h.expires_ms > ? AND h.expires_ms <= ? "
    "AND NOT EXISTS (SELECT 1 FROM ledger_transfers AS r WHERE r.pending_id = h.id) "
    "ORDER BY h.expires_ms, h.seq LIMIT ?"
)
PG_COLUMN_TYPES = (
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
INSERT_TRANSFERS_PG = (
    f"INSERT INTO ledger_transfers ({COLUMNS}) SELECT "  # noqa: S608 - constants
    + ", ".join(f"(r->>{n})::{kind}" for n, kind in enumerate(PG_COLUMN_TYPES))
    + " FROM jsonb_array_elements(?::jsonb) AS r"
)
UPDATE_BALANCES_PG = (
    "UPDATE ledger_balances AS b SET debits_pending = v.dp, debits_posted = v.dpo, "
    "credits_pending = v.cp, credits_posted = v.cpo FROM ("
    "SELECT (u->>0)::bigint AS num, (u->>1)::bigint AS dp, (u->>2)::bigint AS dpo, "
    "(u->>3)::bigint AS cp, (u->>4)::bigint AS cpo FROM jsonb_array_elements(?::jsonb) AS u "
    "ORDER BY 1) AS v WHERE b.num = v.num"
)
ADVANCE_HEAD = "UPDATE ledger_head SET next_seq = ?, last_ts_ms = ?, version = version + 1 WHERE id = 1"

# A batch written in one round trip on what the writer's cache holds (ledger.store.writer): every
# write below happens only if `ok` has its row, i.e. the head (locked by an earlier statement) is
# still the one the cache was left at, no later time has been stamped, and none of the batch's ids
# is stored or remembered as failed; the statement answers how many rows `ok` has (0 or 1).
GUARD_PG = (
    "ok AS (SELECT 1 FROM ledger_head WHERE id = 1 AND version = ? AND next_seq = ? "  # noqa: S608 - constants
    f"AND last_ts_ms <= ? AND NOT EXISTS (SELECT 1 FROM ledger_transfers WHERE id {PG_IN_JSON}) "
    f"AND NOT EXISTS (SELECT 1 FROM ledger_failures WHERE id {PG_IN_JSON}))"
)
IF_OK = " EXISTS (SELECT 1 FROM ok)"
INSERT_FAILURES_PG_IF_OK = (
    "INSERT INTO ledger_failures (id, status, field, ts_ms) SELECT f->>0, f->>1, f->>2, (f->>3)::bigint "
    "FROM jsonb_array_elements(?::jsonb) AS f WHERE" + IF_OK
)
UPDATE_BALANCES_PG_IF_OK = UPDATE_BALANCES_PG + " AND" + IF_OK
ADVANCE_HEAD_IF_OK = ADVANCE_HEAD + " AND" + IF_OK
INSERT_TRANSFERS_PG_IF_OK = INSERT_TRANSFERS_PG + " WHERE" + IF_OK
