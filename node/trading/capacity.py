"""Capacity: the node's own offers as its pools report them, and as partners and consumers see them.

An open trade (a sale to a partner, or a local order) reserves units of its offer in
`trading_reservations` until it is settled, voided or its hold's deadline passes. Capacity is
counted per pool region, not per offer: offers whose pool says its flavors share one capacity
(`capacity_group`, e.g. the `local` pool's slots, node.offers) take `units × capacity_cost` of the
group, so reserving a `local-4` lowers the free units of `local-1` and `local-2` too. Every offer
source of the node is wrapped so that the offers it yields — in catalogs issued to partners, in
`/api/v1/offers` and so in matching — show what open reservations leave (`free_after`); a catalog
whose free units changed gets a new version on the partner's next poll. Reserving checks the
pools' own free units (the raw sources) against open reservations of the offer and of its group
under a lock in the database (node.trading.store), so two trades — on one replica or several —
never both take the last free units; the free units a catalog shows are a snapshot, as ever.

A wrapped source that declares `content_version()` (federation.issuing: the catalog issuer then
skips calling it while the version stands) keeps declaring one: its own version plus the version
of the last reservations read, which every call of a wrapped source and a refresh every
`REFRESH_S` (component lifecycle, per process, so other replicas' reservations are seen) renew.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Hashable, Mapping, MutableMapping
from typing import cast

from sqlalchemy.engine import Engine

from federation.issuing import OfferSource as FederationOfferSource
from federation.issuing import source_version
from node.db import in_thread
from node.offers import CatalogOffer, OfferSource, group_of
from node.trading import reservations

REFRESH_S = 1.0
log = logging.getLogger("cpnode.trading")


class ReservedView:
    """An offer source whose offers show free units minus open reservations."""

    def __init__(self, inner: OfferSource, capacity: Capacity) -> None:
        self.inner = inner
        self._capacity = capacity

    def content_version(self) -> Hashable | None:
        """The inner source's version with the reservations' (None when the inner one has none)."""
        inner = source_version(cast(FederationOfferSource, self.inner))
        return None if inner is None else (inner, self._capacity.version)

    @property
    def capacity(self) -> Capacity:
        """The reservations it takes off (the market's offer cache reads them now, once for all
        the sources that share them, before it reads their versions)."""
        return self._capacity

    async def __call__(self) -> list[CatalogOffer]:
        offers = await self.inner()
        reserved = await self._capacity.reserved()
        if not reserved.by_offer:
            return offers
        return [free_after(offer, reserved) for offer in offers]


def free_after(offer: CatalogOffer, reserved: reservations.Reserved) -> CatalogOffer:
    """`offer` with what open reservations leave: its own reserved units taken off its free units
    and, when it shares a capacity group, no more free units than the group's free units left
    (`capacity_free`, lowered by every reservation in the group) can pay for."""
    taken = reserved.by_offer.get(offer["id"], 0)
    group = group_of(offer)
    if not taken and (group is None or group[0] not in reserved.by_group):
        return offer
    result = cast(CatalogOffer, dict(offer))
    free = offer["free_units"] - taken
    if group is not None:
        name, cost, group_free = group
        left = max(0, group_free - reserved.by_group.get(name, 0))
        result["capacity_free"] = left
        free = min(free, left // cost)
    result["free_units"] = max(0, free)
    return result


class Capacity:
    """The node's own offers, raw or with reservations taken off."""

    def __init__(self, engine: Engine, clock: Callable[[], int] = lambda: int(time.time())) -> None:
        self._engine = engine
        self._clock = clock
        self._raw: dict[str, OfferSource] = {}
        self._views: dict[str, ReservedView] = {}
        self._reserved: reservations.Reserved | None = reservations.Reserved({}, {})
        self.version = ""  # changes whenever the reservations read last differ from those before
        self._reading = asyncio.Lock()
        self._asked = 0  # refreshes asked for
        self._read_upto = 0  # every refresh asked for up to this one was served by a read begun after it
        self._changes = 0  # changes made here (`changed`)

    def wrap(self, sources: MutableMapping[str, OfferSource]) -> None:
        """Replace every source in `sources` (the node's offer sources) by its reserved view."""
        for name, source in list(sources.items()):
            inner = source.inner if isinstance(source, ReservedView) else source
            self._raw[name] = inner
            sources[name] = self._views[name] = ReservedView(inner, self)

    @property
    def raw_sources(self) -> Mapping[str, OfferSource]:
        """The unwrapped sources, by name."""
        return self._raw

    @property
    def views(self) -> Mapping[str, OfferSource]:
        """The sources with reservations taken off (as partners and consumers see them), by name."""
        return self._views

    async def raw_offers(self) -> list[tuple[str, CatalogOffer]]:
        """(source name, offer) for every offer as the pools report it."""
        result: list[tuple[str, CatalogOffer]] = []
        for name, source in self._raw.items():
            result.extend((name, offer) for offer in await source())
        return result

    async def find(self, offer_id: str) -> tuple[str, CatalogOffer] | None:
        """(source name, raw offer) of one offer id, or None."""
        return next(
            ((name, offer) for name, offer in await self.raw_offers() if offer.get("id") == offer_id), None
        )

    async def reserved(self) -> reservations.Reserved:
        """What open reservations hold, by offer id and by capacity group (read now)."""
        return self.take(await in_thread(self._engine, reservations.reserved, self._clock()))

    def read(self) -> reservations.Reserved:
        """What open reservations hold now: a blocking read, to run off the event loop (with other
        reads, as the market's offer cache does); `take` its result on the loop."""
        return reservations.reserved(self._engine, self._clock())

    def take(self, reserved: reservations.Reserved) -> reservations.Reserved:
        """Keep `reserved` as the reservations last read (the version follows when they changed)."""
        if reserved != self._reserved:
            self._reserved = reserved
            state = (sorted(reserved.by_offer.items()), sorted(reserved.by_group.items()))
            self.version = hashlib.sha256(repr(state).encode()).hexdigest()[:16]
        return reserved

    def changed(self) -> None:
        """Note that this process changed the reservations (a trade opened, settled or ended): the
        version changes at once, so whatever keys on it (a partner's catalog) calls its source
        again, which reads them anew. Nothing is read here: a read per trade of every open
        reservation cost the seller more than the rest of the trade's statements."""
        self._changes += 1
        self._reserved = None
        self.version = f"changed-{self._changes}"  # never a hash of `take`

    async def keep_fresh(self) -> None:
        """Read the reservations every `REFRESH_S` until cancelled (the component's lifecycle)."""
        while True:
            await asyncio.sleep(REFRESH_S)
            await self.refresh()

    async def refresh(self) -> None:
        """Read the reservations now, after a change (a database hiccup is left to the next round).

        Concurrent callers share reads: a caller whose request came before a read started is
        served by that read, so many trades finishing together cost one or two reads, not one each."""
        self._asked += 1
        asked = self._asked
        async with self._reading:
            if self._read_upto >= asked:  # a read that started after this call was made has run
                return
            upto = self._asked
            try:
                await self.reserved()
            except Exception as exc:  # the next refresh tries again; offers are served meanwhile
                log.debug("could not read the capacity reservations: %s", exc)
            self._read_upto = upto
