"""What trading writes into the ledger: accounts of the chart (node.trading.rules), deposits, the
partner's credit line, and the holds of orders and sales with their posts and voids.

Every transfer id is derived from the order or trade id, so running any step again answers
`exists` instead of moving money twice. The ledger enforces the limits: a consumer cannot
overdraw (`consumer:<id>` has no overdraft) and a partner cannot buy beyond its credit line
(`partner:<node>` has no overdraft and is funded from `creditline:<node>` with the agreement's
credit limit), so two concurrent orders can never both take the last of either.

Transfer ids (T = order or trade id):
- buyer, partner's offer: `T:hold` consumer → escrow (pending), `T:escrow` escrow → partner
  (pending, once accepted), then `T:hold:post|void` and `T:escrow:post|void`;
- seller, and buyer on its own offers: `T:sale:provider` payer → provider, `T:sale:fee` payer →
  platform fees (both pending, linked), then `T:sale:provider:post|void`, `T:sale:fee:post|void`.
"""

from __future__ import annotations

import functools
import hashlib
import time
import weakref
from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy.engine import Engine

import ledger
from ledger import AccountKind, AccountSpec, Status, TransferKind, TransferRequest, TransferResult
from node.db.threads import in_thread
from node.trading import rules
from node.trading.errors import StateError


def consumer_spec(consumer: str, currency: str) -> AccountSpec:
    """A consumer's account: it can never be overdrawn, pending holds counted."""
    return AccountSpec(
        rules.consumer_account(consumer), currency, AccountKind.CONSUMER, debits_must_not_exceed_credits=True
    )


@functools.lru_cache(maxsize=1024)
def partner_specs(node: str, currency: str) -> tuple[AccountSpec, ...]:
    """A partner's account (no overdraft: its credit line bounds what it owes us) and its credit line
    (made once per partner and currency: every order and trade with it asks)."""
    return (
        AccountSpec(
            rules.partner_account(node),
            currency,
            AccountKind.PARTNER,
            debits_must_not_exceed_credits=True,
            partner=node,
        ),
        AccountSpec(rules.credit_line_account(node), currency, AccountKind.EXTERNAL),
    )


def house_specs(currency: str, pools: Sequence[str] = ()) -> tuple[AccountSpec, ...]:
    """Deposits, escrow, platform fees and the given pools' provider accounts."""
    return _house_specs(currency, tuple(sorted(set(pools))))


@functools.lru_cache(maxsize=1024)
def _house_specs(currency: str, pools: tuple[str, ...]) -> tuple[AccountSpec, ...]:
    specs = (
        AccountSpec(rules.DEPOSITS, currency, AccountKind.EXTERNAL),
        AccountSpec(rules.ESCROW, currency, AccountKind.ESCROW),
        AccountSpec(rules.FEES, currency, AccountKind.FEES),
    )
    return specs + tuple(
        AccountSpec(rules.provider_account(pool), currency, AccountKind.PROVIDER) for pool in pools
    )


# Accounts known to exist with their spec, per engine: accounts are never deleted and their spec
# never changes, so once one is there, ensuring it again needs no write transaction (two per
# cross-node order, each taking the database's write lock, before this).
_ensured: weakref.WeakKeyDictionary[Engine, set[AccountSpec]] = weakref.WeakKeyDictionary()


def accounts_known(engine: Engine, specs: Sequence[AccountSpec]) -> bool:
    """Whether every account of `specs` is known to exist with its spec (ensured by this process)."""
    known = _ensured.get(engine)
    return known is not None and known.issuperset(specs)


def ensure_accounts(engine: Engine, specs: Sequence[AccountSpec]) -> None:
    """Create the accounts that do not exist; StateError if one exists with another spec."""
    known = _ensured.setdefault(engine, set())
    if known.issuperset(specs):
        return
    for result in ledger.create_accounts(engine, specs):
        if not result.ok:
            raise StateError(
                f"ledger account {result.id}: {result.message or result.status}", code="account_conflict"
            )
    known.update(specs)


def failure(engine: Engine, results: Sequence[TransferResult]) -> Status | None:
    """None when every request is stored; else the status that caused the failure (for a chain, the
    member that failed; for an id that failed before, the reason it failed then)."""
    bad = [r for r in results if not r.ok]
    if not bad:
        return None
    cause = next((r for r in bad if r.status is not Status.LINKED_EVENT_FAILED), bad[0])
    if cause.status is Status.ID_ALREADY_FAILED:
        remembered = ledger.get_failure(engine, cause.id)
        if remembered is not None:
            return remembered[0]
    return cause.status


def _linked(requests: list[TransferRequest]) -> list[TransferRequest]:
    return [replace(r, linked=i < len(requests) - 1) for i, r in enumerate(requests)]


def deposit(engine: Engine, consumer: str, deposit_id: str, amount: int, currency: str) -> TransferResult:
    """Money entering a consumer's account (idempotent by `deposit_id`)."""
    ensure_accounts(engine, house_specs(currency))
    [result] = ledger.submit(
        engine,
        [
            TransferRequest(
                deposit_id,
                TransferKind.SINGLE,
                rules.DEPOSITS,
                rules.consumer_account(consumer),
                currency,
                amount,
                code=rules.CODE_DEPOSIT,
            )
        ],
    )
    return result


# When each partner's credit line was last found funded to a limit, per engine: (node, currency) →
# (limit, time.monotonic()). A trade checks the line against the agreement's limit only when the
# limit differs or the last check is older than CREDIT_LINE_CHECK_S (another replica may have moved
# the line meanwhile, for an agreement changed and changed back): one database trip fewer per trade.
CREDIT_LINE_CHECK_S = 1.0
_lines: weakref.WeakKeyDictionary[Engine, dict[tuple[str, str], tuple[int, float]]] = (
    weakref.WeakKeyDictionary()
)


def credit_line_known(engine: Engine, node: str, limit: int, currency: str) -> bool:
    """Whether `partner:<node>`'s line was found funded to `limit` within the last CREDIT_LINE_CHECK_S."""
    found = _lines.get(engine, {}).get((node, currency))
    return found is not None and found[0] == limit and time.monotonic() - found[1] < CREDIT_LINE_CHECK_S


def sync_credit_line(engine: Engine, node: str, limit: int, currency: str) -> int:
    """Fund `partner:<node>` so its credit line equals `limit`; return the line as funded now.

    The funded line is what `creditline:<node>` has given (debits − credits posted). Each change is
    one transfer whose id hashes the line account's totals and the change, so replicas that read the
    same line agree on one transfer. A reduction takes back only what the partner does not owe."""
    funded = _sync_credit_line(engine, node, limit, currency)
    if funded == limit:
        _lines.setdefault(engine, {})[(node, currency)] = (limit, time.monotonic())
    return funded


def _sync_credit_line(engine: Engine, node: str, limit: int, currency: str) -> int:
    line = ledger.get_account(engine, rules.credit_line_account(node))
    account = ledger.get_account(engine, rules.partner_account(node))
    funded = line.balance.debits_posted - line.balance.credits_posted
    if funded == limit:
        return funded
    b = account.balance
    if limit > funded:
        delta, debit, credit = limit - funded, line.id, account.id
    else:
        unused = b.credits_posted - b.debits_posted - b.debits_pending
        delta, debit, credit = min(funded - limit, max(0, unused)), account.id, line.id
        if delta == 0:
            return funded
    step = f"{line.balance.debits_posted}:{line.balance.credits_posted}:{debit}:{delta}"
    transfer_id = f"{line.id}:{hashlib.sha256(step.encode()).hexdigest()[:24]}"
    [result] = ledger.submit(
        engine,
        [
            TransferRequest(
                transfer_id, TransferKind.SINGLE, debit, credit, currency, delta, code=rules.CODE_CREDIT_LINE
            )
        ],
    )
    if result.ok:
        return funded + delta if debit == line.id else funded - delta
    return funded


# --- seller legs (a sale to a partner, or a local order) -----------------------------------------


def sale_holds(
    prefix: str,
    payer: str,
    pool: str,
    amount: int,
    fee: int,
    currency: str,
    timeout_s: int,
    *,
    order_id: str | None = None,
    trade_id: str | None = None,
    partner: str | None = None,
    digest: str | None = None,
) -> list[TransferRequest]:
    """The linked pending chain of a sale: payer → provider (amount − fee), payer → fees (fee)."""
    legs = [
        TransferRequest(
            f"{prefix}:sale:{leg}",
            TransferKind.PENDING,
            payer,
            credit,
            currency,
            part,
            timeout_s=timeout_s,
            code=rules.CODE_SALE,
            order_id=order_id,
            trade_id=trade_id,
            partner=partner,
            trade_digest=digest,
        )
        for leg, credit, part in (
            ("provider", rules.provider_account(pool), amount - fee),
            ("fee", rules.FEES, fee),
        )
        if part > 0
    ]
    return _linked(legs)


def sale_resolutions(
    prefix: str, amount: int, fee: int, used: int, digest: str | None, post_code: int = rules.CODE_SALE
) -> list[TransferRequest]:
    """Post each sale hold for its share of `used` (void it when its share is 0), as one chain; the
    posts carry `post_code` (`CODE_OPERATOR_USAGE` for usage typed by hand)."""
    provider_used, fee_used = rules.split_used(used, amount, fee)
    legs = []
    for leg, held, part in (("provider", amount - fee, provider_used), ("fee", fee, fee_used)):
        if held == 0:
            continue
        hold_id = f"{prefix}:sale:{leg}"
        if part > 0:
            legs.append(
                TransferRequest(
                    f"{hold_id}:post",
                    TransferKind.POST,
                    amount=part,
                    pending_id=hold_id,
                    code=post_code,
                    trade_digest=digest,
                )
            )
        else:
            legs.append(
                TransferRequest(
                    f"{hold_id}:void",
                    TransferKind.VOID,
                    pending_id=hold_id,
                    code=rules.CODE_SALE,
                    trade_digest=digest,
                )
            )
    return _linked(legs)


# --- buyer legs for a partner's offer ---------------------------------------------------------------


def order_hold(order_id: str, consumer: str, amount: int, currency: str, timeout_s: int) -> TransferRequest:
    """The consumer's money moved to escrow while the partner decides (pending). It carries the order
    id but not the trade id: the trade, as both ledgers reconcile it, starts with the partner hold
    (a refused trade never becomes one), and its first leg's time decides its window."""
    return TransferRequest(
        f"{order_id}:hold",
        TransferKind.PENDING,
        rules.consumer_account(consumer),
        rules.ESCROW,
        currency,
        amount,
        timeout_s=timeout_s,
        code=rules.CODE_ORDER,
        order_id=order_id,
    )


def partner_hold(
    order_id: str, partner: str, amount: int, currency: str, timeout_s: int, digest: str
) -> TransferRequest:
    """What we owe the partner once it accepted: escrow → partner (pending), with the receipt's digest."""
    return TransferRequest(
        f"{order_id}:escrow",
        TransferKind.PENDING,
        rules.ESCROW,
        rules.partner_account(partner),
        currency,
        amount,
        timeout_s=timeout_s,
        code=rules.CODE_ORDER,
        order_id=order_id,
        trade_id=order_id,
        partner=partner,
        trade_digest=digest,
    )


def order_resolutions(
    order_id: str,
    used: int,
    digest: str | None,
    legs: Sequence[str] = ("hold", "escrow"),
    post_code: int = rules.CODE_ORDER,
) -> list[TransferRequest]:
    """Post the order's holds (`hold`: the consumer's, `escrow`: the partner hold) for `used`, or
    void them when it is 0, as one chain; the posts carry `post_code`."""
    requests = []
    for leg in legs:
        hold_id = f"{order_id}:{leg}"
        if used > 0:
            requests.append(
                TransferRequest(
                    f"{hold_id}:post",
                    TransferKind.POST,
                    amount=used,
                    pending_id=hold_id,
                    code=post_code,
                    trade_digest=digest,
                )
            )
        else:
            requests.append(
                TransferRequest(
                    f"{hold_id}:void",
                    TransferKind.VOID,
                    pending_id=hold_id,
                    code=rules.CODE_ORDER,
                    trade_digest=digest,
                )
            )
    return _linked(requests)


def submit(engine: Engine, requests: Sequence[TransferRequest]) -> Status | None:
    """Submit a batch; None when every transfer is stored, else the failure's cause."""
    return failure(engine, ledger.submit_grouped(engine, list(requests))) if requests else None


async def submit_async(engine: Engine, requests: Sequence[TransferRequest]) -> Status | None:
    """`submit` from the event loop: the batch goes to the group committer without holding a
    database thread while it waits (a thread is taken only to read why an id failed before)."""
    if not requests:
        return None
    results = await ledger.submit_grouped_async(engine, list(requests))
    if all(r.ok for r in results):
        return None
    return await in_thread(engine, failure, results)


def available(engine: Engine, account_id: str) -> int:
    """What an account can still pay: credits posted − debits posted − debits pending (0 if missing)."""
    try:
        b = ledger.get_account(engine, account_id).balance
    except ledger.NotFoundError:
        return 0
    return b.credits_posted - b.debits_posted - b.debits_pending


def hold_exists(engine: Engine, transfer_id: str) -> bool:
    """Whether a transfer with this id is stored."""
    return ledger.get_transfer(engine, transfer_id) is not None
