"""Accounts: idempotent creation, closing, and reading them back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ledger.errors import ConflictError, NotFoundError
from ledger.records import Account, AccountResult, AccountSpec, Status
from ledger.store.cache import remember_new_accounts
from ledger.store.db import (
    Cursor,
    account_from_row,
    all_accounts,
    now_ms,
    select_accounts,
    select_in,
    with_retries,
    write_transaction,
)
from ledger.store.head import lock_head
from ledger.store.schema import accounts, balances, head
from ledger.validation import check_account, first_account_difference

_ZERO = {"debits_pending": 0, "debits_posted": 0, "credits_pending": 0, "credits_posted": 0}


def create_accounts(
    engine: Engine, specs: Sequence[AccountSpec], *, now: int | None = None
) -> list[AccountResult]:
    """Create accounts; the same id and spec again answers `exists`, a different spec names the field."""

    def attempt() -> list[AccountResult]:
        created_ms = now_ms() if now is None else now
        results: list[AccountResult] = []
        nums: dict[str, int] = {}
        with write_transaction(engine) as conn:
            version = conn.execute(sa.select(head.c.version).where(head.c.id == 1)).scalar_one()
            ids = [s.id for s in specs if isinstance(s.id, str)]
            stored = {row.id: account_from_row(row).spec for row in select_in(conn, select_accounts, ids)}
            rows: list[dict[str, Any]] = []
            for index, spec in enumerate(specs):
                problem = check_account(spec)
                if problem is not None:
                    results.append(
                        AccountResult(
                            index, str(spec.id), Status.INVALID_REQUEST, problem.field, problem.message
                        )
                    )
                    continue
                existing = stored.get(spec.id)
                if existing is not None:
                    differs = first_account_difference(spec, existing)
                    if differs is None:
                        results.append(AccountResult(index, spec.id, Status.EXISTS))
                    else:
                        message = f"account {spec.id!r} exists with a different {differs}"
                        results.append(
                            AccountResult(
                                index, spec.id, Status.EXISTS_WITH_DIFFERENT_FIELD, differs, message
                            )
                        )
                    continue
                stored[spec.id] = spec
                rows.append(
                    {
                        "id": spec.id,
                        "currency": spec.currency,
                        "kind": str(spec.kind),
                        "debits_must_not_exceed_credits": spec.debits_must_not_exceed_credits,
                        "credits_must_not_exceed_debits": spec.credits_must_not_exceed_debits,
                        "partner": spec.partner,
                        "created_ms": created_ms,
                        "closed_seq": None,
                        "closed_ms": None,
                    }
                )
                results.append(AccountResult(index, spec.id, Status.CREATED))
            if rows:
                # Balance rows are numbered here (a concurrent creator taking the same numbers
                # fails on the primary key and is retried).
                first = conn.execute(sa.select(sa.func.coalesce(sa.func.max(balances.c.num), 0))).scalar_one()
                for num, row in enumerate(rows, start=int(first) + 1):
                    row["num"] = num
                    nums[row["id"]] = num
                conn.execute(sa.insert(balances), [{"num": row["num"], **_ZERO} for row in rows])
                conn.execute(sa.insert(accounts), rows)
        # Committed: the writer need not read these accounts back (they are at zero).
        remember_new_accounts(
            engine, version, [specs[r.index] for r in results if r.status is Status.CREATED], nums
        )
        return results

    return with_retries(attempt, f"creating {len(specs)} account(s)")


def close_account(engine: Engine, account_id: str, *, now: int | None = None) -> Account:
    """Close an account: no transfer with a later sequence number may touch it. Refused while it has holds."""

    def attempt() -> Account:
        with write_transaction(engine) as conn:
            cur = Cursor(conn)
            next_seq = lock_head(cur).next_seq
            row = conn.execute(select_accounts([account_id], for_update=True)).first()
            if row is None:
                raise NotFoundError(f"account {account_id!r} does not exist")
            account = account_from_row(row)
            if account.closed_seq is not None:
                return account
            if account.balance.debits_pending or account.balance.credits_pending:
                raise ConflictError(f"account {account_id!r} has pending holds; resolve them before closing")
            closed_ms = now_ms() if now is None else now
            conn.execute(
                sa.update(accounts)
                .where(accounts.c.id == account_id)
                .values(closed_seq=next_seq, closed_ms=closed_ms)
            )
            cur.execute(
                "UPDATE ledger_head SET version = version + 1 WHERE id = 1"
            )  # writers' caches are stale
            return Account(account.spec, account.balance, account.created_ms, next_seq, closed_ms)

    return with_retries(attempt, f"closing account {account_id!r}")


# One account by id, built once with a bind parameter (read by every order a node places).
_ONE_ACCOUNT = all_accounts().where(accounts.c.id == sa.bindparam("p_id"))


def get_account(engine: Engine, account_id: str) -> Account:
    """One account, or NotFoundError."""
    with engine.connect() as conn:
        return get_account_in(conn, account_id)


def get_account_in(conn: Connection, account_id: str) -> Account:
    """`get_account` on a connection the caller holds (read with its own rows in one transaction)."""
    row = conn.execute(_ONE_ACCOUNT, {"p_id": account_id}).first()
    if row is None:
        raise NotFoundError(f"account {account_id!r} does not exist")
    return account_from_row(row)


def list_accounts(engine: Engine, ids: Sequence[str] | None = None) -> list[Account]:
    """Accounts in id order: all of them, or those with these ids (unknown ids are skipped)."""
    with engine.connect() as conn:
        rows = conn.execute(all_accounts()).all() if ids is None else select_in(conn, select_accounts, ids)
    return sorted((account_from_row(row) for row in rows), key=lambda a: a.id)
