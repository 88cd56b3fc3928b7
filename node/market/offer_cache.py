"""The merged offer view as columns (node.market.columns), kept while the offer set stands.

Building the columns of 100,000 offers takes seconds; matching one demand over them takes
milliseconds. So each process keeps the columns of the offer set it saw last, with that set's
version, and reads the version again for every demand (a few small queries, no catalog bodies):

- own offers: each offer source's declared `content_version()` (the pools' live host or stored
  snapshots, the config's offers), with what versions are read from read now in the same thread
  hop as the catalogs (`ReadsVersion`: the open reservations, node.trading.capacity, once for
  every source that shares them; the stored snapshots' times on a process without the connectors
  role, node.pools.component.StoredOffers); a source that declares no version is called, and its
  offers are their own version;
- partners' catalogs: partner, version, sha256 and received time of every stored catalog (read
  without bodies), whether each has expired, and which of the expired ones' partners are still
  partners (an expired catalog is shown, marked, while its partner is one);
- the network view: an offer whose catalog declares no site sits at its partner's measured
  pseudo-site when the view has one.

The rows are not kept as a copy: a partner's row is made when read (an answer shows it) from the
parsed catalog offer node.peering.offers keeps (`ViewRows`), so the cache adds only the columns
(about 11 MiB at 100,000 offers) to the parsed catalogs, not the rows' copy (about 45 MiB).

Any change gives another version, and the demand that sees it rebuilds (one build at a time per
process; demands arriving meanwhile wait for it, then use it). The version is read before the
offers, so a build is never older than the version it is kept under. Ages are not part of the
version: they are worked out at each demand from the times each catalog was received and last
confirmed by a sync round (read with the version), as `node.market.view` works them out. With
several API processes over one database each keeps its own cache, keyed by what it reads from the
database, so no process answers from an offer set another one has changed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast, overload, runtime_checkable

from sqlalchemy.engine import Engine

from federation import store
from federation.issuing import OfferSource as FederationOfferSource
from federation.issuing import source_version
from node.db import in_thread
from node.network.view import NetworkView
from node.offers import CatalogOffer, OfferRow, OfferSource, offer_row
from node.peering.offers import catalog_offers

if TYPE_CHECKING:
    # NumPy and the column code are loaded when offers are first placed, not by every process.
    from node.market.columns import Ints, OfferColumns

T = TypeVar("T")


@dataclass(frozen=True)
class CatalogState:
    """What decides the partners' part of the offer set at one moment, and their sync times."""

    heads: tuple[tuple[str, int, str, int, int], ...]  # partner, version, sha256, received, expires
    expired: tuple[str, ...]  # partners (still partners) whose catalog has expired, by name
    synced: dict[str, int]  # partner → when a sync round last found its catalog current

    @property
    def key(self) -> object:
        """The part of the version the catalogs give (sync times left out: they only age offers)."""
        return self.heads, self.expired


def _state(catalogs: Sequence[Mapping[str, Any]], engine: Engine, now_ts: int) -> CatalogState:
    heads = tuple(
        (str(c["partner"]), int(c["version"]), str(c["sha256"]), int(c["received_ts"]), int(c["expires_ts"]))
        for c in catalogs
    )
    stale = {head[0] for head in heads if head[4] <= now_ts}
    expired = tuple(p.name for p in store.list_partners(engine) if p.name in stale) if stale else ()
    return CatalogState(heads, expired, {})


def catalog_state(engine: Engine, now_ts: int) -> CatalogState:
    """The stored catalogs' heads (no bodies), the expired ones and the sync times, read now."""
    state = _state(store.received_catalogs(engine, bodies=False), engine, now_ts)
    synced = {
        partner: int(found.get("last_success_ts") or 0)
        for partner, found in store.sync_states(engine).items()
    }
    return replace(state, synced=synced)


@runtime_checkable
class ReadsVersion(Protocol):
    """What a source's version comes from, read off the event loop (`read`, blocking, in the
    demand's thread hop) and kept on it (`take`): the reservations (node.trading.capacity), the
    pools' stored snapshot times (node.pools.component.StoredOffers)."""

    def read(self) -> Any:
        """Read the state now (blocking)."""

    def take(self, value: Any) -> Any:
        """Keep what `read` gave."""


def _inner(source: object) -> object:
    return getattr(source, "inner", None)


def readers(sources: Mapping[str, OfferSource]) -> list[ReadsVersion]:
    """What the sources' versions are read from (the reservations they take off, and the sources
    — or the sources they wrap — that read their own version), each once."""
    found: dict[int, ReadsVersion] = {}
    for s in sources.values():
        for candidate in (getattr(s, "capacity", None), s, _inner(s)):
            if isinstance(candidate, ReadsVersion):
                found[id(candidate)] = candidate
    return list(found.values())


def reads_version(source: OfferSource) -> bool:
    """Whether the source (or the one it wraps) declares a version once `readers` were read."""
    return isinstance(source, ReadsVersion) or isinstance(_inner(source), ReadsVersion)


async def unversioned(sources: Mapping[str, OfferSource]) -> dict[str, list[CatalogOffer]]:
    """The offers of the sources that declare no version (called now: their offers are their version)."""
    names = [name for name, s in sources.items() if source_version(cast(FederationOfferSource, s)) is None]
    offers = await asyncio.gather(*(sources[name]() for name in names))
    return dict(zip(names, offers, strict=True))


def own_version(
    sources: Mapping[str, OfferSource], called: Mapping[str, list[CatalogOffer]]
) -> tuple[object, ...]:
    """Per source: its declared version (after the reservations it takes off were read and taken),
    else the offers it gave (`called`)."""
    return tuple(
        (name, ("offers", called[name]) if name in called else source_version(cast(FederationOfferSource, s)))
        for name, s in sources.items()
    )


@dataclass(frozen=True)
class _Times:
    """Per row, what its ages are worked out from (own rows: -1 partner, ages 0)."""

    partner: Ints  # index in `partners`, -1 for an own offer
    partners: tuple[str, ...]
    received: Ints
    then: Ints  # the last second its catalog was valid (expired catalogs), else -1 (now)


class ViewRows(Sequence[OfferRow]):
    """The rows of a cached view, made when read: own offers' rows as kept, a partner's offer as a
    row of the merged view made from its parsed catalog offer (the very objects node.peering.offers
    keeps per catalog: no second copy is held), with its ages at one moment (`aged`)."""

    def __init__(
        self,
        own: Sequence[OfferRow],
        offers: Sequence[CatalogOffer],
        times: _Times,
        versions: Sequence[int],
        expired: Sequence[bool],
        ages: tuple[Ints, Ints] | None = None,
    ) -> None:
        self._own, self._offers, self._times = own, offers, times
        self._versions, self._expired, self._ages = versions, expired, ages

    def aged(self, age_s: Ints, confirmed: Ints) -> ViewRows:
        """The same rows, each read with these ages (age since received, confirmed age)."""
        return ViewRows(
            self._own, self._offers, self._times, self._versions, self._expired, (age_s, confirmed)
        )

    def __len__(self) -> int:
        return len(self._own) + len(self._offers)

    def _at(self, i: int) -> OfferRow:
        if i < len(self._own):
            return self._own[i]
        p = int(self._times.partner[i])
        partner = self._times.partners[p]
        age_s, confirmed = (int(self._ages[0][i]), int(self._ages[1][i])) if self._ages else (0, 0)
        row = offer_row(self._offers[i - len(self._own)], f"partner:{partner}", partner, age_s, confirmed)
        row["catalog_version"] = self._versions[p]
        if self._expired[p]:
            row["catalog_expired"] = True
        return row

    @overload
    def __getitem__(self, index: int) -> OfferRow: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[OfferRow]: ...

    def __getitem__(self, index: int | slice) -> OfferRow | Sequence[OfferRow]:
        if isinstance(index, slice):
            return [self._at(i) for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self._at(index if index >= 0 else index + len(self))


@dataclass(frozen=True)
class CachedView:
    """The columns of one offer set, built once, with what their ages are worked out from."""

    key: object
    network: NetworkView
    columns: OfferColumns
    times: _Times

    def at(self, now_ts: int, synced: Mapping[str, int]) -> OfferColumns:
        """The columns with every offer's ages at `now_ts` (as node.market.view gives them)."""
        import numpy as np

        t = self.times
        own = t.partner < 0
        if own.all():
            return self.columns
        synced_ts = np.array([synced.get(p, 0) for p in t.partners] or [0], np.int64)
        confirmed_ts = np.maximum(t.received, synced_ts[np.maximum(t.partner, 0)])
        then = np.where(t.then >= 0, t.then, now_ts)
        age_s = np.maximum(0, then - t.received) + (now_ts - then)
        confirmed = np.maximum(0, then - confirmed_ts) + (now_ts - then)
        age_s[own] = 0
        confirmed[own] = 0
        rows = cast(ViewRows, self.columns.rows).aged(age_s, confirmed)
        return replace(self.columns, rows=rows, age=confirmed, age_s=age_s)


def _read_catalogs(engine: Engine, now_ts: int) -> tuple[CatalogState, list[dict[str, Any]]]:
    """The catalogs with their bodies, and the state they make (read together, for a build)."""
    catalogs = store.received_catalogs(engine)
    return _state(catalogs, engine, now_ts), catalogs


def build_view(
    key: object,
    network: NetworkView,
    own: list[tuple[str, CatalogOffer]],
    catalogs: list[dict[str, Any]],
    expired: Sequence[str],
    now_ts: int,
    site: Callable[[OfferRow], str | None],
) -> CachedView:
    """The cached view of own offers and stored catalogs: own offers first, then the unexpired
    catalogs' offers by partner, then those of the expired catalogs of `expired` partners, marked."""
    import numpy as np

    from node.market.columns import build_columns

    rows: list[OfferRow] = [offer_row(offer, f"own:{name}", None, 0, 0) for name, offer in own]
    own_rows = list(rows)
    partner_of: list[int] = [-1] * len(rows)
    received: list[int] = [0] * len(rows)
    then: list[int] = [-1] * len(rows)
    partners: list[str] = []
    parsed: list[CatalogOffer] = []
    versions: list[int] = []
    marked: list[bool] = []
    by_partner = {str(c["partner"]): c for c in catalogs}
    live = [c for c in catalogs if int(c["expires_ts"]) > now_ts]
    gone = [by_partner[p] for p in expired if p in by_partner]
    for catalog, is_expired in [*((c, False) for c in live), *((c, True) for c in gone)]:
        partner = str(catalog["partner"])
        index = len(partners)
        partners.append(partner)
        offers = catalog_offers(str(catalog["sha256"]), bytes(catalog["body"]))
        parsed.extend(offers)
        versions.append(int(catalog["version"]))
        marked.append(is_expired)
        for offer in offers:
            row = offer_row(offer, f"partner:{partner}", partner, 0, 0)
            row["catalog_version"] = int(catalog["version"])
            if is_expired:
                row["catalog_expired"] = True
            rows.append(row)
        partner_of.extend([index] * len(offers))
        received.extend([int(catalog["received_ts"])] * len(offers))
        then.extend([int(catalog["expires_ts"]) - 1 if is_expired else -1] * len(offers))
    times = _Times(
        np.array(partner_of, np.int64),
        tuple(partners),
        np.array(received, np.int64),
        np.array(then, np.int64),
    )
    columns = build_columns(rows, site)  # from rows made once; then only the parsed offers are kept
    kept = ViewRows(own_rows, parsed, times, versions, marked)
    return CachedView(key, network, replace(columns, rows=kept), times)


def _nothing() -> None:
    return None


class OfferCache:
    """One process's cached columns of the merged offer view (see the module docstring)."""

    def __init__(self, engine: Engine, sources: Mapping[str, OfferSource]) -> None:
        self.engine = engine
        self.sources = sources
        self.builds = 0  # how many times the columns were built (tests and benchmarks read it)
        self._view: CachedView | None = None
        self._lock = asyncio.Lock()

    def _fresh(self, key: object, network: NetworkView) -> CachedView | None:
        cached = self._view
        return cached if cached is not None and cached.network is network and cached.key == key else None

    async def version(self, now_ts: int, also: Callable[[], T]) -> tuple[tuple[object, CatalogState], T]:
        """The offer set's version now (own sources and stored catalogs read at once), with the
        catalogs' state it came from (and the sync times that age their offers); `also` is read in
        the same thread as the catalogs (one hop for the demand's other small reads)."""

        shared = readers(self.sources)

        def read(engine: Engine) -> tuple[CatalogState, T, list[Any]]:
            return catalog_state(engine, now_ts), also(), [r.read() for r in shared]

        # Sources whose version is read with the rest are not called; the others are, meanwhile.
        plain = {name: s for name, s in self.sources.items() if not reads_version(s)}
        called, (state, other, read_now) = await asyncio.gather(
            unversioned(plain), in_thread(self.engine, read)
        )
        for reader, value in zip(shared, read_now, strict=True):
            reader.take(value)
        # A source whose version still is None (read too long ago, under load) is called now.
        called |= await unversioned({n: s for n, s in self.sources.items() if n not in called})
        return ((own_version(self.sources, called), state.key), state), other

    async def columns(
        self,
        network: NetworkView,
        now_ts: int,
        site: Callable[[OfferRow], str | None],
        version: tuple[object, CatalogState] | None = None,
    ) -> OfferColumns:
        """The merged offer view's columns at `now_ts`, rebuilt only when the offer set changed
        (`version`: as `version(now_ts)` read it, when the caller read it alongside other things)."""
        key, state = version if version is not None else (await self.version(now_ts, _nothing))[0]
        cached = self._fresh(key, network)
        if cached is None:
            async with self._lock:
                cached = self._fresh(key, network)
                if cached is None:
                    cached = await self._build(network, now_ts, site)
        return cached.at(now_ts, state.synced)

    async def _build(
        self, network: NetworkView, now_ts: int, site: Callable[[OfferRow], str | None]
    ) -> CachedView:
        # The version is read before the offers, so the build is never older than its version.
        shared = readers(self.sources)
        reads = await in_thread(self.engine, lambda _engine: [r.read() for r in shared])
        for reader, value in zip(shared, reads, strict=True):
            reader.take(value)
        own_key = own_version(self.sources, await unversioned(self.sources))
        own: list[tuple[str, CatalogOffer]] = []
        for name, source in self.sources.items():
            own.extend((name, offer) for offer in await source())
        state, catalogs = await in_thread(self.engine, _read_catalogs, now_ts)
        built = await asyncio.to_thread(
            build_view, (own_key, state.key), network, own, catalogs, state.expired, now_ts, site
        )
        self.builds += 1
        self._view = built
        return built
