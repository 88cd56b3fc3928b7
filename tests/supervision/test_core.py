"""Supervision's pure cores: pool figures from offers, the signed report and its rules, totals,
staleness and the comparison with a catalog."""

from __future__ import annotations

from typing import Any

import pytest
from nacl.signing import SigningKey

from federation import canonical
from federation.documents import sign_document
from federation.errors import AuthError, DocumentError, FederationError, SignatureError
from federation.keys import key_id
from node.supervision.figures import pool_figures
from node.supervision.report import MAX_POOLS, TradeVolume, build_report, read_report
from node.supervision.totals import NodeLatest, compare_with_catalog, national_totals, node_flags
from tests.support.samples import catalog_offer

KEY = SigningKey.generate()
KEYS = {key_id(KEY.verify_key): KEY.verify_key}
NOW = 1_800_000_000


def offer(offer_id: str, free: int, **extra: Any) -> dict[str, Any]:
    """A catalog offer of pool-a (A100 x8 unless told otherwise)."""
    base = catalog_offer(
        id=offer_id, region="north", chip_vendor="NVIDIA", free_units=free, price_per_unit_hour=100
    )
    return {**base, **extra}


def report(**changes: Any) -> bytes:
    """Report 1 of `north` for `watch`, with `changes` applied to the document before signing."""
    body = build_report(
        node="north",
        audience="watch",
        seq=1,
        now_ts=NOW,
        region="north",
        interval_s=60,
        period=(NOW - 60, NOW),
        pools=pool_figures([offer("a", 3, compute_id="cid-1")], {"a": 1}),
        trades=[TradeVolume("CNY", orders=2, order_amount=500, unit_hours=4)],
        key=KEY,
    )
    if not changes:
        return body
    document = {k: v for k, v in canonical.decode(body).items() if k != "signatures"}
    document.update(changes)
    return canonical.encode(sign_document(document, KEY))


def test_capacity_is_free_plus_held_and_shared_groups_count_once() -> None:
    """An offer's capacity is its free units plus those open trades hold; flavors sharing one
    capacity group count once (by the one spanning most chips); chip models stay apart."""
    offers = [
        offer("one", 4, chips_per_unit=1, capacity_group="g", metric_score=900),
        offer("four", 1, chips_per_unit=4, capacity_group="g", metric_score=1000),
        offer("solo", 2, compute_id="cid-9"),
        offer("h", 1, chip_model="H100"),
    ]
    [a100, h100] = pool_figures(offers, {"four": 1, "solo": 1})
    assert (a100.chip_model, h100.chip_model) == ("A100", "H100")
    # group g: "four" spans (1 + 1) x 4 = 8 chips, more than "one" with 4 x 1; "solo": 3 units x 8.
    assert (a100.capacity_units, a100.free_units) == (2 + 3, 1 + 2)
    assert (a100.capacity_chips, a100.free_chips) == (8 + 24, 4 + 16)
    assert a100.utilisation_bp == (32 - 20) * 10_000 // 32
    assert a100.compute_ids == ("cid-9",)
    assert a100.metric_score == 1000


def test_a_report_reads_back_as_signed() -> None:
    """A report built and signed by a node reads back with its numbers, figures and trades."""
    read = read_report(report(), "north", "watch", KEYS, NOW)
    assert (read.seq, read.interval_s, read.period_start_ts, read.period_end_ts) == (1, 60, NOW - 60, NOW)
    [pool] = read.pools
    assert (pool["capacity_units"], pool["free_units"], pool["capacity_chips"]) == (4, 3, 32)
    assert pool["utilisation_bp"] == 2500
    assert read.trades == [
        {"currency": "CNY", "orders": 2, "order_amount": 500, "sales": 0, "sales_amount": 0, "unit_hours": 4}
    ]


@pytest.mark.parametrize(
    ("changes", "error", "code"),
    [
        ({"type": "cpnode.catalog.v1"}, DocumentError, "wrong_type"),
        ({"issuer": "south"}, AuthError, "wrong_issuer"),
        ({"audience": "elsewhere"}, AuthError, "wrong_audience"),
        ({"seq": 0}, DocumentError, "bad_report"),
        ({"interval_s": 0}, DocumentError, "bad_report"),
        ({"period_start_ts": NOW + 1}, DocumentError, "bad_report"),
        ({"issued_ts": NOW + 3600}, DocumentError, "issued_in_future"),
        ({"pools": [{"pool": "p"}]}, DocumentError, "bad_report"),
        ({"pools": "many"}, DocumentError, "bad_report"),
        ({"pools": [{}] * (MAX_POOLS + 1)}, DocumentError, "too_many_items"),
        ({"trades": [{"currency": "cny", "orders": 1}]}, DocumentError, "bad_report"),
    ],
)
def test_bad_reports_are_refused_naming_the_rule(
    changes: dict[str, Any], error: type[FederationError], code: str
) -> None:
    """Each broken rule refuses the report with its own code."""
    with pytest.raises(error) as caught:
        read_report(report(**changes), "north", "watch", KEYS, NOW)
    assert caught.value.code == code


def test_free_above_capacity_and_foreign_signatures_are_refused() -> None:
    """A figure with more free than capacity is refused, and so is a report signed by another key
    or altered after signing."""
    pool = canonical.decode(report())["pools"][0]
    with pytest.raises(DocumentError, match="free_units exceeds capacity_units"):
        read_report(report(pools=[{**pool, "free_units": 99}]), "north", "watch", KEYS, NOW)
    other = SigningKey.generate()
    with pytest.raises(SignatureError):
        read_report(report(), "north", "watch", {key_id(other.verify_key): other.verify_key}, NOW)
    tampered = report().replace(b'"orders":2', b'"orders":3')
    with pytest.raises(SignatureError):
        read_report(tampered, "north", "watch", KEYS, NOW)


def test_totals_add_latest_reports_by_region_and_chip_family() -> None:
    """Totals add each reporting node's pools by pool region and chip family (aliases of one chip
    are one family) and its trades by currency; a node that never reported adds nothing."""
    a = canonical.decode(report())
    b_pool = {**a["pools"][0], "chip_vendor": "nvidia", "chip_model": "A100 SXM4 80GB"}
    c_pool = {**a["pools"][0], "region": "south", "chip_vendor": "Acme", "chip_model": "X1"}
    nodes = [
        NodeLatest("north", 1, NOW, 60, "north", a["pools"], a["trades"]),
        NodeLatest("east", 4, NOW, 60, "east", [b_pool, c_pool], a["trades"]),
        NodeLatest("silent"),
    ]
    totals = national_totals(nodes)
    rows = {(r["region"], r["chip_family"]): r for r in totals["by_region_chip"]}
    assert set(rows) == {("north", "nvidia-a100"), ("south", "acme x1")}
    assert (rows[("north", "nvidia-a100")]["nodes"], rows[("north", "nvidia-a100")]["capacity_chips"]) == (
        2,
        64,
    )
    assert totals["reporting_nodes"] == 2
    assert totals["total"]["capacity_chips"] == 96
    assert totals["trades"] == [
        {"currency": "CNY", "orders": 4, "order_amount": 1000, "sales": 0, "sales_amount": 0, "unit_hours": 8}
    ]


def test_a_node_is_stopped_after_its_intervals_pass() -> None:
    """No report within `stale_intervals` of the node's own interval flags it stopped; a node that
    never reported is flagged so; a contradicting check adds its flag."""
    latest = NodeLatest("north", 3, NOW, 60, check_status="contradiction")
    assert node_flags(latest, NOW + 180, 3) == ["contradicts_catalog"]
    assert node_flags(latest, NOW + 181, 3) == ["stopped", "contradicts_catalog"]
    assert node_flags(NodeLatest("new"), NOW, 3) == ["never_reported"]


def test_catalog_comparison_names_each_contradiction() -> None:
    """A catalog agreeing with the report gives nothing; more free chips than the reported capacity,
    a pool only in the catalog, one only in the report, or an unreported identifier is named."""
    reported = canonical.decode(report())["pools"]
    assert compare_with_catalog(reported, [offer("a", 3, compute_id="cid-1")]) == []
    problems = compare_with_catalog(
        reported,
        [offer("a", 5, compute_id="cid-2"), offer("b", 1, pool="pool-b")],
    )
    text = "\n".join(problems)
    assert "40 free chips, the report's capacity is 32" in text
    assert "5 free units, the report's capacity is 4" in text
    assert "cid-2" in text
    assert "pool pool-b (north) NVIDIA A100: in the catalog but not reported" in text
    assert compare_with_catalog(reported, []) == [
        "pool pool-a (north) NVIDIA A100: reported but not in the catalog"
    ]
