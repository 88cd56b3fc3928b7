"""Reading the network view (the I/O around node.network.view): every online network plugin's
topology, and round trips measured to partner nodes, merged and stored."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import aiohttp
from sqlalchemy.engine import Engine

from connectors.errors import ConnectorError
from connectors.network.contract import Topology
from connectors.table import PluginTable
from federation.partners import Partner
from node.db import in_thread
from node.network.settings import NetworkSection
from node.network.store import load_view, save_view
from node.network.view import NetworkView, measured_links, merge

PARALLEL = 16  # partners measured at once


async def topologies(
    host: PluginTable, timeout_s: float
) -> tuple[dict[str, Topology], list[tuple[str, str]]]:
    """Each online network plugin's topology, and (plugin, error) for those that could not answer."""
    found: dict[str, Topology] = {}
    errors: list[tuple[str, str]] = []
    for hosted in host.plugins():
        if hosted.kind != "network":
            continue
        if hosted.state != "online":
            errors.append((hosted.name, f"the plugin is {hosted.state}"))
            continue
        try:
            found[hosted.name] = await host.call_network(hosted.name, lambda n: n.topology(), timeout_s)
        except ConnectorError as exc:
            errors.append((hosted.name, str(exc)))
    return found, errors


async def _round_trip(session: aiohttp.ClientSession, url: str) -> int:
    """The best of three round trips (µs) of `GET url`."""
    best: int | None = None
    for _ in range(3):
        started = time.perf_counter_ns()
        async with session.get(url) as response:
            await response.read()
        took = (time.perf_counter_ns() - started) // 1000
        best = took if best is None else min(best, took)
    assert best is not None
    return best


async def round_trips(
    partners: Sequence[Partner], timeout_s: float
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The round trip (µs) of `GET /healthz` to each partner's first URL, the best of three; the
    partners are measured at the same time, at most `PARALLEL` at once."""
    measured: dict[str, int] = {}
    errors: list[tuple[str, str]] = []
    gate = asyncio.Semaphore(PARALLEL)

    async def one(session: aiohttp.ClientSession, partner: Partner) -> None:
        url = partner.urls[0].rstrip("/") + "/healthz"
        async with gate:
            try:
                measured[partner.name] = await _round_trip(session, url)
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append((f"measured:{partner.name}", f"{url}: {exc or type(exc).__name__}"))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        await asyncio.gather(*(one(session, partner) for partner in partners))
    return dict(sorted(measured.items())), sorted(errors)


async def read_view(
    host: PluginTable | None,
    partners: Sequence[Partner],
    settings: NetworkSection,
    now_ts: int,
    previous: NetworkView | None = None,
) -> NetworkView:
    """The merged view now: plugins' topologies (when the plugins are hosted here) and measured
    links. A plugin that cannot be read now keeps the links it had in `previous`, and is named in
    the view's errors, so one failed read does not leave matching without a network."""
    found, errors = ({}, []) if host is None else await topologies(host, settings.measure_timeout_s * 5)
    kept = []
    if previous is not None and errors:
        failed = {name for name, _ in errors}
        kept = [link for link in previous.links if link.network in failed]
        errors = [
            (name, f"{message} (its last links are kept)" if name in {k.network for k in kept} else message)
            for name, message in errors
        ]
    links = []
    if settings.site is not None and settings.measure_partners and partners:
        rtts, failed_rtts = await round_trips(partners, settings.measure_timeout_s)
        errors += failed_rtts
        links = measured_links(settings.site, rtts)
    if settings.site is not None and not merge(found, [*kept, *links]).knows(settings.site):
        errors.append(("network", f"this node's site {settings.site!r} is in no topology"))
    return merge(found, [*kept, *links], now_ts, errors)


async def refresh(
    engine: Engine, host: PluginTable | None, partners: Sequence[Partner], settings: NetworkSection
) -> NetworkView:
    """Read the view now (the stored one supplies the links of plugins that cannot be read) and
    store it as the current one."""
    previous = await in_thread(engine, load_view)
    view = await read_view(host, partners, settings, int(time.time()), previous)
    await in_thread(engine, save_view, view)
    return view
