"""The seller side: a partner buys one of this node's offers, settles it, and asks for summaries.

What is decided is pure (node.trading.decisions); this module does the I/O around it, and turns
every `Refusal` into the signed refusal document in one place (`_refused`).

Trade request (through the federation frame, which makes it idempotent per partner and trade id):
`check_trade` (the trade id is the partner's, the offer is visible to it under its agreement and
priced as its catalog says, in this node's currency); sign the acceptance; record the sale with a
capacity reservation (refused when its pool has too few units free); sync the partner's credit
line with the agreement; record the linked holds partner → provider and partner → platform fees
under the trade id and the receipt's digest. The ledger refuses them when the credit line would be
exceeded: the answer is then a signed refusal (409 `credit_limit_exceeded`, saying the line and
how to raise it), and nothing stays reserved. The checks and the signing run before the frame
claims the trade (`open_trade`), so the sale and its ledger holds are recorded in the claim's
transaction, with those of the other trades of a batch (node.trading.opening); a sale held at once
is inserted moved on and answers the trade there. A request the opener refuses is decided again
under the claim.

Settlement: `check_settlement` decides; a signed settlement for an accepted trade posts the holds
for the used amount (the rest released) or, with 0 used hours, voids them, and answers a signed
settlement receipt. The receipt is stored with the sale before the ledger is touched, so a repeated
settlement (same bytes) gets the same receipt and a different one is refused (409
`already_settled`). A cancel of a trade never seen is recorded (`cancelled`) only when its id is
the partner's and its currency this node's. Holds that expire before their settlement posted them
end the sale `expired` (409 `hold_expired`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import ledger
from federation import canonical, trades
from federation import store as federation_store
from federation.documents import sign_document
from federation.partners import Partner
from ledger import Status, TransferRequest
from node.db import log_failure
from node.offers import CatalogOffer
from node.trading import books, decisions, documents, rules, store
from node.trading.core import Trading
from node.trading.errors import Refusal, StateError
from node.trading.machine import SaleState
from node.trading.opening import SaleOpening
from node.trading.store import Sale

log = logging.getLogger("cpnode.trading.seller")
# Posting a hold that the ledger already resolved the same way is done, not a failure.
DONE_POSTING = frozenset({Status.PENDING_TRANSFER_ALREADY_POSTED})
DONE_VOIDING = frozenset(
    {
        Status.PENDING_TRANSFER_ALREADY_VOIDED,
        Status.PENDING_TRANSFER_ALREADY_EXPIRED,
        Status.PENDING_TRANSFER_EXPIRED,
    }
)
EXPIRED = frozenset({Status.PENDING_TRANSFER_EXPIRED, Status.PENDING_TRANSFER_ALREADY_EXPIRED})

Answer = tuple[int, dict[str, Any]]
SaleAction = Callable[[Partner, Sale], Awaitable[Answer]]


class TaskDelivery(Protocol):
    """What runs the task a trade request carries (node.tasks, set on the seller when it is wired)."""

    async def check(self, partner: Partner, task: Any, offer: CatalogOffer) -> None:
        """Refuse (Refusal) a task this node cannot run on `offer`; before anything is recorded."""

    async def opened(self, partner: Partner, sale: Sale, task: dict[str, Any]) -> None:
        """Record the task of a sale just opened (idempotent); it runs once the sale is accepted."""


class Seller:
    """The handlers the federation frames call for trades, settlements and summaries."""

    def __init__(self, trading: Trading) -> None:
        self.trading = trading
        # What finishes a sale left in each state that is not resting (node.trading.machine).
        self.actions: dict[SaleState, SaleAction] = {
            "open": self._hold,
            "settling": self._finish,
            "voiding": self._finish,
        }
        self.tasks: TaskDelivery | None = None

    def _refused(self, partner: Partner, trade_id: str, request_sha: str | None, refusal: Refusal) -> Answer:
        """The one place a Refusal becomes the signed refusal document answered to the partner."""
        t = self.trading
        document = documents.refusal(
            t.identity(), partner.name, trade_id, request_sha, refusal.code, str(refusal), t.clock()
        )
        return refusal.http_status, document

    # --- trade requests ------------------------------------------------------------------------

    async def handle_trade(self, partner: Partner, document: dict[str, Any]) -> Answer:
        """Accept or refuse a trade request (see the module docstring)."""
        request_sha = documents.sha256_of(document)
        try:
            return await self._trade(partner, document, request_sha)
        except Refusal as refusal:
            return self._refused(partner, str(document["trade_id"]), request_sha, refusal)
        finally:
            self.trading.capacity.changed()

    async def open_trade(
        self, partner: Partner, document: dict[str, Any], request_sha: str
    ) -> SaleOpening | None:
        """The trade frame's opener (federation.trades): the sale a trade request opens, to record with
        the trade's claim; None when the request is refused (decided again under the claim).
        `request_sha`: the request's `documents.sha256_of`, as the frame computed it to verify it."""
        try:
            return await self._opening(partner, document, request_sha)
        except Refusal:
            return None

    async def _opening(self, partner: Partner, document: dict[str, Any], request_sha: str) -> SaleOpening:
        """Check a trade request and sign its acceptance: the sale to open (Refusal if refused)."""
        t = self.trading
        offers = {offer["id"]: offer for _, offer in await t.capacity.raw_offers()}
        sold = decisions.check_trade(document, partner, offers, t.settings.currency)
        task = document.get("task")
        if task is not None:
            if self.tasks is None:
                raise Refusal(422, "tasks_unavailable", f"{t.name} runs no tasks for its partners")
            await self.tasks.check(partner, task, sold.offer)
        terms = sold.terms
        now = t.clock()
        expires = now + rules.hold_timeout_s(terms.hours, t.settings.settle_grace_s)
        trade_id = str(document["trade_id"])
        accepted = documents.acceptance(
            t.identity(), partner.name, trade_id, request_sha, terms, expires, now
        )
        values = {
            "partner": partner.name,
            "trade_id": trade_id,
            "offer_id": terms.offer_id,
            "pool": sold.offer["pool"],
            "units": terms.units,
            "hours": terms.hours,
            "price_per_unit_hour": sold.price,
            "currency": terms.currency,
            "amount": terms.amount,
            "fee": rules.fee_of(terms.amount, t.settings.platform_fee_bp),
            "request_sha256": request_sha,
            "acceptance": canonical.encode(accepted),
            "receipt_sha256": documents.digest(documents.receipt(document, accepted)),
            "hold_expires_ts": expires,
            "created_ts": now,
            "updated_ts": now,
        }
        # The partner's accounts and credit line first: the holds are written with the claim.
        await self._prepare(partner, terms.currency, str(sold.offer["pool"]))
        holds = _sale_legs(partner.name, trade_id, str(sold.offer["pool"]), values)
        return SaleOpening(values, sold.offer, now, holds, answers=task is None, changed=t.capacity.changed)

    async def _trade(self, partner: Partner, document: dict[str, Any], request_sha: str) -> Answer:
        t = self.trading
        trade_id = str(document["trade_id"])
        opening = trades.claimed_with()
        if isinstance(opening, SaleOpening) and opening.opened_for(partner.name, trade_id, request_sha):
            assert opening.outcome is not None
            outcome, sale = opening.outcome
            held = opening.held
            if opening.batch is not None:  # the claim's transaction has committed
                opening.batch.committed()
        else:  # refused by the opener, or no opener: decided now, as a retried trade is
            held = False
            stored = await t.db(store.get_sale, partner.name, trade_id)
            if stored is not None:
                return await self._resume(partner, stored, request_sha, document)
            opening = await self._opening(partner, document, request_sha)
            # Lazy, like the move to `held` below: the trade frame stores the answer durably
            # (federation.claims.finish_trade) before it is sent, and that flushes these too.
            outcome, sale = await t.db(store.open_sale, opening.values, opening.offer, opening.now, lazy=True)
        if outcome == "no_capacity":
            raise decisions.no_capacity_refusal(str(sale.offer_id), sale.units)
        if outcome == "exists":
            return await self._resume(partner, sale, request_sha, document)
        return await self._open(partner, sale, document, held)

    async def _open(
        self, partner: Partner, sale: Sale, document: dict[str, Any], held: bool = False
    ) -> Answer:
        """Record the task the trade carries (if any), then the sale's holds (`held`: stored already,
        with the sale)."""
        task = document.get("task")
        if task is not None and self.tasks is not None:
            await self.tasks.opened(partner, sale, task)
        return await self._hold(partner, sale, held)

    async def _resume(
        self, partner: Partner, sale: Sale, request_sha: str, document: dict[str, Any]
    ) -> Answer:
        """Answer a trade request for a sale already recorded (a re-run after a lapsed claim)."""
        if sale.state == "cancelled" or sale.request_sha256 != request_sha:
            raise Refusal(409, "trade_cancelled", "the buyer cancelled this trade")
        if sale.state == "open":
            return await self._open(partner, sale, document)
        if sale.state == "refused":
            raise Refusal(409, sale.reason or "refused", "the trade was refused")
        assert sale.acceptance is not None
        return 201, canonical.decode(sale.acceptance)

    async def _prepare(self, partner: Partner, currency: str, pool: str) -> None:
        """The accounts a sale's holds move, and the partner's credit line synced to its agreement."""
        t = self.trading
        await t.ensure_accounts(
            [*books.partner_specs(partner.name, currency), *books.house_specs(currency, [pool])]
        )
        limit = partner.agreement.credit_limit
        if not books.credit_line_known(t.engine, partner.name, limit, currency):
            await t.db(books.sync_credit_line, partner.name, limit, currency)

    async def _hold(self, partner: Partner, sale: Sale, held: bool = False) -> Answer:
        """Record the sale's holds (unless `held`: stored with the sale) and move it to accepted, or
        refuse it when the ledger does."""
        t = self.trading
        currency = sale.currency
        limit = partner.agreement.credit_limit
        assert sale.pool is not None
        assert sale.acceptance is not None
        cause = None
        if not held:
            await self._prepare(partner, currency, sale.pool)
            values = {
                "amount": sale.amount,
                "fee": sale.fee,
                "currency": currency,
                "hold_expires_ts": sale.hold_expires_ts,
                "created_ts": sale.created_ts,
                "receipt_sha256": sale.receipt_sha256,
            }
            cause = await t.submit(_sale_legs(partner.name, sale.trade_id, sale.pool, values))
        now = t.clock()
        if cause is None:
            # Written with the trade's answer when a trade request runs this (one transaction); run
            # by upkeep, lazily: nobody is told, and a machine crash leaves the sale `open` with its
            # holds, to hold again.
            if not trades.write_with_answer(
                functools.partial(store.move_sale_in, sale=sale, event="held", now_ts=now)
            ):
                await t.db(store.move_sale, sale, "held", now, lazy=True)
            return 201, canonical.decode(sale.acceptance)
        code = "credit_limit_exceeded" if cause is Status.EXCEEDS_CREDITS else f"ledger_{cause}"
        await t.db(store.move_sale, sale, "refused", now, reason=code)
        if cause is Status.EXCEEDS_CREDITS:
            unused = await t.db(books.available, rules.partner_account(partner.name))
            raise decisions.credit_refusal(partner.name, t.name, sale.amount, limit, unused, currency)
        raise Refusal(409, code, f"the ledger refused the sale: {cause}")

    # --- settlements ---------------------------------------------------------------------------

    async def handle_settlement(self, partner: Partner, document: dict[str, Any]) -> Answer:
        """Settle or cancel a trade this partner bought (see the module docstring)."""
        settle_sha = documents.sha256_of(document)
        try:
            return await self._settle(partner, document, settle_sha, retry=True)
        except Refusal as refusal:
            return self._refused(partner, str(document["trade_id"]), settle_sha, refusal)
        finally:
            self.trading.capacity.changed()

    async def _settle(
        self, partner: Partner, document: dict[str, Any], settle_sha: str, retry: bool
    ) -> Answer:
        t = self.trading
        trade_id = str(document["trade_id"])
        now = t.clock()
        sale = await t.db(store.get_sale, partner.name, trade_id)
        if sale is not None and sale.state == "accepted" and now >= sale.hold_expires_ts:
            sale = await t.db(store.move_sale, sale, "expire", now) or await t.db(
                store.get_sale, partner.name, trade_id
            )
        step = decisions.check_settlement(document, partner.name, sale, settle_sha, t.settings.currency)
        if isinstance(step, decisions.CancelUnseen):
            await t.db(store.cancel_unknown_sale, self._unseen_cancel(partner, document, settle_sha, now))
            return await self._again(partner, document, settle_sha, retry)
        assert sale is not None
        if isinstance(step, decisions.AnswerReceipt):
            return 200, self._receipt(partner, sale, settle_sha, step.state, 0, now)
        if isinstance(step, decisions.FinishStored):
            return await self._finish(partner, sale)
        answer = self._receipt(partner, sale, settle_sha, step.state, step.used, now)
        moved = await t.db(
            store.move_sale,
            sale,
            step.event,
            now,
            settlement_sha256=settle_sha,
            settlement_receipt=canonical.encode(answer),
            record_sha256=documents.digest(documents.settlement_record(document, answer)),
            used_hours=step.used_hours,
            used_s=step.used_s,
            settled_amount=step.used,
        )
        if moved is None:  # another request moved it first: answer from what it stored
            return await self._again(partner, document, settle_sha, retry)
        return await self._finish(partner, moved)

    async def _again(
        self, partner: Partner, document: dict[str, Any], settle_sha: str, retry: bool
    ) -> Answer:
        """Decide once more on the sale as it is stored now (it changed under us)."""
        if not retry:
            raise StateError(f"sale {document['trade_id']} keeps changing; retry", code="bad_sale_state")
        return await self._settle(partner, document, settle_sha, retry=False)

    def _unseen_cancel(
        self, partner: Partner, document: dict[str, Any], settle_sha: str, now: int
    ) -> dict[str, Any]:
        """The sale row recording a cancel of a trade never seen, with its signed receipt."""
        trade_id, currency = str(document["trade_id"]), self.trading.settings.currency
        answer = documents.settlement_receipt(
            self.trading.identity(), partner.name, trade_id, settle_sha, "cancelled", 0, currency, None, now
        )
        return {
            "partner": partner.name,
            "trade_id": trade_id,
            "units": 0,
            "hours": 0,
            "price_per_unit_hour": 0,
            "currency": currency,
            "amount": 0,
            "fee": 0,
            "settlement_sha256": settle_sha,
            "settlement_receipt": canonical.encode(answer),
            "used_hours": 0,
            "settled_amount": 0,
            "hold_expires_ts": now,
            "created_ts": now,
            "updated_ts": now,
        }

    def _receipt(
        self, partner: Partner, sale: Sale, settle_sha: str, state: str, amount: int, now: int
    ) -> dict[str, Any]:
        accepted = canonical.decode(sale.acceptance) if sale.acceptance is not None else None
        return documents.settlement_receipt(
            self.trading.identity(),
            partner.name,
            sale.trade_id,
            settle_sha,
            state,
            amount,
            sale.currency,
            accepted,
            now,
        )

    async def _finish(self, partner: Partner, sale: Sale) -> Answer:
        """Post or void the holds of a sale whose settlement is stored; answer its stored receipt.
        Holds that expired before they were posted end the sale `expired` (Refusal hold_expired)."""
        t = self.trading
        assert sale.settlement_receipt is not None
        if sale.state in ("settling", "voiding"):
            used = int(sale.settled_amount or 0) if sale.state == "settling" else 0
            code = rules.CODE_SALE if sale.used_s is not None else rules.CODE_OPERATOR_USAGE
            requests = books.sale_resolutions(
                sale.trade_id, sale.amount, sale.fee, used, sale.record_sha256, post_code=code
            )
            cause = await t.submit(requests)
            done = DONE_POSTING if used else DONE_VOIDING
            if cause is not None and cause not in done:
                if cause in EXPIRED:
                    log.error("sale %s of %s: its holds expired while settling", sale.trade_id, partner.name)
                    await t.db(store.move_sale, sale, "expire", t.clock(), reason="expired_while_settling")
                    raise Refusal(409, "hold_expired", f"the holds of {sale.trade_id} expired while settling")
                raise StateError(
                    f"the ledger refused to settle {sale.trade_id}: {cause}", code="ledger_refused"
                )
            await t.db(store.move_sale, sale, "posted" if sale.state == "settling" else "voided", t.clock())
        return 200, canonical.decode(sale.settlement_receipt)

    # --- summaries and upkeep ------------------------------------------------------------------

    async def handle_summary(self, partner: Partner, document: dict[str, Any]) -> dict[str, Any]:
        """This node's signed summary of the trades shared with `partner` in the requested window."""
        t = self.trading
        window = ledger.Window(int(document["window"]["from_ms"]), int(document["window"]["to_ms"]))
        margin_ms = int(document["margin_ms"])
        if margin_ms > window.to_ms - window.from_ms:
            raise ledger.ReconcileError("margin_ms must not exceed the window's length")
        # Second-grained, so never stricter than the buyer's own check of the summary's time.
        if t.clock() < (window.to_ms + margin_ms) // 1000:
            raise ledger.ReconcileError("the window (with its margin) has not closed yet; ask again later")
        summary = await t.db(ledger.summary_for_partner, t.name, partner.name, window, margin_ms=margin_ms)
        return sign_document(summary, t.identity().key)

    async def upkeep(self) -> int:
        """Mark accepted sales past their deadline expired and finish sales left between states;
        return how many were touched."""
        t = self.trading
        now = t.clock()
        touched = 0
        for sale in await t.db(store.sales_past_deadline, now):
            touched += await t.db(store.move_sale, sale, "expire", now) is not None
        stale = now - 2 * int(t.service.settings.trade_claim_ttl_s)
        for sale in await t.db(store.unfinished_sales, stale):
            partner = await t.db(federation_store.get_partner, sale.partner)
            action = self.actions.get(sale.state)
            if partner is None or action is None:
                continue
            try:
                await action(partner, sale)
            except Refusal as refusal:  # the sale ended refused or expired: it is finished too
                log.info("sale %s of %s: %s: %s", sale.trade_id, sale.partner, refusal.code, refusal)
            except Exception as exc:  # one sale's trouble must not stop the others
                log_failure(log, exc, "could not finish sale %s of %s", sale.trade_id, sale.partner)
                continue
            touched += 1
        if touched:
            t.capacity.changed()
        return touched


def _sale_legs(partner: str, trade_id: str, pool: str, sale: Mapping[str, Any]) -> list[TransferRequest]:
    """The linked holds of a sale to `partner` (`sale`: its amount, fee, currency, hold deadline,
    creation time and receipt digest, as its row holds them)."""
    return books.sale_holds(
        trade_id,
        rules.partner_account(partner),
        pool,
        sale["amount"],
        sale["fee"],
        sale["currency"],
        sale["hold_expires_ts"] - sale["created_ts"],
        trade_id=trade_id,
        partner=partner,
        digest=sale["receipt_sha256"],
    )
