"""The baseline of the group-commit benchmark: a PostgreSQL-only ledger built like pgledger, and the
same design on plain sqlite3.

pgledger (github.com/pgr0ss/pgledger) keeps accounts with a running balance and a version, and
records each transfer through a SQL function, one transaction per transfer: it locks the accounts'
rows (`SELECT ... FOR UPDATE`, in id order, so concurrent transfers never deadlock), updates the
debit account (balance − amount, version + 1) and checks its balance rules, updates the credit
account the same way, checks the currencies match, inserts the transfer and one entry per account
(each entry recording the balance before and after and the account version), and returns the
transfer. The one-transfer function wraps its arguments in an array and calls the many-transfer
function, which collects and sorts the accounts, locks them, then loops over the transfers. Ids are
made in the database for every row: a time-ordered UUID (version 7, after checking whether the
server has `uuidv7()`), written as a ULID in base32, after a type prefix. Its own performance check
calls the one-transfer function from concurrent workers, one transfer per call.

This module reproduces that design with SQL written here (none of pgledger's code): the same
tables (accounts; transfers with foreign keys to both accounts, a positive-amount and different-
accounts check and indexes on both accounts and the event time; entries with foreign keys and
indexes on account and transfer), the same functions and statements per transfer, called once per
transaction, the same locking, and ids made the same way (UUIDv7 layout from the clock and a random
UUID, base32 in PL/pgSQL). One difference: amounts and balances are NUMERIC minor units instead of
MONEY.

The SQLite baseline runs the same statements per transfer from Python's sqlite3 in one
`BEGIN IMMEDIATE` transaction each (SQLite locks the database, not rows), WAL and synchronous=FULL
like the ledger's engine.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

PG_SCHEMA = """
CREATE TABLE bl_accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    currency TEXT NOT NULL,
    balance NUMERIC NOT NULL DEFAULT 0,
    version BIGINT NOT NULL DEFAULT 0,
    allow_negative_balance BOOLEAN NOT NULL,
    allow_positive_balance BOOLEAN NOT NULL,
    metadata JSONB,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE bl_transfers (
    id TEXT PRIMARY KEY,
    from_account_id TEXT NOT NULL REFERENCES bl_accounts (id),
    to_account_id TEXT NOT NULL REFERENCES bl_accounts (id),
    amount NUMERIC NOT NULL CHECK (amount > 0),
    created_at TIMESTAMPTZ NOT NULL,
    event_at TIMESTAMPTZ NOT NULL,
    metadata JSONB,
    CHECK (from_account_id <> to_account_id)
);
CREATE INDEX bl_transfers_from ON bl_transfers (from_account_id);
CREATE INDEX bl_transfers_to ON bl_transfers (to_account_id);
CREATE INDEX bl_transfers_event ON bl_transfers (event_at);
CREATE TABLE bl_entries (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES bl_accounts (id),
    transfer_id TEXT NOT NULL REFERENCES bl_transfers (id),
    amount NUMERIC NOT NULL,
    account_previous_balance NUMERIC NOT NULL,
    account_current_balance NUMERIC NOT NULL,
    account_version BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX bl_entries_account ON bl_entries (account_id);
CREATE INDEX bl_entries_transfer ON bl_entries (transfer_id);

CREATE FUNCTION bl_base32(raw BYTEA) RETURNS TEXT LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    digits CONSTANT TEXT := '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
    pending BIGINT := 0;
    width INT := 2;  -- two zero bits in front: 130 bits are 26 digits of 5 bits
    result TEXT := '';
BEGIN
    FOR i IN 0 .. length(raw) - 1 LOOP
        pending := (pending << 8) | get_byte(raw, i);
        width := width + 8;
        WHILE width >= 5 LOOP
            width := width - 5;
            result := result || substr(digits, ((pending >> width) & 31)::INT + 1, 1);
        END LOOP;
        pending := pending & ((1::BIGINT << width) - 1);
    END LOOP;
    RETURN result;
END $$;

CREATE FUNCTION bl_time_uuid() RETURNS UUID LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    micros BIGINT := (extract(epoch FROM clock_timestamp()) * 1000000)::BIGINT;
    raw BYTEA := uuid_send(gen_random_uuid());
    made UUID;
BEGIN
    IF EXISTS (SELECT FROM pg_proc WHERE proname = 'uuidv7') THEN  -- PostgreSQL 18 has its own
        EXECUTE 'SELECT uuidv7()' INTO made;
        RETURN made;
    END IF;
    -- version-7 layout: Unix milliseconds in 48 bits, then the sub-millisecond part, then random
    raw := overlay(raw PLACING substring(int8send(micros / 1000) FROM 3) FROM 1 FOR 6);
    raw := set_byte(raw, 6, 112 | ((micros % 1000) >> 6)::INT);
    raw := set_byte(raw, 7, (((micros % 1000) & 63) << 2)::INT);
    RETURN encode(raw, 'hex')::UUID;
END $$;

CREATE FUNCTION bl_new_id(kind TEXT) RETURNS TEXT LANGUAGE sql VOLATILE AS $$
    SELECT kind || '_' || bl_base32(uuid_send(bl_time_uuid()))
$$;

CREATE FUNCTION bl_check_balance(a bl_accounts) RETURNS VOID LANGUAGE plpgsql AS $$
BEGIN
    IF a.balance < 0 AND NOT a.allow_negative_balance THEN
        RAISE EXCEPTION 'account % may not go negative', a.id;
    END IF;
    IF a.balance > 0 AND NOT a.allow_positive_balance THEN
        RAISE EXCEPTION 'account % may not go positive', a.id;
    END IF;
END $$;

CREATE TYPE bl_request AS (debit TEXT, credit TEXT, value NUMERIC);

CREATE FUNCTION bl_transfers(requests bl_request[]) RETURNS SETOF bl_transfers LANGUAGE plpgsql AS $$
DECLARE
    r bl_request;
    src bl_accounts;
    dst bl_accounts;
    touched TEXT[] := '{}';
    account TEXT;
    made TEXT;
    made_ids TEXT[] := '{}';
BEGIN
    FOREACH r IN ARRAY requests LOOP
        touched := touched || r.debit || r.credit;
    END LOOP;
    -- every account of the call locked first, each once, in id order: no deadlocks between calls
    FOREACH account IN ARRAY ARRAY(SELECT DISTINCT a FROM unnest(touched) AS a ORDER BY a) LOOP
        PERFORM 1 FROM bl_accounts WHERE id = account FOR UPDATE;
    END LOOP;
    FOREACH r IN ARRAY requests LOOP
        IF r.value <= 0 THEN
            RAISE EXCEPTION 'amount % must be positive', r.value;
        END IF;
        IF r.debit = r.credit THEN
            RAISE EXCEPTION 'a transfer needs two accounts, got % twice', r.debit;
        END IF;
        UPDATE bl_accounts SET balance = balance - r.value, version = version + 1, updated_at = now()
            WHERE id = r.debit RETURNING * INTO src;
        PERFORM bl_check_balance(src);
        UPDATE bl_accounts SET balance = balance + r.value, version = version + 1, updated_at = now()
            WHERE id = r.credit RETURNING * INTO dst;
        PERFORM bl_check_balance(dst);
        IF src.currency <> dst.currency THEN
            RAISE EXCEPTION 'currencies differ: % and %', src.currency, dst.currency;
        END IF;
        made := bl_new_id('blt');
        INSERT INTO bl_transfers (id, from_account_id, to_account_id, amount, created_at, event_at)
            VALUES (made, r.debit, r.credit, r.value, now(), now());
        made_ids := made_ids || made;
        INSERT INTO bl_entries VALUES
            (bl_new_id('ble'), r.debit, made, -r.value, src.balance + r.value, src.balance, src.version, now());
        INSERT INTO bl_entries VALUES
            (bl_new_id('ble'), r.credit, made, r.value, dst.balance - r.value, dst.balance, dst.version, now());
    END LOOP;
    RETURN QUERY SELECT * FROM bl_transfers WHERE id = ANY(made_ids) ORDER BY id;
END $$;

CREATE FUNCTION bl_transfer(debit TEXT, credit TEXT, value NUMERIC) RETURNS SETOF bl_transfers
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT * FROM bl_transfers(ARRAY[(debit, credit, value)::bl_request]);
END $$;
"""

SQLITE_SCHEMA = """
CREATE TABLE bl_accounts (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, currency TEXT NOT NULL, balance INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 0, allow_negative_balance INTEGER NOT NULL,
    allow_positive_balance INTEGER NOT NULL, metadata TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE TABLE bl_transfers (
    id TEXT PRIMARY KEY,
    from_account_id TEXT NOT NULL REFERENCES bl_accounts (id),
    to_account_id TEXT NOT NULL REFERENCES bl_accounts (id),
    amount INTEGER NOT NULL CHECK (amount > 0), created_at TEXT NOT NULL, event_at TEXT NOT NULL,
    metadata TEXT, CHECK (from_account_id <> to_account_id)
);
CREATE INDEX bl_transfers_from ON bl_transfers (from_account_id);
CREATE INDEX bl_transfers_to ON bl_transfers (to_account_id);
CREATE INDEX bl_transfers_event ON bl_transfers (event_at);
CREATE TABLE bl_entries (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES bl_accounts (id),
    transfer_id TEXT NOT NULL REFERENCES bl_transfers (id),
    amount INTEGER NOT NULL, account_previous_balance INTEGER NOT NULL,
    account_current_balance INTEGER NOT NULL, account_version INTEGER NOT NULL, created_at TEXT NOT NULL
);
CREATE INDEX bl_entries_account ON bl_entries (account_id);
CREATE INDEX bl_entries_transfer ON bl_entries (transfer_id);
"""
_SQLITE_UPDATE = (
    "UPDATE bl_accounts SET balance = balance + ?, version = version + 1, updated_at = ? WHERE id = ? "
    "RETURNING balance, version, currency, allow_negative_balance, allow_positive_balance"
)


def account_ids(count: int) -> list[str]:
    """The ids of the benchmark's accounts (the same on every side)."""
    return [f"acct-{n}" for n in range(count)]


def pg_setup(conn: Any, accounts: int) -> None:
    """Create the baseline's tables and functions on a psycopg connection (autocommit), and
    `accounts` accounts that may go negative or positive (like the ledger side's provider accounts)."""
    with conn.transaction():
        conn.execute(PG_SCHEMA)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO bl_accounts (id, name, currency, allow_negative_balance, allow_positive_balance, "
                "created_at, updated_at) VALUES (%s, %s, 'CNY', true, true, now(), now())",
                [(account, account) for account in account_ids(accounts)],
            )


def pg_transfer(conn: Any, debit: str, credit: str, value: int) -> object:
    """One call of the baseline's one-transfer function (autocommit: a transaction of its own)."""
    return conn.execute("SELECT id FROM bl_transfer(%s, %s, %s)", (debit, credit, value)).fetchone()


def sqlite_setup(conn: sqlite3.Connection, accounts: int) -> None:
    """The same tables and accounts in a fresh SQLite database (`conn` in autocommit mode); closes it."""
    conn.executescript(SQLITE_SCHEMA)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO bl_accounts VALUES (?, ?, 'CNY', 0, 0, 1, 1, NULL, ?, ?)",
        [(account, account, now, now) for account in account_ids(accounts)],
    )
    conn.execute("COMMIT")
    conn.close()


def sqlite_transfer(conn: sqlite3.Connection, debit: str, credit: str, value: int) -> str:
    """One transfer, one transaction: what `bl_transfer` does, on SQLite."""
    if value <= 0 or debit == credit:
        raise ValueError("a transfer needs a positive amount and two accounts")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    conn.execute("BEGIN IMMEDIATE")
    try:
        src = conn.execute(_SQLITE_UPDATE, (-value, now, debit)).fetchone()
        if (src[0] < 0 and not src[3]) or (src[0] > 0 and not src[4]):
            raise ValueError(f"account {debit} breaks its balance rule")
        dst = conn.execute(_SQLITE_UPDATE, (value, now, credit)).fetchone()
        if (dst[0] < 0 and not dst[3]) or (dst[0] > 0 and not dst[4]):
            raise ValueError(f"account {credit} breaks its balance rule")
        if src[2] != dst[2]:
            raise ValueError("currencies differ")
        made = f"blt_{uuid.uuid4().hex}"
        conn.execute(
            "INSERT INTO bl_transfers VALUES (?, ?, ?, ?, ?, ?, NULL)", (made, debit, credit, value, now, now)
        )
        conn.execute(
            "INSERT INTO bl_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (f"ble_{uuid.uuid4().hex}", debit, made, -value, src[0] + value, src[0], src[1], now),
        )
        conn.execute(
            "INSERT INTO bl_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (f"ble_{uuid.uuid4().hex}", credit, made, value, dst[0] - value, dst[0], dst[1], now),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return made


def run_clients(
    clients: int,
    duration_s: float,
    connect: Callable[[], Any],
    transfer: Callable[[Any, str, str, int], object],
    accounts: Sequence[str],
    seed: int,
    finished: Callable[[], object] | None = None,
) -> tuple[int, float]:
    """`clients` threads, each with its own connection, sending one transfer per transaction for
    `duration_s` (uniform random pairs, amounts 1..1,000,000): (transfers made, seconds taken).
    `finished` is called once every client has stopped, before their connections are closed."""
    done = [0] * clients
    ready = threading.Barrier(clients + 1)
    end = [0.0]
    conns: list[Any] = []

    def client(number: int) -> None:
        rnd = random.Random(seed * 1000 + number)
        conn = connect()
        conns.append(conn)
        ready.wait(timeout=60)
        while time.monotonic() < end[0]:
            debit, credit = rnd.sample(accounts, 2)
            transfer(conn, debit, credit, rnd.randint(1, 1_000_000))
            done[number] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    try:
        for thread in threads:
            thread.start()
        end[0] = time.monotonic() + 1e9  # until everyone is connected
        ready.wait(timeout=60)
        started = time.monotonic()
        end[0] = started + duration_s
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        if finished is not None:
            finished()
    finally:
        end[0] = 0.0
        for thread in threads:
            if thread.ident is not None:
                thread.join()
        for conn in conns:
            conn.close()
    return sum(done), elapsed
