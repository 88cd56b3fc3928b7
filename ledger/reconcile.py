"""Reconciliation between two nodes: per-window trade summaries, their diff, and a report. No I/O.

Both nodes record a trade under the same trade id. For one partner and one time window, each node
builds a summary: per trade, the net amount that moved on its account for the partner (credits
minus debits; the partner's view of the same trade is the negation), the amount still held, the
trade's state, and the digest of the co-signed trade document. The node signs the summary as a
document (integers only) and the two exchange them. The diff by trade id finds trades missing on
one side, different amounts, states and digests.

Clock skew: each summary covers the window widened by `margin_ms` on both sides, but a trade is
compared only if the earlier of its two recorded times falls inside the window itself, so a trade
stamped just either side of a boundary by two clocks is found in both summaries, and reported once.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from ledger.errors import ReconcileError
from ledger.records import Transfer, TransferKind

SUMMARY_TYPE = "cpnode.ledger.summary"
SUMMARY_VERSION = 1
MAX_TRADES = 20_000
DEFAULT_MARGIN_MS = 5 * 60 * 1000
MAX_WINDOW_MS = 31 * 24 * 3600 * 1000


class TradeState(enum.StrEnum):
    """A trade's state in one ledger, from its legs on the partner's account."""

    PENDING = "pending"  # a hold is still open
    SETTLED = "settled"  # something was posted
    VOIDED = "voided"
    EXPIRED = "expired"
    RECORDED = "recorded"  # legs exist but none moved money on the partner's account


class DiscrepancyKind(enum.StrEnum):
    """What differs between the two ledgers for one trade."""

    MISSING_HERE = "missing_here"  # the partner recorded it, we did not
    MISSING_THERE = "missing_there"  # we recorded it, the partner did not
    AMOUNT = "amount"
    STATE = "state"
    DIGEST = "digest"
    USAGE = "usage"  # the seller's metered usage lies outside what the buyer saw of the run


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open UTC time window [from_ms, to_ms)."""

    from_ms: int
    to_ms: int

    def __post_init__(self) -> None:
        if not 0 <= self.from_ms < self.to_ms or self.to_ms - self.from_ms > MAX_WINDOW_MS:
            raise ReconcileError(
                f"window [{self.from_ms}, {self.to_ms}) must be non-empty and at most 31 days"
            )

    def contains(self, ts_ms: int, margin_ms: int = 0) -> bool:
        """Whether `ts_ms` is in the window widened by `margin_ms` on both sides."""
        return self.from_ms - margin_ms <= ts_ms < self.to_ms + margin_ms


@dataclass(frozen=True, slots=True)
class TradeEntry:
    """One trade in a summary."""

    trade_id: str
    currency: str
    net: int  # posted credits minus debits on our account for the partner
    pending_net: int  # the same for holds still open
    state: str
    digest: str | None
    recorded_ms: int
    legs: int

    def to_dict(self) -> dict[str, Any]:
        """JSON form (integers and strings only)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Summary:
    """A parsed, checked summary document."""

    issuer: str
    partner: str
    window: Window
    margin_ms: int
    issued_ms: int
    trades: dict[str, TradeEntry]


@dataclass(frozen=True, slots=True)
class Discrepancy:
    """One difference for one trade: both sides' entries as they were compared."""

    trade_id: str
    kind: DiscrepancyKind
    ours: TradeEntry | None
    theirs: TradeEntry | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "trade_id": self.trade_id,
            "kind": str(self.kind),
            "ours": None if self.ours is None else self.ours.to_dict(),
            "theirs": None if self.theirs is None else self.theirs.to_dict(),
        }


def trade_entries(
    transfers: Iterable[Transfer], partner_accounts: set[str], open_holds: set[str]
) -> list[TradeEntry]:
    """Summarise each trade's legs (transfers with a trade id), sorted by trade id."""
    legs: dict[str, list[Transfer]] = {}
    for transfer in transfers:
        if transfer.trade_id is not None:
            legs.setdefault(transfer.trade_id, []).append(transfer)
    return [_entry(trade_id, legs[trade_id], partner_accounts, open_holds) for trade_id in sorted(legs)]


def _entry(
    trade_id: str, legs: list[Transfer], partner_accounts: set[str], open_holds: set[str]
) -> TradeEntry:
    legs.sort(key=lambda t: t.seq)
    net = pending_net = 0
    kinds: set[TransferKind] = set()
    for leg in legs:
        sign = (leg.credit_account in partner_accounts) - (leg.debit_account in partner_accounts)
        if sign == 0:
            continue
        if leg.kind is TransferKind.PENDING:
            if leg.id in open_holds:
                pending_net += sign * leg.amount
                kinds.add(TransferKind.PENDING)
        else:
            net += sign * leg.amount
            kinds.add(leg.kind)
    if TransferKind.PENDING in kinds:
        state = TradeState.PENDING
    elif kinds & {TransferKind.SINGLE, TransferKind.POST}:
        state = TradeState.SETTLED
    elif TransferKind.VOID in kinds:
        state = TradeState.VOIDED
    elif TransferKind.EXPIRE in kinds:
        state = TradeState.EXPIRED
    else:
        state = TradeState.RECORDED
    digest = next((leg.trade_digest for leg in legs if leg.trade_digest is not None), None)
    return TradeEntry(
        trade_id,
        legs[0].currency,
        net,
        pending_net,
        str(state),
        digest,
        min(t.ts_ms for t in legs),
        len(legs),
    )


def build_summary(
    issuer: str, partner: str, window: Window, margin_ms: int, issued_ms: int, entries: Iterable[TradeEntry]
) -> dict[str, Any]:
    """The summary document (plain JSON, integers only) for the node to sign."""
    trades = sorted(
        (e for e in entries if window.contains(e.recorded_ms, margin_ms)), key=lambda e: e.trade_id
    )
    if len(trades) > MAX_TRADES:
        raise ReconcileError(
            f"{len(trades)} trades in one window; use a shorter window (at most {MAX_TRADES})"
        )
    return {
        "type": SUMMARY_TYPE,
        "version": SUMMARY_VERSION,
        "issuer": issuer,
        "partner": partner,
        "window": {"from_ms": window.from_ms, "to_ms": window.to_ms},
        "margin_ms": margin_ms,
        "issued_ms": issued_ms,
        "count": len(trades),
        "trades": [t.to_dict() for t in trades],
    }


def summary_digest(document: Mapping[str, Any]) -> str:
    """Hex SHA-256 of a summary's canonical JSON (signatures excluded), for the reconciliation record."""
    body = {k: v for k, v in document.items() if k != "signatures"}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _field(data: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    value = data.get(name)
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ReconcileError(f"{where}.{name} must be an integer")
    if kind is str and not isinstance(value, str):
        raise ReconcileError(f"{where}.{name} must be a string")
    return value


def _parse_entry(raw: Any, index: int) -> TradeEntry:
    where = f"trades[{index}]"
    if not isinstance(raw, dict) or set(raw) != set(TradeEntry.__dataclass_fields__):
        raise ReconcileError(
            f"{where} must have exactly the fields {sorted(TradeEntry.__dataclass_fields__)}"
        )
    digest = raw["digest"]
    if digest is not None and not isinstance(digest, str):
        raise ReconcileError(f"{where}.digest must be a string or null")
    state = _field(raw, "state", str, where)
    if state not in set(TradeState):
        raise ReconcileError(f"{where}.state {state!r} is not a trade state")
    return TradeEntry(
        trade_id=_field(raw, "trade_id", str, where),
        currency=_field(raw, "currency", str, where),
        net=_field(raw, "net", int, where),
        pending_net=_field(raw, "pending_net", int, where),
        state=state,
        digest=digest,
        recorded_ms=_field(raw, "recorded_ms", int, where),
        legs=_field(raw, "legs", int, where),
    )


def parse_summary(
    document: Mapping[str, Any], *, now_ms: int | None = None, max_skew_ms: int = DEFAULT_MARGIN_MS
) -> Summary:
    """Check a summary document's shape (signatures are the node's business) and return it parsed.

    With `now_ms`, also refuse one issued in the future beyond `max_skew_ms`, or issued before its
    widened window had closed (it could not have been complete)."""
    if document.get("type") != SUMMARY_TYPE or document.get("version") != SUMMARY_VERSION:
        raise ReconcileError(f"not a {SUMMARY_TYPE} version {SUMMARY_VERSION} document")
    raw_window = document.get("window")
    if not isinstance(raw_window, dict):
        raise ReconcileError("window must be an object")
    window = Window(_field(raw_window, "from_ms", int, "window"), _field(raw_window, "to_ms", int, "window"))
    raw_trades = document.get("trades")
    if not isinstance(raw_trades, list) or len(raw_trades) > MAX_TRADES:
        raise ReconcileError(f"trades must be a list of at most {MAX_TRADES}")
    entries = [_parse_entry(raw, index) for index, raw in enumerate(raw_trades)]
    ids = [e.trade_id for e in entries]
    if ids != sorted(set(ids)) or _field(document, "count", int, "summary") != len(entries):
        raise ReconcileError("trades must be sorted by trade id, unique, and match count")
    summary = Summary(
        issuer=_field(document, "issuer", str, "summary"),
        partner=_field(document, "partner", str, "summary"),
        window=window,
        margin_ms=_field(document, "margin_ms", int, "summary"),
        issued_ms=_field(document, "issued_ms", int, "summary"),
        trades={e.trade_id: e for e in entries},
    )
    if not 0 <= summary.margin_ms <= window.to_ms - window.from_ms:
        raise ReconcileError("margin_ms must be between 0 and the window's length")
    if any(not window.contains(e.recorded_ms, summary.margin_ms) for e in entries):
        raise ReconcileError("a trade lies outside the summary's window")
    if now_ms is not None:
        if summary.issued_ms > now_ms + max_skew_ms:
            raise ReconcileError(
                f"issued {summary.issued_ms - now_ms} ms in the future; clocks too far apart"
            )
        if summary.issued_ms < window.to_ms + summary.margin_ms:
            raise ReconcileError("issued before its window (with margin) had closed; it may be incomplete")
    return summary


def diff_summaries(ours: Summary, theirs: Summary) -> list[Discrepancy]:
    """Every discrepancy between our summary and the partner's for the same window, by trade id."""
    if theirs.issuer != ours.partner or theirs.partner != ours.issuer:
        raise ReconcileError(
            f"summary is from {theirs.issuer!r} about {theirs.partner!r}; expected from {ours.partner!r} about {ours.issuer!r}"
        )
    if theirs.window != ours.window or theirs.margin_ms != ours.margin_ms:
        raise ReconcileError("the two summaries cover different windows or margins")
    found: list[Discrepancy] = []
    for trade_id in sorted(set(ours.trades) | set(theirs.trades)):
        mine, other = ours.trades.get(trade_id), theirs.trades.get(trade_id)
        first_seen = min(e.recorded_ms for e in (mine, other) if e is not None)
        if not ours.window.contains(first_seen):
            continue  # belongs to a neighbouring window; it is compared there
        if mine is None:
            found.append(Discrepancy(trade_id, DiscrepancyKind.MISSING_HERE, None, other))
            continue
        if other is None:
            found.append(Discrepancy(trade_id, DiscrepancyKind.MISSING_THERE, mine, None))
            continue
        if (
            mine.currency != other.currency
            or mine.net != -other.net
            or mine.pending_net != -other.pending_net
        ):
            found.append(Discrepancy(trade_id, DiscrepancyKind.AMOUNT, mine, other))
        if mine.state != other.state:
            found.append(Discrepancy(trade_id, DiscrepancyKind.STATE, mine, other))
        if mine.digest != other.digest:
            found.append(Discrepancy(trade_id, DiscrepancyKind.DIGEST, mine, other))
    return found


def _minor_units(minor: int, currency: str) -> str:
    return f"{minor} {currency} minor units"


def _epoch_ms(ms: int) -> str:
    return f"{ms} ms"


def render_report(
    ours: Summary,
    theirs: Summary,
    discrepancies: Iterable[Discrepancy],
    *,
    money: Callable[[int, str], str] = _minor_units,
    moment: Callable[[int], str] = _epoch_ms,
) -> str:
    """A plain-text reconciliation report for operators and auditors. `money` shows an amount in
    minor units with its currency and `moment` a UTC epoch-milliseconds time; the node passes the
    ones its CLI uses everywhere (major units, ISO 8601)."""
    items = list(discrepancies)
    lines = [
        f"Reconciliation of {ours.issuer} with {ours.partner}",
        f"window: [{moment(ours.window.from_ms)}, {moment(ours.window.to_ms)}) UTC, margin {ours.margin_ms} ms",
        f"trades: {len(ours.trades)} here, {len(theirs.trades)} at {ours.partner}",
        f"discrepancies: {len(items)}",
    ]
    for item in items:
        here = (
            "-" if item.ours is None else f"net {money(item.ours.net, item.ours.currency)} {item.ours.state}"
        )
        there = (
            "-"
            if item.theirs is None
            else f"net {money(item.theirs.net, item.theirs.currency)} {item.theirs.state}"
        )
        lines.append(f"  {item.trade_id}: {item.kind} (here: {here}; there: {there})")
    if not items:
        lines.append("  none: both ledgers agree on every trade in the window")
    return "\n".join(lines) + "\n"
