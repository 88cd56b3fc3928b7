"""What one reading of the database says about the node's business (pure records, no I/O).

`node.telemetry.queries` fills a `Readings` from the database; `node.telemetry.families` turns it
into Prometheus metric families. Every value comes from the shared database, so every replica
answers the same numbers. Money is integer minor units with its currency; times are UTC epoch
seconds or milliseconds, as stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class OfferCapacity:
    """Free and total units of one offer as its pool reports them (`total` None when the pool does not
    say, as for offers declared in the config)."""

    pool: str
    region: str
    offer: str
    free: int
    total: int | None


@dataclass(frozen=True)
class SharedCapacity:
    """A pool region's shared capacity (e.g. the `local` pool's slots): free and total, in its unit."""

    pool: str
    region: str
    unit: str
    free: int
    total: int


@dataclass(frozen=True)
class PoolReading:
    """One compute pool: its plugin's health state, when its latest snapshot was fetched, and its CPU
    utilisation per region in thousandths (when the pool reports it)."""

    name: str
    state: str
    snapshot_ms: int | None
    cpu_permille: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TradeGroup:
    """Orders (or sales) of one partner, state and currency: how many, their amounts held and what
    was settled. `partner` is "" for orders on the node's own pools."""

    partner: str
    state: str
    currency: str
    count: int
    amount_minor: int
    settled_minor: int


@dataclass(frozen=True)
class PartnerReading:
    """One partner: its link state (`never`, `ok`, `rejected`, `unreachable`), consecutive failed
    syncs, and the catalog held from it (received, last confirmed, offers, version; None when none),
    and the last sync error."""

    name: str
    link: str
    failures: int
    catalog_received_ts: int | None
    last_success_ts: int | None
    catalog_offers: int | None
    catalog_version: int | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class MigrationReading:
    """A migration not yet ended: its state and its transfer's progress (bytes, rate, ETA)."""

    id: str
    state: str
    bytes_done: int
    bytes_total: int
    rate_bytes_per_s: int
    eta_ms: int | None


@dataclass(frozen=True)
class Readings:
    """Everything the business metrics show, read at `taken_ts` (epoch seconds, UTC)."""

    taken_ts: float
    pools: list[PoolReading] = field(default_factory=list)
    offers: list[OfferCapacity] = field(default_factory=list)
    shared: list[SharedCapacity] = field(default_factory=list)
    reserved: dict[str, int] = field(default_factory=dict)  # units held by open reservations, by offer
    orders: list[TradeGroup] = field(default_factory=list)
    sales: list[TradeGroup] = field(default_factory=list)
    partners: list[PartnerReading] = field(default_factory=list)
    tasks: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, state) → count
    migrations: dict[str, int] = field(default_factory=dict)  # state → count
    active_migrations: list[MigrationReading] = field(default_factory=list)
    migration_bytes_moved: int = 0


def pools_of_offers(offers: list[OfferCapacity]) -> dict[str, str]:
    """The pool of each offer id the pools report."""
    return {o.offer: o.pool for o in offers}


def pool_of(offer_id: str, known: dict[str, str]) -> str:
    """The pool an offer id belongs to: as the pools report it (`known`), else the id's first
    segment (connector offers are `POOL/REGION/FLAVOR`), so a reservation of an offer no longer
    reported still counts for its pool."""
    return known.get(offer_id) or offer_id.split("/", 1)[0]


def capacity(pool: str, offers: list[OfferCapacity], shared: list[SharedCapacity]) -> tuple[int, int, str]:
    """A pool's units in use and in all, and their unit: a region with shared capacity counts its
    shared units, other regions their offers' units (total − free); (0, 0, "units") when the pool
    reports no total."""
    used = total = 0
    unit = "units"
    shared_regions = set()
    for s in shared:
        if s.pool == pool:
            shared_regions.add(s.region)
            used, total, unit = used + max(0, s.total - s.free), total + s.total, s.unit
    for o in offers:
        if o.pool == pool and o.total is not None and o.region not in shared_regions:
            used, total = used + max(0, o.total - o.free), total + o.total
    return used, total, unit


def utilisation(pool: str, offers: list[OfferCapacity], shared: list[SharedCapacity]) -> float | None:
    """Used share of a pool's capacity, 0–1 (see `capacity`); None when the pool reports no total."""
    used, total, _ = capacity(pool, offers, shared)
    return None if total == 0 else used / total
