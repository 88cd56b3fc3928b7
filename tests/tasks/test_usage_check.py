"""The buyer's check of a seller's usage record: the seller's, for this trade and these terms, an
amount that is its seconds' cost; settled as claimed unless it asks more than the buyer saw (then
the buyer's sight is settled and the difference disputed), never more than the seller asks."""

from __future__ import annotations

from typing import Any

import pytest
from nacl.signing import SigningKey

from federation.httpsig import Identity
from node.tasks.usage import Sight, check_usage, usage_record
from node.trading.errors import ProtocolError

TERMS = {
    "offer_id": "cpu/local/local-1",
    "units": 1,
    "hours": 1,
    "price_per_unit_hour": 3600,
    "currency": "CNY",
}
RUN = {"started_ms": 10_000, "ended_ms": 13_000, "exit_code": None, "end_reason": "lost", "outcome": "failed"}
# The buyer accepted at 0 s, saw the run from 10 s to 20 s (the seller's stale "running" after
# its crash) and saw it over at 21 s.
SIGHT = Sight(accepted_ms=0, first_running_ms=10_000, last_running_ms=20_000, first_ended_ms=21_000)


def record(used_s: int, changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """b's signed usage record of trade t1 for a, with `changes` applied after signing."""
    body = usage_record(Identity("b", SigningKey.generate()), "a", "t1", TERMS, RUN, used_s, 1)
    body.update(changes or {})
    return body


def check(rec: dict[str, Any], tolerance_s: int = 2) -> tuple[int, int, bool]:
    checked = check_usage(rec, "b", "a", "t1", TERMS, SIGHT, tolerance_s)
    return checked.claimed_s, checked.settled_s, checked.agrees


def test_a_claim_below_what_the_buyer_saw_running_is_settled_as_claimed() -> None:
    """The seller crashed 3 s into the run and answered "running" for 7 s more after its restart:
    the buyer pays the 3 s asked, not the 10 s it saw, and records no dispute."""
    assert check(record(3)) == (3, 3, True)
    assert check(record(0)) == (0, 0, True)


def test_a_claim_within_the_buyer_sight_and_tolerance_agrees() -> None:
    assert check(record(21)) == (21, 21, True)
    assert check(record(23)) == (23, 23, True)  # 21 s seen + 2 s tolerance


def test_a_claim_above_the_buyer_sight_settles_the_sight_and_disagrees() -> None:
    assert check(record(24)) == (24, 23, False)
    assert check(record(3600)) == (3600, 23, False)
    assert check(record(24), tolerance_s=0) == (24, 21, False)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"issuer": "c"}, "different issuer"),
        ({"audience": "z"}, "different audience"),
        ({"trade_id": "t2"}, "different trade_id"),
        ({"units": 2}, "different units"),
        ({"currency": "USD"}, "different currency"),
        ({"used_s": "3"}, "no valid used_s"),
        ({"used_s": -1}, "no valid used_s"),
        ({"used_s": 3601}, "no valid used_s"),
        ({"used_s": True}, "no valid used_s"),
        ({"amount": 4}, "amount is not its seconds' cost"),
    ],
)
def test_a_record_not_about_this_trade_or_miscounted_is_refused(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ProtocolError, match=message) as caught:
        check(record(3, changes))
    assert caught.value.code == "bad_usage_record"
