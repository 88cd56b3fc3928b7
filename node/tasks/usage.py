"""Usage records and task status documents between nodes, built and checked with no I/O.

    usage record (seller)   cpnode.usage-record.v1: trade_id, offer_id, units, hours,
                            price_per_unit_hour, currency, started_ms, ended_ms, end_reason,
                            exit_code, outcome, used_s, amount: what the seller metered for one
                            trade's task, signed; the buyer settles it (its digest travels in the
                            settlement as `usage_sha256`) after checking it against its own sight
    task status (seller)    cpnode.task-status.v1: trade_id, state, outcome, started_ms, ended_ms,
                            exit_code, end_reason, reason, detail, outputs (kept files or null),
                            usage (the usage record, once metered), signed, answered to the buyer

The buyer's check (`check_usage`): the record is the seller's, about this trade, for these terms,
its amount is its seconds' prorated cost, and its seconds are no more than the buyer itself saw:
from the order's acceptance to when it first saw the run ended, widened by the tolerance. A record
above that is a `UsageMismatch`: the buyer settles the seconds its own sight allows and records the
difference for reconciliation. A record below what the buyer saw running is settled as it is: the
seller's claim is what it asks to be paid, and its "running" can be stale (a seller that crashed
answers from its record until it finds the run lost), so the buyer never pays more than asked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from federation.documents import sign_document
from federation.httpsig import Identity
from node.trading import rules
from node.trading.documents import sha256_of
from node.trading.errors import ProtocolError

USAGE_TYPE = "cpnode.usage-record.v1"
STATUS_TYPE = "cpnode.task-status.v1"
_RUN = ("started_ms", "ended_ms", "exit_code", "end_reason", "outcome")


def usage_record(
    identity: Identity,
    buyer: str,
    trade_id: str,
    terms: Mapping[str, Any],
    run: Mapping[str, Any],
    used_s: int,
    now_ts: int,
) -> dict[str, Any]:
    """The seller's signed usage record of one trade's task."""
    amount = rules.usage_amount(terms["units"], terms["hours"], terms["price_per_unit_hour"], used_s)
    body = {
        "type": USAGE_TYPE,
        "issuer": identity.node,
        "audience": buyer,
        "trade_id": trade_id,
        "issued_ts": now_ts,
        **{k: terms[k] for k in ("offer_id", "units", "hours", "price_per_unit_hour", "currency")},
        **{k: run.get(k) for k in _RUN},
        "used_s": used_s,
        "amount": amount,
    }
    return sign_document(body, identity.key)


def status_document(
    identity: Identity, buyer: str, trade_id: str, fields: Mapping[str, Any], now_ts: int
) -> dict[str, Any]:
    """The seller's signed status of one trade's task."""
    body = {
        "type": STATUS_TYPE,
        "issuer": identity.node,
        "audience": buyer,
        "trade_id": trade_id,
        "issued_ts": now_ts,
        **fields,
    }
    return sign_document(body, identity.key)


def check_status(document: Mapping[str, Any], seller: str, buyer: str, trade_id: str) -> None:
    """A status document (signature checked by the caller) is the seller's about this trade."""
    for name, value in (
        ("type", STATUS_TYPE),
        ("issuer", seller),
        ("audience", buyer),
        ("trade_id", trade_id),
    ):
        if document.get(name) != value:
            raise ProtocolError(f"{seller}'s task status has a different {name}", code="bad_task_status")
    if not isinstance(document.get("state"), str):
        raise ProtocolError(f"{seller}'s task status has no state", code="bad_task_status")


@dataclass(frozen=True)
class Sight:
    """What the buyer saw of a partner's run, in its own clock (UTC ms)."""

    accepted_ms: int  # the trade's acceptance: the run cannot have begun before
    first_running_ms: int | None
    last_running_ms: int | None
    first_ended_ms: int


@dataclass(frozen=True)
class UsageCheck:
    """A checked usage record: the seconds it says, the seconds the buyer settles, its digest."""

    claimed_s: int
    settled_s: int
    sha256: str

    @property
    def agrees(self) -> bool:
        """Whether the record asks no more than the buyer's sight allows."""
        return self.claimed_s == self.settled_s


def check_usage(
    record: Mapping[str, Any],
    seller: str,
    buyer: str,
    trade_id: str,
    terms: Mapping[str, Any],
    sight: Sight,
    tolerance_s: int,
) -> UsageCheck:
    """Check a usage record (signature checked by the caller) against the trade and the buyer's sight."""
    expected = {"type": USAGE_TYPE, "issuer": seller, "audience": buyer, "trade_id": trade_id}
    expected.update({k: terms[k] for k in ("offer_id", "units", "hours", "price_per_unit_hour", "currency")})
    for name, value in expected.items():
        if record.get(name) != value:
            raise ProtocolError(f"{seller}'s usage record has a different {name}", code="bad_usage_record")
    used_s = record.get("used_s")
    if type(used_s) is not int or not 0 <= used_s <= terms["hours"] * rules.SECONDS_PER_HOUR:
        raise ProtocolError(f"{seller}'s usage record has no valid used_s", code="bad_usage_record")
    if record.get("amount") != rules.usage_amount(
        terms["units"], terms["hours"], terms["price_per_unit_hour"], used_s
    ):
        raise ProtocolError(
            f"{seller}'s usage record's amount is not its seconds' cost", code="bad_usage_record"
        )
    most = -(-(sight.first_ended_ms - sight.accepted_ms) // 1000) + tolerance_s
    settled = min(used_s, max(most, 0))
    return UsageCheck(used_s, settled, sha256_of(record))
