"""The order (buyer side) and sale (seller side) state machines, each as one transition table.

Rules, as for every state machine of the node: a transition is written to the database (a
compare-and-set on the current state) before the action of the new state runs, and every action
is idempotent (ledger transfer ids, the trade id, stored documents), so a crashed or interrupted
order is finished by running the action of the state it was left in again.

Order (one consumer's purchase, `trading_orders`); actions by state:

    new         place the consumer's hold                      held | rejected
    held        local: reserve capacity                        reserved → accepted | refused → voiding
                partner's offer: sign the trade request        requested
    requested   send it (same bytes on every retry)            accepted | refused → voiding | abandon → cancelling
                (abandon: no answer in time, or one we cannot accept)
    accepted    (rests) the partner's receipt is kept          settle → settling | cancel → cancelling
    settling    send the settlement, keep the receipt          settled → posting | refused → voiding
    posting     post the holds for the used amount             posted → settled
    cancelling  tell the seller the trade is off               acknowledged | unreachable → voiding
    voiding     void the holds, release capacity               voided → cancelled
    settled, cancelled, rejected: final.

Local offers take the same path; their `settling` and `cancelling` have nobody to tell.

Sale (a trade a partner bought here, `trading_sales`):

    open        reserve capacity, record the partner's holds   held → accepted | refused
    accepted    (rests until settlement or expiry)             settle → settling | cancel → voiding | expire → expired
    settling    post the holds for the used amount             posted → settled
    voiding     void the holds                                 voided → voided
    (none)      a cancel for a trade never seen: `cancelled`, so a late request for it is refused.
"""

from __future__ import annotations

from node.trading.errors import StateError

ORDER_TRANSITIONS: dict[tuple[str, str], str] = {
    ("new", "held"): "held",
    ("new", "rejected"): "rejected",
    ("held", "reserved"): "accepted",
    ("held", "requested"): "requested",
    ("held", "refused"): "voiding",
    ("requested", "accepted"): "accepted",
    ("requested", "refused"): "voiding",
    ("requested", "abandon"): "cancelling",
    ("accepted", "settle"): "settling",
    ("accepted", "cancel"): "cancelling",
    ("settling", "settled"): "posting",
    ("settling", "refused"): "voiding",
    ("posting", "posted"): "settled",
    ("cancelling", "acknowledged"): "voiding",
    ("cancelling", "unreachable"): "voiding",
    ("voiding", "voided"): "cancelled",
}
ORDER_FINAL = frozenset({"settled", "cancelled", "rejected"})
# States an order rests in until someone acts on it; every other non-final state has work to finish.
ORDER_RESTING = frozenset({"accepted"}) | ORDER_FINAL
ORDER_STATES = frozenset(ORDER_TRANSITIONS.values()) | {"new"}

SALE_TRANSITIONS: dict[tuple[str, str], str] = {
    ("open", "held"): "accepted",
    ("open", "refused"): "refused",
    ("accepted", "settle"): "settling",
    ("accepted", "cancel"): "voiding",
    ("accepted", "expire"): "expired",
    ("settling", "posted"): "settled",
    ("voiding", "voided"): "voided",
}
SALE_STATES = frozenset(SALE_TRANSITIONS.values()) | {"open", "cancelled"}
# Sales whose capacity reservation is still needed.
SALE_OPEN = frozenset({"open", "accepted", "settling", "voiding"})


def order_transition(state: str, event: str) -> str:
    """The order's next state after `event`; StateError when the table has no such move."""
    try:
        return ORDER_TRANSITIONS[(state, event)]
    except KeyError:
        raise StateError(f"an order that is {state} cannot take {event!r}", code="bad_order_state") from None


def sale_transition(state: str, event: str) -> str:
    """The sale's next state after `event`; StateError when the table has no such move."""
    try:
        return SALE_TRANSITIONS[(state, event)]
    except KeyError:
        raise StateError(f"a sale that is {state} cannot take {event!r}", code="bad_sale_state") from None
