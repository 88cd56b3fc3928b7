"""The one offer placing reads (`node.peering.offers.partner_offer`): the row the merged view
gives for it, never a stale one once the partner's catalog changed after its offers were cached."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from federation import store
from node.peering import offers
from node.peering.offers import partner_offer, partner_offers
from tests.market.test_offer_cache import NOW, _offer, add_partner, receive


def test_one_offer_as_the_merged_view_gives_it(engine: Engine) -> None:
    """Each offer is the view's row for it (ages and catalog version too); an unknown offer, an
    unknown partner and an expired catalog give None."""
    add_partner(engine, "beta")
    receive(engine, "beta", 1, [_offer("b1", 100), _offer("b2", 200)], NOW, 3600)
    store.put_sync_state(engine, "beta", last_success_ts=NOW + 50)
    view = {row["id"]: row for row in partner_offers(engine, NOW + 60, "beta")}
    assert set(view) == {"b1", "b2"}
    for offer_id, row in view.items():
        assert partner_offer(engine, NOW + 60, "beta", offer_id) == row
    assert view["b1"]["age_s"] == 60
    assert view["b1"]["confirmed_age_s"] == 10
    assert partner_offer(engine, NOW + 60, "beta", "b3") is None
    assert partner_offer(engine, NOW + 60, "gamma", "b1") is None
    assert partner_offer(engine, NOW + 3600, "beta", "b1") is None  # expired
    assert partner_offers(engine, NOW + 3600, "beta") == []


def test_catalog_changed_after_the_cache_filled(engine: Engine) -> None:
    """A new catalog (changed price, withdrawn offer, new offer) is served at once, not the cached
    offers of the one before; a catalog seen again after the cache was emptied is parsed anew."""
    add_partner(engine, "beta")
    receive(engine, "beta", 1, [_offer("b1", 100), _offer("b2", 200)], NOW, 3600)
    first = partner_offer(engine, NOW + 1, "beta", "b1")
    assert first is not None
    assert (first["price_per_unit_hour"], first["catalog_version"]) == (100, 1)

    receive(engine, "beta", 2, [_offer("b1", 120), _offer("b3", 300)], NOW + 10, 3600)
    changed = partner_offer(engine, NOW + 11, "beta", "b1")
    assert changed is not None
    assert (changed["price_per_unit_hour"], changed["catalog_version"]) == (120, 2)
    assert changed["age_s"] == 1
    assert partner_offer(engine, NOW + 11, "beta", "b2") is None  # withdrawn
    added = partner_offer(engine, NOW + 11, "beta", "b3")
    assert added is not None
    assert added["price_per_unit_hour"] == 300

    offers._by_id.clear()
    offers._parsed.clear()
    again = partner_offer(engine, NOW + 12, "beta", "b1")
    assert again is not None
    assert again["price_per_unit_hour"] == 120
