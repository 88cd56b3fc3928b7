"""The node's offer types against the catalog's offer fields: `CatalogOffer` has exactly
federation.catalog.OFFER_FIELDS (required ones required, types alike), a merged-view row adds where
the offer comes from, and offers from the config are checked as catalogs check them."""

from __future__ import annotations

from typing import Any, get_args, get_origin, get_type_hints

import pytest

from federation.catalog import OFFER_FIELDS
from federation.errors import DocumentError
from node.offers import CatalogOffer, OfferRow, as_offer, group_of, offer_row
from tests.support.samples import catalog_offer

OFFER: dict[str, Any] = dict(catalog_offer(tags=["gpu"]))


def test_catalog_offer_is_the_catalogs_offer_fields() -> None:
    """Every field of OFFER_FIELDS is in CatalogOffer with its type, required exactly when required."""
    required = {name for name, (_, needed) in OFFER_FIELDS.items() if needed}
    assert CatalogOffer.__required_keys__ == required
    assert CatalogOffer.__optional_keys__ == set(OFFER_FIELDS) - required
    hints = get_type_hints(CatalogOffer)
    for name, (kind, needed) in OFFER_FIELDS.items():
        hint = hints[name]
        if not needed:
            assert type(None) in get_args(hint), name  # optional fields may be null in catalogs
            [hint] = [arg for arg in get_args(hint) if arg is not type(None)]
        assert (get_origin(hint) or hint) is kind, name


def test_a_row_is_an_offer_with_its_source() -> None:
    """A merged-view row has every offer field plus source, partner and ages; offer_row copies."""
    assert CatalogOffer.__required_keys__ < OfferRow.__required_keys__
    assert OfferRow.__required_keys__ - CatalogOffer.__required_keys__ == {
        "source",
        "partner",
        "age_s",
        "confirmed_age_s",
    }
    offer = as_offer(OFFER)
    row = offer_row(offer, "partner:shanghai", "shanghai", 5, 2)
    assert (row["source"], row["partner"], row["age_s"], row["confirmed_age_s"]) == (
        "partner:shanghai",
        "shanghai",
        5,
        2,
    )
    assert "source" not in offer


@pytest.mark.parametrize(
    ("change", "field"),
    [({"free_units": -1}, "free_units"), ({"capacity_cost": "2"}, "capacity_cost"), ({"tags": [1]}, "tags")],
)
def test_as_offer_checks_as_catalogs_do(change: dict[str, Any], field: str) -> None:
    """A malformed offer is refused naming its field (federation.catalog.check_offer)."""
    with pytest.raises(DocumentError, match=field):
        as_offer({**OFFER, **change})


def test_group_of_needs_group_cost_and_free() -> None:
    """Only an offer naming its group, a positive cost and the group's free units shares capacity."""
    assert group_of(as_offer(OFFER)) is None
    shared = as_offer({**OFFER, "capacity_group": "p/r", "capacity_cost": 2, "capacity_free": 8})
    assert group_of(shared) == ("p/r", 2, 8)
    assert (
        group_of(as_offer({**OFFER, "capacity_group": "p/r", "capacity_cost": 0, "capacity_free": 8})) is None
    )
