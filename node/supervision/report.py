"""The supervision report (pure): a signed document a node sends each of its supervisors.

Document (canonical JSON, signed by the node like every federation document)::

    {"type": "cpnode.supervision.report.v1", "issuer": NODE, "audience": SUPERVISOR, "seq": N,
     "issued_ts": T, "region": R, "interval_s": S, "period_start_ts": T0, "period_end_ts": T1,
     "pools": [FIGURE, ...], "trades": [VOLUME, ...], "signatures": {...}}

`seq` rises by one with every report a node makes for one supervisor; the supervisor accepts each
number once and never one below the last it accepted. A FIGURE is `figures.PoolFigures.to_json()`;
a VOLUME is the trades of one currency made in the period (`TradeVolume`). Money is integer minor
units. Reading checks, in order: size, canonical JSON, type, issuer, audience, signature, numbers,
times, then each figure and volume; the first broken rule is the error's code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey, VerifyKey

from federation import canonical
from federation.documents import load_document, sign_document, verify_document
from federation.errors import AuthError, DocumentError, TooLargeError
from federation.httpsig import CLOCK_SKEW_S
from node.supervision.figures import PoolFigures

REPORT_TYPE = "cpnode.supervision.report.v1"
MAX_REPORT_BYTES = 4 * 1024 * 1024
MAX_POOLS = 10_000
MAX_TRADES = 64
MAX_COMPUTE_IDS = 1_000
_FIGURE_STRINGS = ("pool", "region", "chip_vendor", "chip_model")
_FIGURE_COUNTS = (
    "capacity_units",
    "free_units",
    "capacity_chips",
    "free_chips",
    "capacity_cpus",
    "free_cpus",
    "utilisation_bp",
)
_VOLUME_COUNTS = ("orders", "order_amount", "sales", "sales_amount", "unit_hours")


@dataclass(frozen=True)
class TradeVolume:
    """Trades of one currency made in a report's period: orders placed here and sales to partners
    (counts, amounts in minor units), and the unit-hours they bought or sold."""

    currency: str
    orders: int = 0
    order_amount: int = 0
    sales: int = 0
    sales_amount: int = 0
    unit_hours: int = 0

    def to_json(self) -> dict[str, Any]:
        """The volume as a report carries it."""
        return {
            "currency": self.currency,
            "orders": self.orders,
            "order_amount": self.order_amount,
            "sales": self.sales,
            "sales_amount": self.sales_amount,
            "unit_hours": self.unit_hours,
        }


@dataclass(frozen=True)
class Report:
    """A report that passed every rule, with the hash of its bytes and the key that signed it."""

    node: str
    audience: str
    seq: int
    issued_ts: int
    region: str
    interval_s: int
    period_start_ts: int
    period_end_ts: int
    pools: list[dict[str, Any]]
    trades: list[dict[str, Any]]
    sha256: str
    key_id: str


def build_report(
    *,
    node: str,
    audience: str,
    seq: int,
    now_ts: int,
    region: str,
    interval_s: int,
    period: tuple[int, int],
    pools: Sequence[PoolFigures],
    trades: Sequence[TradeVolume],
    key: SigningKey,
) -> bytes:
    """The canonical bytes of report number `seq` of `node` for `audience`, signed with `key`."""
    document = {
        "type": REPORT_TYPE,
        "issuer": node,
        "audience": audience,
        "seq": seq,
        "issued_ts": now_ts,
        "region": region,
        "interval_s": interval_s,
        "period_start_ts": period[0],
        "period_end_ts": period[1],
        "pools": [figure.to_json() for figure in pools],
        "trades": [volume.to_json() for volume in trades],
    }
    return canonical.encode(sign_document(document, key))


def _count(data: Mapping[str, Any], name: str, where: str, minimum: int = 0) -> int:
    value = data.get(name)
    if type(value) is not int or value < minimum:
        raise DocumentError(f"{where}{name} must be an integer of at least {minimum}", code="bad_report")
    return value


def _text(data: Mapping[str, Any], name: str, where: str) -> str:
    value = data.get(name)
    if type(value) is not str or not 0 < len(value) <= 200:
        raise DocumentError(f"{where}{name} must be a string of 1–200 characters", code="bad_report")
    return value


def _figure(item: Any, index: int) -> dict[str, Any]:
    where = f"pools[{index}]."
    if type(item) is not dict:
        raise DocumentError(f"pools[{index}] must be an object", code="bad_report")
    for name in _FIGURE_STRINGS:
        _text(item, name, where)
    for name in _FIGURE_COUNTS:
        _count(item, name, where)
    for free, capacity in (("free_units", "capacity_units"), ("free_chips", "capacity_chips")):
        if item[free] > item[capacity]:
            raise DocumentError(f"{where}{free} exceeds {capacity}", code="bad_report")
    ids = item.get("compute_ids")
    if type(ids) is not list or len(ids) > MAX_COMPUTE_IDS or not all(type(i) is str for i in ids):
        raise DocumentError(f"{where}compute_ids must be a list of strings", code="bad_report")
    score = item.get("metric_score")
    if score is not None and (type(score) is not int or score < 0):
        raise DocumentError(f"{where}metric_score must be a non-negative integer or null", code="bad_report")
    return item


def _volume(item: Any, index: int) -> dict[str, Any]:
    where = f"trades[{index}]."
    if type(item) is not dict:
        raise DocumentError(f"trades[{index}] must be an object", code="bad_report")
    currency = _text(item, "currency", where)
    if len(currency) != 3 or not currency.isupper():
        raise DocumentError(f"{where}currency must be a three-letter code like CNY", code="bad_report")
    for name in _VOLUME_COUNTS:
        _count(item, name, where)
    return item


def _items(document: Mapping[str, Any], name: str, limit: int) -> list[Any]:
    items = document.get(name)
    if type(items) is not list:
        raise DocumentError(f"{name} must be a list", code="bad_report")
    if len(items) > limit:
        raise DocumentError(f"{name} has {len(items)} entries, limit {limit}", code="too_many_items")
    return items


def read_report(data: bytes, node: str, audience: str, keys: Mapping[str, VerifyKey], now_ts: int) -> Report:
    """Check report bytes `node` sent to `audience` (us) against `node`'s trusted `keys`; the first
    broken rule raises a DocumentError, AuthError or SignatureError whose code names it."""
    if len(data) > MAX_REPORT_BYTES:
        raise TooLargeError(f"report is {len(data)} bytes, limit {MAX_REPORT_BYTES}")
    document, payload = load_document(data)
    if document.get("type") != REPORT_TYPE:
        raise DocumentError(f"not a supervision report (type must be {REPORT_TYPE})", code="wrong_type")
    if document.get("issuer") != node:
        raise AuthError(
            f"report issuer is {document.get('issuer')!r}, not the caller {node!r}", "wrong_issuer"
        )
    if document.get("audience") != audience:
        raise AuthError(
            f"report is made for {document.get('audience')!r}, not {audience!r}", "wrong_audience"
        )
    kid = verify_document(document, node, keys, payload)
    seq = _count(document, "seq", "", minimum=1)
    issued = _count(document, "issued_ts", "")
    interval = _count(document, "interval_s", "", minimum=1)
    start, end = _count(document, "period_start_ts", ""), _count(document, "period_end_ts", "")
    if start > end:
        raise DocumentError("period_start_ts is after period_end_ts", code="bad_report")
    if issued > now_ts + CLOCK_SKEW_S:
        raise DocumentError("report is issued in the future", code="issued_in_future")
    region = _text(document, "region", "")
    pools = [_figure(item, i) for i, item in enumerate(_items(document, "pools", MAX_POOLS))]
    trades = [_volume(item, i) for i, item in enumerate(_items(document, "trades", MAX_TRADES))]
    return Report(
        node,
        audience,
        seq,
        issued,
        region,
        interval,
        start,
        end,
        pools,
        trades,
        hashlib.sha256(data).hexdigest(),
        kid,
    )
