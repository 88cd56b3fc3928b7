"""Offers from data sources (pure): one offer per priced (region, flavor), with identifier and scores.

An offer joins a snapshot's region, flavor, price and free capacity (with the region's shared
capacity when its flavors share one, e.g. the `local` pool's slots); it carries the compute
identifier (when the pool's identity is configured) and the metric's static, dynamic and
composite scores in thousandths. A flavor without a price is not for sale and yields no offer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from connectors.contract import DataSource, Flavor, Model, Name
from connectors.errors import ConnectorError
from connectors.identifier import ComputeIdentifier
from connectors.metric import CPU_CHIP, composite_score, dynamic_score, load_chips, milli, static_score


@dataclass(frozen=True)
class PoolIdentity:
    """The identifier fields a pool's operator configures (the rest come from the data source)."""

    industry: str
    enterprise: str
    datacenter: str
    service: str = "VM"


class Offer(Model):
    """Something this node can sell from one pool: a flavor in a region, its price, free count and scores."""

    offer_id: str
    pool: Name
    region_id: Name
    city: str
    flavor_id: Name
    chip_model: Name
    chip_vendor: str
    chips: int
    cpus: int
    memory_mib: int
    storage_gib: int
    network_gbps: int
    currency: str
    price_minor_per_hour: int
    free: int
    total: int
    # When the flavor draws on its region's shared capacity: the unit, the cost of one instance in
    # it, and how many units are free (else cost 0 and None).
    capacity_unit: str | None = None
    capacity_cost: int = 0
    capacity_free: int | None = None
    identifier: str | None
    score_static_milli: int
    score_dynamic_milli: int
    score_composite_milli: int
    fetched_ms: int


def _identifier(pool: str, flavor: Flavor, city: str, identity: PoolIdentity, static: float) -> str:
    chips = load_chips()
    if flavor.chip_model == CPU_CHIP or flavor.chips == 0:
        resource, chip, tflops = "CPU", "CPU", round(static * chips["nvidia-a100"].values["fp16_tflops"])
    else:
        spec = chips[flavor.chip_model]
        resource, chip = spec.resource, spec.key.upper()
        tflops = round(spec.values["fp16_tflops"] * flavor.chips)
    serial = re.sub(r"[^A-Z0-9-]", "-", f"{pool}-{flavor.id}".upper())[:32].strip("-") or "X"
    return ComputeIdentifier(
        city=city,
        industry=identity.industry,
        enterprise=identity.enterprise,
        resource=resource,
        datacenter=identity.datacenter,
        service=identity.service,
        compute_tflops=tflops,
        storage_gib=flavor.storage_gib,
        network_gbps=flavor.network_gbps,
        chip=chip,
        serial=serial,
    ).encode()


def build_offers(
    pool: str,
    data: DataSource,
    fetched_ms: int,
    identity: PoolIdentity | None = None,
) -> list[Offer]:
    """The offers of one pool's snapshot; flavors the metric cannot score are skipped, not guessed."""
    regions = {r.id: r for r in data.regions}
    flavors = {f.id: f for f in data.flavors}
    capacity = {(c.region_id, c.flavor_id): c for c in data.capacity}
    shared = {s.region_id: s for s in data.shared}
    usage = {u.region_id: u for u in data.usage}
    chips = load_chips()
    offers: list[Offer] = []
    for price in data.prices:
        region, flavor = regions.get(price.region_id), flavors.get(price.flavor_id)
        if region is None or flavor is None:
            continue
        try:
            static = static_score(flavor, data.measurement)
        except ConnectorError:
            continue
        dynamic = dynamic_score(usage.get(region.id))
        room = capacity.get((region.id, flavor.id))
        pool_room = shared.get(region.id) if room is not None and room.cost else None
        spec = chips.get(flavor.chip_model)
        offers.append(
            Offer(
                offer_id=f"{pool}/{region.id}/{flavor.id}",
                pool=pool,
                region_id=region.id,
                city=region.city,
                flavor_id=flavor.id,
                chip_model=flavor.chip_model,
                chip_vendor=spec.vendor if spec else "host CPU",
                chips=flavor.chips,
                cpus=flavor.cpus,
                memory_mib=flavor.memory_mib,
                storage_gib=flavor.storage_gib,
                network_gbps=flavor.network_gbps,
                currency=price.currency,
                price_minor_per_hour=price.minor_per_hour,
                free=room.free if room else 0,
                total=room.total if room else 0,
                capacity_unit=pool_room.unit if pool_room else None,
                capacity_cost=room.cost if room and pool_room else 0,
                capacity_free=pool_room.free if pool_room else None,
                identifier=_identifier(pool, flavor, region.city, identity, static) if identity else None,
                score_static_milli=milli(static),
                score_dynamic_milli=milli(dynamic),
                score_composite_milli=milli(composite_score(static, dynamic)),
                fetched_ms=fetched_ms,
            )
        )
    return offers


def offers_from_snapshots(
    snapshots: Mapping[str, tuple[DataSource, int]],
    identities: Mapping[str, PoolIdentity] | None = None,
) -> list[Offer]:
    """Offers of every pool's snapshot, sorted by offer id."""
    identities = identities or {}
    result = [
        offer
        for pool, (data, fetched_ms) in snapshots.items()
        for offer in build_offers(pool, data, fetched_ms, identities.get(pool))
    ]
    return sorted(result, key=lambda offer: offer.offer_id)
