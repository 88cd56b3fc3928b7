"""The seller side: a partner buys one of this node's offers, settles it, and asks for summaries.

Trade request (through the federation frame, which makes it idempotent per partner and trade id):
check the trade id is the partner's, the offer is visible to it under its agreement and priced as
its catalog says, in this node's currency; sign the acceptance; record the sale with a capacity
reservation (refused when too few units are free); sync the partner's credit line with the
agreement; record the linked holds partner → provider and partner → platform fees under the trade
id and the receipt's digest. The ledger refuses them when the credit line would be exceeded: the
answer is then a signed refusal (409 `credit_limit_exceeded`), and nothing stays reserved.

Settlement: a signed settlement for an accepted trade posts the holds for the used amount (the
rest released) or, with 0 used hours, voids them, and answers a signed settlement receipt. The
receipt is stored with the sale before the ledger is touched, so a repeated settlement (same
bytes) gets the same receipt and a different one is refused (409 `already_settled`).
"""

from __future__ import annotations

import logging
from typing import Any

import ledger
from federation import canonical
from federation import store as federation_store
from federation.documents import sign_document
from federation.partners import Partner
from ledger import Status
from node.trading import books, documents, rules, store
from node.trading.core import Trading
from node.trading.errors import OrderRequestError, StateError
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


class Seller:
    """The handlers the federation frames call for trades, settlements and summaries."""

    def __init__(self, trading: Trading) -> None:
        self.trading = trading

    def _refusal(
        self, partner: Partner, trade_id: str, request_sha: str | None, status: int, code: str, message: str
    ) -> Answer:
        t = self.trading
        return status, documents.refusal(
            t.identity(), partner.name, trade_id, request_sha, code, message, t.clock()
        )

    # --- trade requests ------------------------------------------------------------------------

    async def handle_trade(self, partner: Partner, document: dict[str, Any]) -> Answer:
        """Accept or refuse a trade request (see the module docstring)."""
        try:
            return await self._trade(partner, document)
        finally:
            await self.trading.capacity.refresh()

    async def _trade(self, partner: Partner, document: dict[str, Any]) -> Answer:
        t = self.trading
        trade_id = str(document["trade_id"])
        request_sha = documents.sha256_of(document)
        try:
            rules.check_trade_id(trade_id, partner.name)
            terms = documents.request_terms(document)
            rules.positive("units", terms.units, rules.MAX_UNITS)
            rules.positive("hours", terms.hours, rules.MAX_HOURS)
        except OrderRequestError as exc:
            return self._refusal(partner, trade_id, request_sha, 422, exc.code, str(exc))
        stored = await t.db(store.get_sale, partner.name, trade_id)
        if stored is not None:
            return await self._resume(partner, stored, request_sha)
        found = await t.capacity.find(terms.offer_id)
        if found is None or not partner.agreement.allows(found[1]):
            return self._refusal(
                partner,
                trade_id,
                request_sha,
                422,
                "unknown_offer",
                f"no offer {terms.offer_id!r} for {partner.name}",
            )
        offer = found[1]
        currency = t.settings.currency
        if not terms.currency == offer["currency"] == partner.agreement.currency == currency:
            return self._refusal(
                partner,
                trade_id,
                request_sha,
                422,
                "currency_mismatch",
                f"this node trades in {currency} only",
            )
        price = partner.agreement.price(offer)
        if terms.price_per_unit_hour != price:
            return self._refusal(
                partner,
                trade_id,
                request_sha,
                422,
                "price_changed",
                f"{terms.offer_id} costs {price} per unit-hour for {partner.name} now, not {terms.price_per_unit_hour}",
            )
        now = t.clock()
        expires = now + rules.hold_timeout_s(terms.hours, t.settings.settle_grace_s)
        accepted = documents.acceptance(
            t.identity(), partner.name, trade_id, request_sha, terms, expires, now
        )
        values = {
            "partner": partner.name,
            "trade_id": trade_id,
            "offer_id": terms.offer_id,
            "pool": offer["pool"],
            "units": terms.units,
            "hours": terms.hours,
            "price_per_unit_hour": price,
            "currency": currency,
            "amount": terms.amount,
            "fee": rules.fee_of(terms.amount, t.settings.platform_fee_bp),
            "request_sha256": request_sha,
            "acceptance": canonical.encode(accepted),
            "receipt_sha256": documents.digest(documents.receipt(document, accepted)),
            "hold_expires_ts": expires,
            "created_ts": now,
            "updated_ts": now,
        }
        outcome, sale = await t.db(store.open_sale, values, int(offer["free_units"]), now)
        if outcome == "no_capacity":
            return self._refusal(
                partner,
                trade_id,
                request_sha,
                409,
                "not_enough_free_units",
                f"{terms.offer_id} has fewer than {terms.units} free units",
            )
        if outcome == "exists":
            return await self._resume(partner, sale, request_sha)
        return await self._hold(partner, sale)

    async def _resume(self, partner: Partner, sale: Sale, request_sha: str) -> Answer:
        """Answer a trade request for a sale already recorded (a re-run after a lapsed claim)."""
        if sale.state == "cancelled" or sale.request_sha256 != request_sha:
            return self._refusal(
                partner, sale.trade_id, request_sha, 409, "trade_cancelled", "the buyer cancelled this trade"
            )
        if sale.state == "open":
            return await self._hold(partner, sale)
        if sale.state == "refused":
            return self._refusal(
                partner, sale.trade_id, request_sha, 409, sale.reason or "refused", "the trade was refused"
            )
        assert sale.acceptance is not None
        return 201, canonical.decode(sale.acceptance)

    async def _hold(self, partner: Partner, sale: Sale) -> Answer:
        """Record the sale's holds and move it to accepted, or refuse it when the ledger does."""
        t = self.trading
        currency = sale.currency
        assert sale.pool is not None
        assert sale.acceptance is not None
        await t.db(
            books.ensure_accounts,
            [*books.partner_specs(partner.name, currency), *books.house_specs(currency, [sale.pool])],
        )
        await t.db(books.sync_credit_line, partner.name, partner.agreement.credit_limit, currency)
        legs = books.sale_holds(
            sale.trade_id,
            rules.partner_account(partner.name),
            sale.pool,
            sale.amount,
            sale.fee,
            currency,
            sale.hold_expires_ts - sale.created_ts,
            trade_id=sale.trade_id,
            partner=partner.name,
            digest=sale.receipt_sha256,
        )
        cause = await t.db(books.submit, legs)
        now = t.clock()
        if cause is None:
            await t.db(store.move_sale, sale, "held", now)
            return 201, canonical.decode(sale.acceptance)
        code = "credit_limit_exceeded" if cause is Status.EXCEEDS_CREDITS else f"ledger_{cause}"
        await t.db(store.move_sale, sale, "refused", now, reason=code)
        message = (
            f"{sale.amount} {currency} would exceed the credit limit of {partner.name}"
            if cause is Status.EXCEEDS_CREDITS
            else f"the ledger refused the sale: {cause}"
        )
        return self._refusal(partner, sale.trade_id, sale.request_sha256, 409, code, message)

    # --- settlements ---------------------------------------------------------------------------

    async def handle_settlement(self, partner: Partner, document: dict[str, Any]) -> Answer:
        """Settle or cancel a trade this partner bought (see the module docstring)."""
        try:
            return await self._settle(partner, document, retry=True)
        finally:
            await self.trading.capacity.refresh()

    async def _settle(self, partner: Partner, document: dict[str, Any], retry: bool) -> Answer:
        t = self.trading
        trade_id = str(document["trade_id"])
        settle_sha = documents.sha256_of(document)
        used_hours, amount = int(document["used_hours"]), int(document["amount"])
        now = t.clock()

        def refuse(status: int, code: str, message: str) -> Answer:
            return self._refusal(partner, trade_id, settle_sha, status, code, message)

        sale = await t.db(store.get_sale, partner.name, trade_id)
        if sale is None:
            if used_hours != 0:
                return refuse(404, "unknown_trade", f"no trade {trade_id!r} of {partner.name}")
            answer = documents.settlement_receipt(
                t.identity(),
                partner.name,
                trade_id,
                settle_sha,
                "cancelled",
                0,
                str(document["currency"]),
                None,
                now,
            )
            values = {
                "partner": partner.name,
                "trade_id": trade_id,
                "units": 0,
                "hours": 0,
                "price_per_unit_hour": 0,
                "currency": str(document["currency"]),
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
            sale = await t.db(store.cancel_unknown_sale, values)
        if sale.state == "expired":
            return refuse(409, "hold_expired", f"the holds of {trade_id} expired before it was settled")
        if sale.settlement_sha256 is not None:
            if sale.settlement_sha256 != settle_sha:
                if sale.state == "cancelled" and used_hours == 0:
                    return 200, self._receipt(partner, sale, settle_sha, "cancelled", 0, now)
                return refuse(409, "already_settled", f"trade {trade_id} was settled by another settlement")
            return await self._finish(partner, sale)
        if sale.state == "open":
            return refuse(429, "trade_in_progress", f"trade {trade_id} is being recorded; retry")
        if sale.state == "refused":
            return 200, self._receipt(partner, sale, settle_sha, "refused", 0, now)
        if sale.state != "accepted":
            raise StateError(f"sale {trade_id} is {sale.state}")
        given = document.get("receipt_sha256")
        if given not in (None, sale.receipt_sha256):
            return refuse(409, "receipt_mismatch", "the settlement names another trade receipt")
        if used_hours > 0 and given is None:
            return refuse(422, "receipt_required", "settling used hours needs the trade receipt's digest")
        if used_hours > sale.hours:
            return refuse(422, "too_many_hours", f"{used_hours} used hours exceed the {sale.hours} ordered")
        used = sale.units * used_hours * sale.price_per_unit_hour
        if amount != used or document.get("currency") != sale.currency:
            return refuse(
                422, "amount_mismatch", f"{used_hours} hours cost {used} {sale.currency}, not {amount}"
            )
        if now >= sale.hold_expires_ts:
            await t.db(store.move_sale, sale, "expire", now)
            return refuse(409, "hold_expired", f"the holds of {trade_id} expired before it was settled")
        answer = self._receipt(partner, sale, settle_sha, "settled" if used else "voided", used, now)
        record = documents.digest(documents.settlement_record(document, answer))
        moved = await t.db(
            store.move_sale,
            sale,
            "settle" if used else "cancel",
            now,
            settlement_sha256=settle_sha,
            settlement_receipt=canonical.encode(answer),
            record_sha256=record,
            used_hours=used_hours,
            settled_amount=used,
        )
        if moved is None:  # another request moved it first: answer from what it stored
            if not retry:
                raise StateError(f"sale {trade_id} keeps changing; retry")
            return await self._settle(partner, document, retry=False)
        return await self._finish(partner, moved)

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
        """Post or void the holds of a sale whose settlement is stored; answer its stored receipt."""
        t = self.trading
        assert sale.settlement_receipt is not None
        if sale.state in ("settling", "voiding"):
            used = int(sale.settled_amount or 0) if sale.state == "settling" else 0
            requests = books.sale_resolutions(sale.trade_id, sale.amount, sale.fee, used, sale.record_sha256)
            cause = await t.db(books.submit, requests)
            done = DONE_POSTING if used else DONE_VOIDING
            if cause is not None and cause not in done:
                if cause in EXPIRED:
                    log.error("sale %s of %s: its holds expired while settling", sale.trade_id, partner.name)
                    await t.db(store.move_sale, sale, "expire", t.clock(), reason="expired_while_settling")
                    return self._refusal(
                        partner,
                        sale.trade_id,
                        sale.settlement_sha256,
                        409,
                        "hold_expired",
                        "the holds expired while settling",
                    )
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
            if partner is None:
                continue
            try:
                if sale.state == "open":
                    await self._hold(partner, sale)
                else:
                    await self._finish(partner, sale)
                touched += 1
            except Exception:  # one sale's trouble must not stop the others
                log.exception("could not finish sale %s of %s", sale.trade_id, sale.partner)
        if touched:
            await t.capacity.refresh()
        return touched
