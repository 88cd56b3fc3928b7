"""What closing a consumer's account takes: its status allows it, nothing is left on it (zero
balance, no holds, no open orders, no open tasks), and then its ledger account is closed so no
later transfer can touch it. A refusal names every blocker and changes nothing.

The account and ledger writes are two transactions, so a close passes through `closing`: written
first (the account is refused from then on, as closed), then the ledger account is closed, then
`closed`. A failure between them leaves `closing`; a retried close, or the node's job
(`finish_stopped`), checks again and finishes it, or puts the account back when something turned
up on it meanwhile.

Databases from before `closing` existed may hold a consumer left active (or suspended) whose ledger
account was closed: the ledger close went through and the status write did not.
`closed_ledger_consumers` finds them (`cpnode db check`, and the node at start, which logs them);
`repair` marks such a consumer closed, which is the only repair that keeps money correct: a closed
ledger account can never be touched again (the ledger has no reopen, and its checkpoints and
audit bundles already record the close), so the consumer can only follow the ledger. A consumer
with something still on it (a balance, a hold, open orders or tasks) is left for the operator.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

import ledger
from node.accounts import store
from node.accounts.lifecycle import AccountStateError, close_blockers, next_status
from node.accounts.store import AccountRecord
from node.db import in_thread
from node.tasks.machine import ENDED, FINAL
from node.tasks.tables import tasks_t
from node.trading import rules
from node.trading.machine import ORDER_FINAL
from node.trading.tables import orders_t

_LISTED = 10


def open_orders(engine: Engine, consumer: str) -> list[str]:
    """Ids of the consumer's orders that have not ended (settled, cancelled or rejected)."""
    query = (
        sa.select(orders_t.c.id)
        .where(orders_t.c.consumer == consumer, orders_t.c.state.not_in(sorted(ORDER_FINAL)))
        .order_by(orders_t.c.id)
        .limit(_LISTED)
    )
    with engine.connect() as conn:
        return [row.id for row in conn.execute(query)]


def open_tasks(engine: Engine, consumer: str) -> list[str]:
    """Ids of the consumer's tasks whose run has not ended."""
    query = (
        sa.select(tasks_t.c.id)
        .where(tasks_t.c.consumer == consumer, tasks_t.c.state.not_in(sorted(ENDED | FINAL)))
        .order_by(tasks_t.c.id)
        .limit(_LISTED)
    )
    with engine.connect() as conn:
        return [row.id for row in conn.execute(query)]


def _blockers(engine: Engine, consumer: str) -> list[str]:
    b = ledger.get_account(engine, rules.consumer_account(consumer)).balance
    return close_blockers(
        b.credits_posted - b.debits_posted,
        b.debits_pending + b.credits_pending,
        open_orders(engine, consumer),
        open_tasks(engine, consumer),
    )


def _blocked(consumer: str, blockers: list[str]) -> AccountStateError:
    return AccountStateError(
        f"consumer {consumer} cannot be closed: {'; '.join(blockers)}",
        code="close_blocked",
        blockers=blockers,
    )


def _finish(engine: Engine, consumer: str, actor: str) -> tuple[AccountRecord, ledger.Account]:
    """Second half of a close, from `closing`: check again, close the ledger account, write `closed`;
    something left on the account puts it back to its former status (close_blocked)."""
    blockers = _blockers(engine, consumer)
    if not blockers:
        try:
            account = ledger.close_account(engine, rules.consumer_account(consumer))
        except ledger.ConflictError as exc:  # a hold was placed after the check
            blockers = [str(exc)]
    if blockers:
        store.end_close(engine, consumer, False, actor, store.now_ms(), "; ".join(blockers))
        raise _blocked(consumer, blockers)
    return store.end_close(engine, consumer, True, actor, store.now_ms()), account


def _close(engine: Engine, consumer: str, actor: str, reason: str) -> tuple[AccountRecord, ledger.Account]:
    record = store.get(engine, "consumer", consumer)
    if record.status != "closing":
        next_status(record.status, "close")
        blockers = _blockers(engine, consumer)
        if blockers:
            raise _blocked(consumer, blockers)
        store.begin_close(engine, consumer, actor, store.now_ms(), reason)
    return _finish(engine, consumer, actor)


async def close(
    engine: Engine, consumer: str, actor: str, reason: str = ""
) -> tuple[AccountRecord, ledger.Account]:
    """Close `consumer`'s account: `closing` (refused from then on), its ledger account closed, then
    `closed`; a close that stopped half-way is finished by the next one. AccountStateError
    (`close_blocked`, with `blockers`, nothing changed) when something is left on it."""
    return await in_thread(engine, _close, consumer, actor, reason)


@dataclass(frozen=True)
class ClosedLedger:
    """A consumer not closed whose ledger account is closed, and what blocks marking it closed."""

    consumer: str
    status: str
    closed_ms: int | None
    blockers: list[str]

    def advice(self) -> str:
        """What the operator should do about it."""
        if not self.blockers:
            return "run `cpnode db check --repair` to mark it closed as its ledger account is"
        return f"cannot be marked closed ({'; '.join(self.blockers)}): settle these by hand first"


def closed_ledger_consumers(engine: Engine) -> list[ClosedLedger]:
    """Consumers whose status is active or suspended while their ledger account is closed."""
    closed = {
        a.id.removeprefix(rules.CONSUMER_PREFIX): a
        for a in ledger.list_accounts(engine)
        if a.closed_seq is not None and a.id.startswith(rules.CONSUMER_PREFIX)
    }
    records = store.get_many(engine, "consumer", sorted(closed))
    return [
        ClosedLedger(name, record.status, closed[name].closed_ms, _blockers(engine, name))
        for name, record in records.items()
        if record.status in ("active", "suspended")
    ]


def repair(engine: Engine, found: ClosedLedger, actor: str) -> AccountRecord:
    """Mark `found`'s consumer closed, as its ledger account is (through `closing`, so the audit
    trail shows a close); AccountStateError when something is still on it."""
    blockers = _blockers(engine, found.consumer)
    if blockers:
        raise _blocked(found.consumer, blockers)
    reason = "its ledger account was closed already"
    store.begin_close(engine, found.consumer, actor, store.now_ms(), reason)
    return store.end_close(engine, found.consumer, True, actor, store.now_ms(), reason)


def finish_stopped(engine: Engine, older_than_ms: int, actor: str = "node") -> dict[str, str]:
    """Finish the closes left `closing` for longer than `older_than_ms`: consumer → `closed`, or
    `blocked` when something was left on it (it is back to its former status)."""
    outcomes = {}
    for consumer in store.closing_since(engine, store.now_ms() - older_than_ms):
        try:
            _finish(engine, consumer, actor)
            outcomes[consumer] = "closed"
        except AccountStateError:
            outcomes[consumer] = "blocked"
    return outcomes
