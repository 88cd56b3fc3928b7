"""Planning a migration from what the pools and the network say now (the I/O around
node.migration.decision): the source instance, fresh offers, the state's size and the topology."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from connectors.contract import Instance
from connectors.errors import NotFound, PluginNotFound
from node.migration.core import MigrationCore
from node.migration.decision import Decision, Objective, Request, decide
from node.migration.errors import MigrationRequestError


@dataclass(frozen=True)
class Ask:
    """What a caller asks: move `instance_id` of `source_pool` to `to_pool` or `offer_id` (or the
    best destination), with a path of `bandwidth_mbps`, ranked by `objective` over `hours`."""

    source_pool: str
    instance_id: str
    to_pool: str | None = None
    offer_id: str | None = None
    bandwidth_mbps: int | None = None
    hours: int = 1
    objective: Objective = "cost"
    state_bytes: int | None = None


async def source_instance(core: MigrationCore, pool: str, instance_id: str) -> Instance:
    """The instance to move, running with a deployed program; MigrationRequestError otherwise."""
    try:
        instance = await core.instance(pool, instance_id)
    except PluginNotFound:
        raise MigrationRequestError(f"no pool named {pool!r}", code="unknown_pool") from None
    except NotFound:
        raise MigrationRequestError(
            f"pool {pool} has no instance {instance_id!r}", code="unknown_instance"
        ) from None
    if instance.state != "running" or instance.program is None:
        raise MigrationRequestError(
            f"instance {instance_id} on {pool} is {instance.state}; only a running program migrates",
            code="source_not_running",
        )
    return instance


async def plan(core: MigrationCore, ask: Ask) -> tuple[Decision, Instance, int]:
    """Rank the destinations for `ask` from fresh offers (every pool's data source fetched now) and
    the network's current topology: (decision, source instance, state bytes estimated)."""
    host = core.plugins()
    source = await source_instance(core, ask.source_pool, ask.instance_id)
    state_bytes = ask.state_bytes
    if state_bytes is None:
        endpoint = await core.compute(ask.source_pool, lambda p: p.storage_endpoint(ask.instance_id))
        state_bytes = sum(f.size_bytes for f in await core.storage_files(endpoint, "source"))
    await host.refresh()
    network = core.settings.network
    topology = None if network is None else await core.network(network, lambda n: n.topology())
    request = Request(
        source_pool=ask.source_pool,
        source_region=source.region_id,
        source_flavor=source.flavor_id,
        state_bytes=state_bytes,
        bandwidth_mbps=ask.bandwidth_mbps or core.settings.bandwidth_mbps,
        hours=ask.hours,
        objective=ask.objective,
        to_pool=ask.to_pool,
        offer_id=ask.offer_id,
    )
    return decide(request, host.offers(), core.sites, topology), source, state_bytes


def destination_fields(core: MigrationCore, ask: Ask, decision: Decision, state_bytes: int) -> dict[str, Any]:
    """The migration's fields for the chosen destination; MigrationRequestError (`no_destination`,
    with why each offer was left out) when nothing fits."""
    chosen = decision.chosen
    if chosen is None:
        named = ask.offer_id or ask.to_pool
        why = [e for e in decision.excluded if e.reason != "not_requested"] if named else decision.excluded
        reasons = "; ".join(f"{e.offer_id}: {e.reason} ({e.message})" for e in why[:10]) or "no offers"
        raise MigrationRequestError(
            f"no destination can take this instance: {reasons}",
            code="no_destination",
            excluded=[{"offer_id": e.offer_id, "reason": e.reason, "message": e.message} for e in why],
        )
    return {
        "destination_pool": chosen.pool,
        "destination_region": chosen.region,
        "destination_flavor": chosen.flavor,
        "network": core.settings.network if chosen.route is not None else None,
        "source_site": core.sites.get(ask.source_pool),
        "destination_site": chosen.site,
        "bandwidth_mbps": ask.bandwidth_mbps or core.settings.bandwidth_mbps,
        "plan": {**decision.view(), "state_bytes": state_bytes, "ask": asdict(ask)},
    }
