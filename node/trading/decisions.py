"""The seller's decisions, with no I/O: accept a trade request or not, and what a settlement does.

`check_trade` returns the terms of a sale to record, `check_settlement` the step a settlement takes
(`CancelUnseen`, `AnswerReceipt`, `FinishStored`, `Apply`); both raise one `Refusal(status, code,
message)` otherwise, which the seller answers as a signed refusal in one place. The messages are
for people: money through `node.money.format_money`, counts with their plural.

Trade rules, in order: the trade id is the buyer's (`<buyer>.<random>`); the request buys one
offer, units × hours × price = amount; the offer exists and the partner's agreement shows it; its
currency, the agreement's and the request's are this node's; the price is the one the partner's
catalog states now. Capacity and the credit line are checked where they are kept (the database
under a lock, the ledger), and refused with `no_capacity_refusal` and `credit_refusal`.

Settlement rules: a cancel (0 hours) of a trade never seen is recorded once, if its id is the
buyer's and its currency this node's; a sale whose holds expired refuses; a stored settlement is
finished again (same bytes) or refused (others), except that a cancelled trade answers any cancel;
a refused trade answers a `refused` receipt; an accepted one is settled for the used hours (or,
metered, the used seconds, prorated) when the receipt digest, the usage and the amount agree with
the sale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from federation.partners import Partner
from node.money import format_money
from node.offers import CatalogOffer
from node.trading import documents, rules
from node.trading.documents import Terms
from node.trading.errors import OrderRequestError, Refusal, StateError
from node.trading.records import Sale

PARTNER_UPDATE = "cpnode partners update {partner} --credit-limit MINOR_UNITS"


def plural(count: int, noun: str) -> str:
    """`1 hour`, `2 hours`, `0 units`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def shown_id(value: object, limit: int = 60) -> str:
    """A trade id for a message, cut to `limit` characters (ids come from partners)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Sold:
    """What a trade request buys here: its terms, the offer as the pools report it, the price."""

    terms: Terms
    offer: CatalogOffer
    price: int


def check_trade(
    document: Mapping[str, Any], partner: Partner, offers: Mapping[str, CatalogOffer], currency: str
) -> Sold:
    """The sale a trade request asks for, or Refusal (see the module docstring)."""
    try:
        rules.check_trade_id(document.get("trade_id"), partner.name)
        terms = documents.request_terms(document)
        rules.positive("units", terms.units, rules.MAX_UNITS)
        rules.positive("hours", terms.hours, rules.MAX_HOURS)
    except OrderRequestError as exc:
        raise Refusal(422, exc.code, str(exc)) from None
    offer = offers.get(terms.offer_id)
    if offer is None or not partner.agreement.allows(offer):
        raise Refusal(422, "unknown_offer", f"no offer {shown_id(terms.offer_id)} for {partner.name}")
    if not terms.currency == offer["currency"] == partner.agreement.currency == currency:
        raise Refusal(
            422, "currency_mismatch", f"this node trades in {currency} only, not {terms.currency[:16]}"
        )
    price = partner.agreement.price(offer)
    if terms.price_per_unit_hour != price:
        raise Refusal(
            422,
            "price_changed",
            f"{terms.offer_id} costs {format_money(price, currency)} per unit-hour for {partner.name} "
            f"now, not {format_money(terms.price_per_unit_hour, currency)}",
        )
    return Sold(terms, offer, price)


def no_capacity_refusal(offer_id: str, units: int) -> Refusal:
    """The refusal of a trade when its pool has too few free units."""
    return Refusal(
        409, "not_enough_free_units", f"{offer_id} has fewer than {plural(units, 'free unit')} now"
    )


def credit_refusal(buyer: str, seller: str, amount: int, limit: int, unused: int, currency: str) -> Refusal:
    """The refusal of a trade the partner's credit line cannot cover: what the line is, how much of
    it is unused, and how the seller's operator raises it."""
    line = format_money(limit, currency)
    if limit == 0:
        line += " (the default for a partner)"
    return Refusal(
        409,
        "credit_limit_exceeded",
        f"{format_money(amount, currency)} exceeds the credit {seller} gives {buyer}: a limit of {line}, "
        f"{format_money(max(0, unused), currency)} of it unused. The operator of {seller} raises it with "
        f"`{PARTNER_UPDATE.format(partner=buyer)}`",
    )


@dataclass(frozen=True)
class CancelUnseen:
    """Record a cancel of a trade this node never saw (so a late request for it is refused)."""


@dataclass(frozen=True)
class AnswerReceipt:
    """Answer a receipt in `state` for 0, changing nothing."""

    state: Literal["cancelled", "refused"]


@dataclass(frozen=True)
class FinishStored:
    """The same settlement again: finish what it stored and answer its stored receipt."""


@dataclass(frozen=True)
class Apply:
    """Settle (`used` > 0) or cancel an accepted sale for `used_hours` (metered: `used_s` seconds)."""

    used_hours: int
    used: int
    used_s: int | None = None

    @property
    def event(self) -> Literal["settle", "cancel"]:
        """The sale machine's event for this settlement."""
        return "settle" if self.used else "cancel"

    @property
    def state(self) -> Literal["settled", "voided"]:
        """The settlement receipt's state."""
        return "settled" if self.used else "voided"


SettleStep = CancelUnseen | AnswerReceipt | FinishStored | Apply


def _check_unseen_cancel(document: Mapping[str, Any], partner: str, currency: str) -> CancelUnseen:
    """A settlement of a trade this node never saw: only a cancel for 0 of a well-formed id passes."""
    trade_id, used_hours, amount = document["trade_id"], int(document["used_hours"]), int(document["amount"])
    given_currency = str(document["currency"])
    if used_hours != 0:
        raise Refusal(404, "unknown_trade", f"no trade {shown_id(trade_id)} of {partner}")
    try:
        rules.check_trade_id(trade_id, partner)
    except OrderRequestError as exc:
        raise Refusal(422, exc.code, f"cannot cancel trade {shown_id(trade_id)}: {exc}") from None
    if given_currency != currency or amount != 0:
        raise Refusal(
            422,
            "bad_cancel",
            f"a cancel is for {format_money(0, currency)} (this node's currency), "
            f"not {format_money(amount, given_currency)}",
        )
    return CancelUnseen()


def check_settlement(
    document: Mapping[str, Any], partner: str, sale: Sale | None, settle_sha: str, currency: str
) -> SettleStep:
    """What a settlement of `partner` (checked by the federation frame) does to `sale`, or Refusal."""
    trade_id, used_hours, amount = document["trade_id"], int(document["used_hours"]), int(document["amount"])
    given_currency = str(document["currency"])
    if sale is None:
        return _check_unseen_cancel(document, partner, currency)
    if sale.state == "expired":
        raise Refusal(409, "hold_expired", f"the holds of {trade_id} expired before it was settled")
    if sale.settlement_sha256 is not None:
        if sale.settlement_sha256 == settle_sha:
            return FinishStored()
        if sale.state == "cancelled" and used_hours == 0:
            return AnswerReceipt("cancelled")
        raise Refusal(409, "already_settled", f"trade {trade_id} was settled by another settlement")
    if sale.state == "open":
        raise Refusal(429, "trade_in_progress", f"trade {trade_id} is being recorded; retry")
    if sale.state == "refused":
        return AnswerReceipt("refused")
    if sale.state != "accepted":
        raise StateError(f"sale {trade_id} is {sale.state} without a settlement", code="bad_sale_state")
    given = document.get("receipt_sha256")
    if given not in (None, sale.receipt_sha256):
        raise Refusal(409, "receipt_mismatch", "the settlement names another trade receipt")
    if used_hours > 0 and given is None:
        raise Refusal(422, "receipt_required", "settling used hours needs the trade receipt's digest")
    if used_hours > sale.hours:
        raise Refusal(
            422, "too_many_hours", f"{plural(used_hours, 'used hour')} exceed the {sale.hours} ordered"
        )
    if "used_s" in document:
        return _metered(document, sale, used_hours, amount, given_currency)
    used = sale.units * used_hours * sale.price_per_unit_hour
    if amount != used or given_currency != sale.currency:
        hours = plural(used_hours, "hour")
        verb = "costs" if used_hours == 1 else "cost"
        raise Refusal(
            422,
            "amount_mismatch",
            f"{hours} of {plural(sale.units, 'unit')} {verb} {format_money(used, sale.currency)}, "
            f"not {format_money(amount, given_currency)}",
        )
    return Apply(used_hours, used)


def _metered(document: Mapping[str, Any], sale: Sale, used_hours: int, amount: int, currency: str) -> Apply:
    """A settlement of usage metered to the second: its amount must be the seconds' prorated cost."""
    used_s = int(document["used_s"])
    try:
        used = rules.usage_amount(sale.units, sale.hours, sale.price_per_unit_hour, used_s)
    except OrderRequestError as exc:
        raise Refusal(422, "too_many_hours", str(exc)) from None
    if amount != used or currency != sale.currency:
        raise Refusal(
            422,
            "amount_mismatch",
            f"{plural(used_s, 'second')} of {plural(sale.units, 'unit')} cost "
            f"{format_money(used, sale.currency)}, not {format_money(amount, currency)}",
        )
    return Apply(used_hours, used, used_s)
