"""The pure core of trading: the two state machines, prices and fee splits, ids, and the documents
(signed, hash-linked, and checked against what was asked)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from federation import canonical
from federation.documents import verify_document
from federation.httpsig import Identity
from federation.keys import key_id
from node.trading import documents, machine, rules
from node.trading.errors import OrderRequestError, ProtocolError, StateError

TERMS = documents.Terms("sh-gpu", 2, 3, 10_000, "CNY", 60_000)


def test_order_machine_is_one_table_with_final_states() -> None:
    """Every order state is reachable from `new`, final states have no way out, and a move the table
    lacks is refused with a StateError naming the state."""
    reachable, frontier = {"new"}, ["new"]
    while frontier:
        state = frontier.pop()
        for (source, _), target in machine.ORDER_TRANSITIONS.items():
            if source == state and target not in reachable:
                reachable.add(target)
                frontier.append(target)
    assert reachable == machine.ORDER_STATES
    assert not any(source in machine.ORDER_FINAL for source, _ in machine.ORDER_TRANSITIONS)
    assert machine.order_transition("accepted", "settle") == "settling"
    with pytest.raises(StateError, match="cancelled cannot take 'settle'"):
        machine.order_transition("cancelled", "settle")
    assert machine.sale_transition("accepted", "cancel") == "voiding"
    with pytest.raises(StateError):
        machine.sale_transition("settled", "cancel")


@given(st.integers(1, 10**12), st.integers(0, 10_000), st.data())
def test_fee_split_never_exceeds_either_hold(amount: int, fee_bp: int, data: st.DataObject) -> None:
    """Any used amount splits into a provider and a fee part that sum to it and fit their holds."""
    fee = rules.fee_of(amount, fee_bp)
    used = data.draw(st.integers(0, amount))
    provider_part, fee_part = rules.split_used(used, amount, fee)
    assert provider_part + fee_part == used
    assert 0 <= fee_part <= fee
    assert 0 <= provider_part <= amount - fee
    with pytest.raises(ValueError, match="outside"):
        rules.split_used(amount + 1, amount, fee)


def test_amounts_and_ids() -> None:
    """Amounts must be 1 … 2^53−1 minor units; trade ids are the buyer's name, a dot and randomness."""
    assert rules.order_amount(2, 3, 10_000) == 60_000
    for units, hours, price in ((1, 1, 0), (10**6, 8784, 10**9)):
        with pytest.raises(OrderRequestError):
            rules.order_amount(units, hours, price)
    trade = rules.new_trade_id("beijing")
    assert rules.check_trade_id(trade, "beijing") == trade
    with pytest.raises(OrderRequestError, match=r"start with 'bei\.'"):
        rules.check_trade_id(trade, "bei")  # a prefix of another name is not that name
    for bad in ("beijing", "beijing.short", "Beijing.abcdefgh", "beijing.abcdefgh/x", 7):
        with pytest.raises(OrderRequestError):
            rules.check_trade_id(bad)
    assert rules.fee_of(60_000, 500) == 3_000


def _identity(name: str) -> Identity:
    return Identity(name, SigningKey.generate())


def test_documents_are_signed_and_hash_linked() -> None:
    """The acceptance names the request's hash; the receipt's digest covers both signatures; a
    settlement receipt names the settlement's hash; each verifies with its issuer's key only."""
    buyer, seller = _identity("beijing"), _identity("shanghai")
    request = documents.trade_request(buyer, "shanghai", "beijing.abcdef012345", TERMS, 100)
    assert documents.request_terms(request) == TERMS
    accepted = documents.acceptance(
        seller, "beijing", request["trade_id"], documents.sha256_of(request), TERMS, 9_000, 101
    )
    expires = documents.check_acceptance(
        accepted, "shanghai", "beijing", request["trade_id"], documents.sha256_of(request), TERMS
    )
    assert expires == 9_000
    assert verify_document(accepted, "shanghai", {key_id(seller.key.verify_key): seller.key.verify_key})
    receipt = documents.receipt(request, accepted)
    tampered = documents.receipt(request, {**accepted, "hold_expires_ts": 9_001})
    assert documents.digest(receipt) != documents.digest(tampered)
    for name, value in (("amount", 1), ("request_sha256", "0" * 64), ("issuer", "guangzhou")):
        with pytest.raises(ProtocolError, match=name):
            documents.check_acceptance(
                {**accepted, name: value},
                "shanghai",
                "beijing",
                request["trade_id"],
                documents.sha256_of(request),
                TERMS,
            )
    settled = documents.settlement(
        buyer, "shanghai", request["trade_id"], 2, 40_000, "CNY", documents.digest(receipt), 200
    )
    answer = documents.settlement_receipt(
        seller,
        "beijing",
        request["trade_id"],
        documents.sha256_of(settled),
        "settled",
        40_000,
        "CNY",
        accepted,
        201,
    )
    assert (
        documents.check_settlement_receipt(
            answer, "shanghai", "beijing", request["trade_id"], documents.sha256_of(settled)
        )
        == "settled"
    )
    with pytest.raises(ProtocolError):
        documents.check_settlement_receipt(answer, "shanghai", "beijing", request["trade_id"], "0" * 64)
    # Read back from the bytes stored, a document and its hash are those it was made with; a
    # container's bytes and digest come from one encoding.
    for document in (request, accepted, settled, answer):
        assert documents.read_signed(canonical.encode(document)) == (document, documents.sha256_of(document))
    assert documents.encoded(receipt) == (canonical.encode(receipt), documents.digest(receipt))


def test_request_terms_refuse_inconsistent_items() -> None:
    """A trade request must buy one offer and its amount must be units × hours × price."""
    buyer = _identity("beijing")
    request = documents.trade_request(buyer, "shanghai", "beijing.abcdef012345", TERMS, 100)
    item = request["items"][0]
    for changed, code in (
        ({"items": [item, item]}, "one_item_per_trade"),
        ({"items": [{**item, "amount": 59_999}], "amount": 59_999}, "bad_terms"),
        ({"amount": 1}, "bad_terms"),
        ({"items": [{**item, "price_per_unit_hour": -1}]}, "bad_terms"),
    ):
        with pytest.raises(OrderRequestError) as caught:
            documents.request_terms({**request, **changed})
        assert caught.value.code == code
