"""Sample inputs several test files share: a catalog offer, and the arguments of `cpnode orders
place`."""

from __future__ import annotations

from typing import Any

from node.offers import CatalogOffer


def catalog_offer(**changes: Any) -> CatalogOffer:
    """A valid catalog offer (`gpu` of pool-a in r1: 4 free units of 8 A100s at 100.00 CNY per
    unit-hour), with `changes` applied."""
    offer: CatalogOffer = {
        "id": "gpu",
        "pool": "pool-a",
        "region": "r1",
        "chip_vendor": "nvidia",
        "chip_model": "A100",
        "chips_per_unit": 8,
        "cpus": 64,
        "memory_mib": 1024,
        "storage_gib": 10,
        "free_units": 4,
        "price_per_unit_hour": 10_000,
        "currency": "CNY",
        "networks": [],
        "tags": [],
    }
    offer.update(changes)  # type: ignore[typeddict-item]  # the caller names CatalogOffer keys
    return offer


def place_args(
    offer: str = "shanghai-gpu",
    *more: str,
    consumer: str = "alice",
    units: int = 1,
    hours: int = 1,
) -> tuple[str, ...]:
    """The arguments of `cpnode orders place` for `consumer` ordering `units` of `offer` for `hours`,
    then `more` (`--source`, `--json`)."""
    return (
        "orders",
        "place",
        "--consumer",
        consumer,
        "--offer",
        offer,
        "--units",
        str(units),
        "--hours",
        str(hours),
        *more,
    )
