"""The seller's pure decisions (node.trading.decisions), tested without a database or a network:
which trade requests are sold and which settlements do what, every refusal with its status, code
and a message a person can act on."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from federation.partners import Agreement, Partner
from node.offers import CatalogOffer
from node.trading import decisions
from node.trading.errors import Refusal, StateError
from node.trading.records import Sale
from tests.support.samples import catalog_offer

KEY = "ed25519:" + "A" * 43
BUYER = Partner("beijing", ("http://127.0.0.1:1",), KEY, Agreement(credit_limit=0))
OFFER: CatalogOffer = catalog_offer()
SHA = "a" * 64


def request(**item: Any) -> dict[str, Any]:
    """A trade request document as the federation frame hands it over (signature checked)."""
    terms: dict[str, Any] = {
        "offer_id": "gpu",
        "units": 2,
        "hours": 3,
        "price_per_unit_hour": 10_000,
        "currency": "CNY",
    }
    terms.update(item)
    terms.setdefault("amount", terms["units"] * terms["hours"] * terms["price_per_unit_hour"])
    return {
        "trade_id": item.pop("trade_id", "beijing.abcdefgh12"),
        "items": [{k: v for k, v in terms.items() if k != "trade_id"}],
        "amount": terms["amount"],
        "currency": terms["currency"],
    }


def refusal_of(call: Any) -> Refusal:
    """The Refusal a decision raises."""
    with pytest.raises(Refusal) as caught:
        call()
    return caught.value


def test_a_well_formed_request_is_sold_at_the_partners_price() -> None:
    """A request for a visible offer at its current price is sold with its terms."""
    sold = decisions.check_trade(request(), BUYER, {"gpu": OFFER}, "CNY")
    assert (sold.terms.units, sold.terms.hours, sold.terms.amount, sold.price) == (2, 3, 60_000, 10_000)
    assert sold.offer is OFFER


@pytest.mark.parametrize(
    ("document", "offers", "status", "code", "words"),
    [
        (request(trade_id="shanghai.abcdefgh12"), {"gpu": OFFER}, 422, "foreign_trade_id", "beijing."),
        (request(trade_id="beijing"), {"gpu": OFFER}, 422, "bad_request", "NODE.RANDOM"),
        (request(units=0, amount=0), {"gpu": OFFER}, 422, "bad_request", "units"),
        (request(amount=5), {"gpu": OFFER}, 422, "bad_terms", "units × hours"),
        (request(offer_id="tpu"), {"gpu": OFFER}, 422, "unknown_offer", "no offer 'tpu' for beijing"),
        (request(currency="USD"), {"gpu": OFFER}, 422, "currency_mismatch", "CNY only, not USD"),
        (
            request(price_per_unit_hour=9_000),
            {"gpu": OFFER},
            422,
            "price_changed",
            "gpu costs 100.00 CNY per unit-hour for beijing now, not 90.00 CNY",
        ),
    ],
)
def test_trade_refusals(
    document: dict[str, Any], offers: dict[str, CatalogOffer], status: int, code: str, words: str
) -> None:
    """Each broken trade rule is refused with its status and code, and the message names the fault."""
    refusal = refusal_of(lambda: decisions.check_trade(document, BUYER, offers, "CNY"))
    assert (refusal.http_status, refusal.code) == (status, code)
    assert words in str(refusal)


def test_an_offer_the_agreement_hides_is_unknown() -> None:
    """An offer of a pool the partner's agreement does not show is refused as if it did not exist."""
    hidden = replace(BUYER, agreement=Agreement(pools=("pool-b",)))
    refusal = refusal_of(lambda: decisions.check_trade(request(), hidden, {"gpu": OFFER}, "CNY"))
    assert refusal.code == "unknown_offer"


def test_credit_refusal_says_the_limit_and_how_to_raise_it() -> None:
    """A credit refusal states the line (0 is the default), what is unused and the command that raises it."""
    refusal = decisions.credit_refusal("beijing", "shanghai", 30_000, 0, 0, "CNY")
    assert (refusal.http_status, refusal.code) == (409, "credit_limit_exceeded")
    message = str(refusal)
    assert "300.00 CNY exceeds the credit shanghai gives beijing" in message
    assert "a limit of 0.00 CNY (the default for a partner)" in message
    assert "`cpnode partners update beijing --credit-limit MINOR_UNITS`" in message
    message = str(decisions.credit_refusal("beijing", "shanghai", 30_000, 50_000, 20_000, "CNY"))
    assert "a limit of 500.00 CNY, 200.00 CNY of it unused" in message
    assert "default" not in message


def sale(**fields: Any) -> Sale:
    """An accepted sale of 2 units for 3 hours at 100.00 CNY per unit-hour."""
    values: dict[str, Any] = {
        "partner": "beijing",
        "trade_id": "beijing.abcdefgh12",
        "offer_id": "gpu",
        "pool": "pool-a",
        "units": 2,
        "hours": 3,
        "price_per_unit_hour": 10_000,
        "currency": "CNY",
        "amount": 60_000,
        "fee": 0,
        "state": "accepted",
        "reason": None,
        "request_sha256": SHA,
        "acceptance": b"{}",
        "receipt_sha256": "b" * 64,
        "settlement_sha256": None,
        "settlement_receipt": None,
        "record_sha256": None,
        "used_hours": None,
        "used_s": None,
        "settled_amount": None,
        "hold_expires_ts": 10_000,
        "created_ts": 1,
        "updated_ts": 1,
    }
    values.update(fields)
    return Sale(**values)


def settlement(used_hours: int, amount: int, **fields: Any) -> dict[str, Any]:
    """A settlement document as the federation frame hands it over."""
    return {
        "trade_id": "beijing.abcdefgh12",
        "used_hours": used_hours,
        "amount": amount,
        "currency": "CNY",
        "receipt_sha256": "b" * 64,
        **fields,
    }


def settle(document: dict[str, Any], stored: Sale | None, sha: str = "c" * 64) -> decisions.SettleStep:
    """check_settlement for beijing in CNY."""
    return decisions.check_settlement(document, "beijing", stored, sha, "CNY")


def test_metered_settlements_are_prorated_to_the_second() -> None:
    """90 s of 2 units at 100.00 CNY per unit-hour cost 2 × 10000 × 90 / 3600 = 500 minor units;
    another amount, or more seconds than the hours bought, is refused."""
    assert settle(settlement(1, 500, used_s=90), sale()) == decisions.Apply(1, 500, 90)
    with pytest.raises(Refusal) as wrong:
        settle(settlement(1, 501, used_s=90), sale())
    assert (wrong.value.code, "90 seconds" in str(wrong.value)) == ("amount_mismatch", True)
    with pytest.raises(Refusal) as beyond:
        settle(settlement(3, 60_001, used_s=3 * 3600 + 1), sale())
    assert beyond.value.code == "too_many_hours"


def test_settlements_of_an_accepted_sale() -> None:
    """Used hours settle for units × hours × price; 0 hours cancel."""
    assert settle(settlement(2, 40_000), sale()) == decisions.Apply(2, 40_000)
    step = settle(settlement(0, 0, receipt_sha256=None), sale())
    assert step == decisions.Apply(0, 0)
    assert isinstance(step, decisions.Apply)
    assert (step.event, step.state) == ("cancel", "voided")


@pytest.mark.parametrize(
    ("document", "stored", "status", "code", "words"),
    [
        (
            settlement(1, 5_000),
            sale(),
            422,
            "amount_mismatch",
            "1 hour of 2 units costs 200.00 CNY, not 50.00 CNY",
        ),
        (
            settlement(2, 5_000),
            sale(),
            422,
            "amount_mismatch",
            "2 hours of 2 units cost 400.00 CNY, not 50.00 CNY",
        ),
        (settlement(4, 80_000), sale(), 422, "too_many_hours", "4 used hours exceed the 3 ordered"),
        (settlement(1, 20_000, receipt_sha256=None), sale(), 422, "receipt_required", "digest"),
        (settlement(1, 20_000, receipt_sha256="d" * 64), sale(), 409, "receipt_mismatch", "another"),
        (settlement(1, 20_000), sale(state="expired"), 409, "hold_expired", "expired"),
        (settlement(1, 20_000), sale(state="open"), 429, "trade_in_progress", "retry"),
        (
            settlement(1, 20_000),
            sale(state="settled", settlement_sha256="e" * 64),
            409,
            "already_settled",
            "another settlement",
        ),
        (settlement(1, 20_000), None, 404, "unknown_trade", "no trade 'beijing.abcdefgh12' of beijing"),
    ],
)
def test_settlement_refusals(
    document: dict[str, Any], stored: Sale | None, status: int, code: str, words: str
) -> None:
    """Each broken settlement rule is refused with its status and code, and the message names the fault."""
    refusal = refusal_of(lambda: settle(document, stored))
    assert (refusal.http_status, refusal.code) == (status, code)
    assert words in str(refusal)


def test_stored_settlements_answer_again() -> None:
    """The same settlement finishes what it stored; a refused or cancelled trade answers a receipt."""
    stored = sale(state="settling", settlement_sha256="c" * 64)
    assert settle(settlement(1, 20_000), stored) == decisions.FinishStored()
    cancelled = sale(state="cancelled", settlement_sha256="e" * 64)
    assert settle(settlement(0, 0), cancelled) == decisions.AnswerReceipt("cancelled")
    assert settle(settlement(1, 20_000), sale(state="refused")) == decisions.AnswerReceipt("refused")
    with pytest.raises(StateError):
        settle(settlement(1, 20_000), sale(state="voiding"))


@pytest.mark.parametrize(
    ("trade_id", "currency", "amount", "code"),
    [
        ("beijing." + "x" * 3_000, "CNY", 0, "bad_request"),
        ("shanghai.abcdefgh12", "CNY", 0, "foreign_trade_id"),
        ("hangzhou.abcdefgh12", "CNY", 0, "foreign_trade_id"),
        ("../../etc", "CNY", 0, "bad_request"),
        ("beijing.abc", "CNY", 0, "bad_request"),
        ("beijing.abcdefgh12", "ZZZ", 0, "bad_cancel"),
        ("beijing.abcdefgh12", "CNY", 7, "bad_cancel"),
    ],
)
def test_cancels_of_unseen_trades_are_validated(trade_id: str, currency: str, amount: int, code: str) -> None:
    """A cancel of a trade never seen is recorded only for the partner's own trade ids, in this
    node's currency and for 0; anything else is refused (422) and nothing is to be stored."""
    document = settlement(0, amount, trade_id=trade_id, currency=currency, receipt_sha256=None)
    refusal = refusal_of(lambda: settle(document, None))
    assert (refusal.http_status, refusal.code) == (422, code)
    assert len(str(refusal)) < 300
    good = settlement(0, 0, receipt_sha256=None)
    assert settle(good, None) == decisions.CancelUnseen()


def test_plural() -> None:
    """Counts read as people write them."""
    assert [decisions.plural(n, "hour") for n in (0, 1, 2)] == ["0 hours", "1 hour", "2 hours"]
