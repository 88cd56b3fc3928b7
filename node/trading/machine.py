"""The order (buyer side) and sale (seller side) state machines, each as one transition table.

Rules, as for every state machine of the node: a transition is written to the database (a
compare-and-set on the current state) before the action of the new state runs, and every action
is idempotent (ledger transfer ids, the trade id, stored documents), so a crashed or interrupted
order is finished by running the action of the state it was left in again. States and events are
`Literal` types, so a move the table lacks is a type error, and the table tests check that every
state is reachable, final states are final and every state that is not resting has an action
(`node.trading.steps.OrderSteps.actions`, `node.trading.seller.Seller.actions`).

Order (one consumer's purchase, `trading_orders`); actions by state:

    unseen      (no row yet) the consumer places it           place → new
    new         place the consumer's hold                      held | rejected
    held        local: reserve capacity                        reserved → accepted | refused → voiding
                partner's offer: sign the trade request        requested
    requested   send it (same bytes on every retry)            accepted | refused → voiding | abandon → cancelling
                (abandon: no answer in time, or one we cannot read or trust)
    accepted    (rests) the partner's receipt is kept          settle → settling | cancel → cancelling
    settling    send the settlement, keep the receipt          settled → posting | refused → voiding
                                                               | bad_answer → voiding
    posting     post the holds for the used amount             posted → settled
    cancelling  tell the seller the trade is off               acknowledged | unreachable | bad_answer → voiding
    voiding     void the holds, release capacity               voided → cancelled
    settled, cancelled, rejected: final.

A partner's answer we cannot read or trust (undecodable, too deep, too large, wrongly signed, not
the document asked for) is a definite outcome, never a retry: the order moves on and the consumer's
money is released (`bad_answer`, or `abandon` for the trade request itself). Local offers take the
same path; their `settling` and `cancelling` have nobody to tell.

Sale (a trade a partner bought here, `trading_sales`):

    unseen      (no row yet) a trade request                   request → open | no_capacity → refused
                a cancel for a trade never seen                cancel → cancelled (a late request for it is refused)
    open        reserve capacity, record the partner's holds   held → accepted | refused
    accepted    (rests until settlement or expiry)             settle → settling | cancel → voiding | expire → expired
    settling    post the holds for the used amount             posted → settled | expire → expired
                                                               (the holds expired before they were posted)
    voiding     void the holds                                 voided → voided
    refused, settled, voided, expired, cancelled: final.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from node.trading.errors import StateError

OrderState = Literal[
    "unseen",
    "new",
    "held",
    "requested",
    "accepted",
    "settling",
    "posting",
    "cancelling",
    "voiding",
    "settled",
    "cancelled",
    "rejected",
]
OrderEvent = Literal[
    "place",
    "held",
    "rejected",
    "reserved",
    "requested",
    "refused",
    "accepted",
    "abandon",
    "settle",
    "cancel",
    "settled",
    "bad_answer",
    "posted",
    "acknowledged",
    "unreachable",
    "voided",
]
SaleState = Literal[
    "unseen",
    "open",
    "accepted",
    "settling",
    "voiding",
    "refused",
    "settled",
    "voided",
    "expired",
    "cancelled",
]
SaleEvent = Literal[
    "request", "no_capacity", "cancel", "held", "refused", "settle", "expire", "posted", "voided"
]

ORDER_TRANSITIONS: Final[dict[tuple[OrderState, OrderEvent], OrderState]] = {
    ("unseen", "place"): "new",
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
    ("settling", "bad_answer"): "voiding",
    ("posting", "posted"): "settled",
    ("cancelling", "acknowledged"): "voiding",
    ("cancelling", "unreachable"): "voiding",
    ("cancelling", "bad_answer"): "voiding",
    ("voiding", "voided"): "cancelled",
}
ORDER_START: Final[OrderState] = "unseen"
ORDER_FINAL: Final = frozenset[OrderState]({"settled", "cancelled", "rejected"})
# States an order rests in until someone acts on it; every other state has work to finish.
ORDER_RESTING: Final = frozenset[OrderState]({"accepted"}) | ORDER_FINAL
# The states a stored order can be in.
ORDER_STATES: Final = frozenset[OrderState](get_args(OrderState)) - {ORDER_START}

SALE_TRANSITIONS: Final[dict[tuple[SaleState, SaleEvent], SaleState]] = {
    ("unseen", "request"): "open",
    ("unseen", "no_capacity"): "refused",
    ("unseen", "cancel"): "cancelled",
    ("open", "held"): "accepted",
    ("open", "refused"): "refused",
    ("accepted", "settle"): "settling",
    ("accepted", "cancel"): "voiding",
    ("accepted", "expire"): "expired",
    ("settling", "posted"): "settled",
    ("settling", "expire"): "expired",
    ("voiding", "voided"): "voided",
}
SALE_START: Final[SaleState] = "unseen"
SALE_FINAL: Final = frozenset[SaleState]({"refused", "settled", "voided", "expired", "cancelled"})
SALE_RESTING: Final = frozenset[SaleState]({"accepted"}) | SALE_FINAL
SALE_STATES: Final = frozenset[SaleState](get_args(SaleState)) - {SALE_START}
# Sales whose capacity reservation is still needed.
SALE_OPEN: Final = frozenset[SaleState]({"open", "accepted", "settling", "voiding"})


def order_transition(state: OrderState, event: OrderEvent) -> OrderState:
    """The order's next state after `event`; StateError when the table has no such move."""
    try:
        return ORDER_TRANSITIONS[(state, event)]
    except KeyError:
        raise StateError(f"an order that is {state} cannot take {event!r}", code="bad_order_state") from None


def sale_transition(state: SaleState, event: SaleEvent) -> SaleState:
    """The sale's next state after `event`; StateError when the table has no such move."""
    try:
        return SALE_TRANSITIONS[(state, event)]
    except KeyError:
        raise StateError(f"a sale that is {state} cannot take {event!r}", code="bad_sale_state") from None
