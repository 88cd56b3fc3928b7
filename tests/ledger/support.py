"""Small builders shared by the ledger's tests."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger import (
    AccountKind,
    AccountSpec,
    Balance,
    Transfer,
    TransferKind,
    TransferRequest,
    create_accounts,
    list_accounts,
)
from ledger.balances import replay
from ledger.store.db import transfer_from_row
from ledger.store.schema import transfers

CNY = "CNY"


def open_accounts(engine: Engine, *ids: str, currency: str = CNY, no_overdraft: tuple[str, ...] = ()) -> None:
    """Create provider accounts with these ids (those in `no_overdraft` limit debits to credits)."""
    specs = [
        AccountSpec(
            i,
            currency,
            AccountKind.CONSUMER if i in no_overdraft else AccountKind.PROVIDER,
            i in no_overdraft,
        )
        for i in ids
    ]
    results = create_accounts(engine, specs)
    assert all(r.ok for r in results), results


def single(transfer_id: str, debit: str, credit: str, amount: int, **extra: Any) -> TransferRequest:
    """A single-phase transfer request in CNY."""
    return TransferRequest(
        transfer_id, TransferKind.SINGLE, debit, credit, extra.pop("currency", CNY), amount, **extra
    )


def pending(transfer_id: str, debit: str, credit: str, amount: int, **extra: Any) -> TransferRequest:
    """A pending transfer (a hold) in CNY."""
    return TransferRequest(
        transfer_id, TransferKind.PENDING, debit, credit, extra.pop("currency", CNY), amount, **extra
    )


def post(transfer_id: str, hold_id: str, amount: int, **extra: Any) -> TransferRequest:
    """Post `amount` of hold `hold_id`."""
    return TransferRequest(transfer_id, TransferKind.POST, pending_id=hold_id, amount=amount, **extra)


def void(transfer_id: str, hold_id: str, **extra: Any) -> TransferRequest:
    """Void hold `hold_id`."""
    return TransferRequest(transfer_id, TransferKind.VOID, pending_id=hold_id, **extra)


def all_transfers(engine: Engine) -> list[Transfer]:
    """Every stored transfer in sequence order."""
    with engine.connect() as conn:
        return [transfer_from_row(r) for r in conn.execute(sa.select(transfers).order_by(transfers.c.seq))]


def balances(engine: Engine) -> dict[str, tuple[int, int, int, int]]:
    """Stored balances by account id."""
    return {a.id: a.balance.as_tuple() for a in list_accounts(engine)}


def replayed(engine: Engine) -> dict[str, tuple[int, int, int, int]]:
    """Balances recomputed from the stored transfers alone (accounts never touched count as zero)."""
    result: dict[str, Balance] = {a.id: Balance() for a in list_accounts(engine)}
    replay(all_transfers(engine), result)
    return {k: b.as_tuple() for k, b in result.items()}
