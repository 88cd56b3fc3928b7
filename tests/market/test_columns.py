"""The vectorised rules (node.market.columns) give every offer the same first broken rule as the
market's matching, on every reason's constructed case and on generated demands and offers."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings

from node.market import Demand, match
from node.market.columns import build_columns, reasons
from node.market.matching import REASONS
from node.offers import OfferRow
from tests.market.test_matching import CNY, demand, demands_st, offer, offers_st
from tests.support.examples import examples


def vectorised(d: Demand, rows: list[OfferRow]) -> dict[tuple[str, str], str | None]:
    """Each offer's reason from the columns (None: it satisfies the demand)."""
    codes = reasons(d, build_columns(rows), CNY)
    return {
        (str(row["source"]), str(row["id"])): (REASONS[c] if c >= 0 else None)
        for row, c in zip(rows, codes.tolist(), strict=True)
    }


def by_matching(d: Demand, rows: list[OfferRow]) -> dict[tuple[str, str], str | None]:
    """Each offer's reason from `match`."""
    result = match(d, rows, CNY)
    out: dict[tuple[str, str], str | None] = {(m.source, m.offer_id): None for m in result.matches}
    out.update({(e.source, e.offer_id): e.reason for e in result.excluded})
    return out


@pytest.mark.parametrize(
    ("fields", "row", "reason"),
    [
        ({"chip_model": "h100"}, {}, "chip_mismatch"),
        ({"chip_vendor": "NVIDIA"}, {}, None),
        ({"min_memory_mib": 600_000}, {}, "too_small"),
        ({"regions": ["shanghai"]}, {}, "region"),
        ({"tags": ["gpu", "rdma"]}, {}, "tags"),
        ({"max_price_per_unit_hour": 999}, {}, "price_above_max"),
        ({"currency": "USD"}, {}, "currency"),
        ({}, {"free_units": 1}, "not_enough_free_units"),
        ({"min_metric_score": 1}, {}, "no_metric_score"),
        ({"sources": ["partner"]}, {}, "source_excluded"),
        ({}, {"catalog_expired": True}, "catalog_expired"),
        ({"max_age_s": 60}, {"confirmed_age_s": 61}, "catalog_stale"),
        ({}, {"price_per_unit_hour": 2**60}, "bad_amount"),
        ({}, {"free_units": "many"}, "bad_offer"),
        ({}, {"cpus": -1}, "bad_offer"),
        ({"framework": "pytorch>=2.4"}, {"chip_model": "no-such-chip"}, "no_framework_image"),
    ],
)
def test_each_reason_as_matching_gives_it(
    fields: dict[str, Any], row: dict[str, Any], reason: str | None
) -> None:
    """One offer breaking one rule gets that rule's reason from the columns, as from matching."""
    d, rows = demand(**fields), [offer("a", **row)]
    assert vectorised(d, rows) == by_matching(d, rows) == {("own:config", "a"): reason}


@settings(max_examples=examples(300), deadline=None)
@given(d=demands_st, rows=offers_st)
def test_columns_agree_with_matching_offer_by_offer(d: Demand, rows: list[OfferRow]) -> None:
    """On generated demands and offers, every offer's first broken rule is the same both ways."""
    assert vectorised(d, rows) == by_matching(d, rows)
