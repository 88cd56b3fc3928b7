"""Business metrics without a running node: the database reading on both backends, the pure
mapping to Prometheus families, and the collector's cache (one reading per `cache_s`, shared by
concurrent scrapes, kept when a reading fails)."""

from __future__ import annotations

import asyncio
import threading
import time

from sqlalchemy.engine import Engine

from federation import store as federation_store
from federation.partners import Agreement, Partner
from node.migration.store import insert_migration
from node.telemetry import queries
from node.telemetry.collector import BusinessMetrics, render
from node.telemetry.families import MAX_OFFER_SERIES, families
from node.telemetry.readings import (
    OfferCapacity,
    PartnerReading,
    PoolReading,
    Readings,
    SharedCapacity,
    TradeGroup,
    utilisation,
)
from tests.support.scrape import Scrape, parse

KEY = "ed25519:" + "A" * 43


def scraped(readings: Readings) -> Scrape:
    """The exposition of `readings` as a scrape would parse it."""
    return parse(render(families(readings)).decode())


def test_reading_on_each_backend(engine: Engine) -> None:
    """Migrations' progress (JSON in text) is summed and read in SQL on SQLite and PostgreSQL, a
    partner never synced reads `never`, and empty tables read as nothing."""
    now_ms = int(time.time() * 1000)
    progress = {"bytes_done": 300, "bytes_total": 1000, "rate_bytes_per_s": 50, "eta_ms": 14_000}
    insert_migration(
        engine,
        {"id": "m1", "source_pool": "a", "source_instance": "i1", "bandwidth_mbps": 0, "progress": progress},
        now_ms,
    )
    insert_migration(
        engine, {"id": "m2", "source_pool": "a", "source_instance": "i2", "bandwidth_mbps": 0}, now_ms
    )
    federation_store.add_partner(
        engine, Partner("p1", ("http://127.0.0.1:9",), KEY, Agreement()), now_ms // 1000
    )
    readings = queries.read(engine, [OfferCapacity("cfg", "r1", "cfg-1", 3, None)], now_ms / 1000)
    assert readings.migrations == {"planned": 2}
    active = {m.id: m for m in readings.active_migrations}
    assert (active["m1"].bytes_done, active["m1"].bytes_total, active["m1"].rate_bytes_per_s) == (
        300,
        1000,
        50,
    )
    assert active["m1"].eta_ms == 14_000
    assert (active["m2"].bytes_done, active["m2"].eta_ms) == (0, None)
    assert readings.migration_bytes_moved == 300
    assert readings.partners == [PartnerReading("p1", "never", 0, None, None, None)]
    assert readings.offers == [OfferCapacity("cfg", "r1", "cfg-1", 3, None)]  # no pools: the config's
    assert (readings.orders, readings.sales, readings.tasks, readings.reserved) == ([], [], {}, {})


def test_trades_revenue_and_spend() -> None:
    """Settled sales and settled own-pool orders are revenue; settled orders on partners' offers are
    spend; orders and sales not ended are open value; a local order is no trade."""
    r = Readings(
        taken_ts=1000.0,
        orders=[
            TradeGroup("", "settled", "CNY", 2, 9_000, 7_000),
            TradeGroup("", "accepted", "CNY", 1, 4_000, 0),
            TradeGroup("sh", "settled", "CNY", 1, 6_000, 4_000),
            TradeGroup("sh", "cancelled", "CNY", 1, 6_000, 0),
        ],
        sales=[
            TradeGroup("bj", "settled", "CNY", 3, 30_000, 25_000),
            TradeGroup("bj", "accepted", "CNY", 1, 5_000, 0),
            TradeGroup("bj", "refused", "CNY", 4, 8_000, 0),
        ],
    )
    s = scraped(r)
    assert s.value("cpnode_revenue_minor_total", partner="", currency="CNY") == 7_000
    assert s.value("cpnode_revenue_minor_total", partner="bj", currency="CNY") == 25_000
    assert s.value("cpnode_spend_minor_total", partner="sh", currency="CNY") == 4_000
    assert s.value("cpnode_revenue_minor_total", partner="sh", currency="CNY") is None
    assert s.value("cpnode_trades_total", partner="sh", side="buy") == 2
    assert s.value("cpnode_trades_total", partner="bj", side="sell") == 8
    assert s.value("cpnode_trades_total", partner="", side="buy") is None
    assert s.value("cpnode_open_trade_value_minor", partner="", side="own", currency="CNY") == 4_000
    assert s.value("cpnode_open_trade_value_minor", partner="bj", side="sell", currency="CNY") == 5_000
    assert s.value("cpnode_open_trade_value_minor", partner="sh", side="buy", currency="CNY") is None
    assert s.value("cpnode_orders", partner="sh", state="cancelled") == 1
    assert s.value("cpnode_sales", partner="bj", state="refused") == 4


def test_pools_partners_and_work() -> None:
    """Pool units, reservations (by the pool of the offer, or the id's first segment), utilisation,
    one-hot link states, catalog ages from the reading's time, tasks and migrations."""
    r = Readings(
        taken_ts=1000.0,
        pools=[PoolReading("cpu", "online", 990_000, {"local": 250}), PoolReading("gpu", "offline", None)],
        offers=[
            OfferCapacity("cpu", "local", "cpu/local/local-1", 1, 4),
            OfferCapacity("cpu", "local", "cpu/local/local-2", 0, 2),
            OfferCapacity("gpu", "r1", "gpu/r1/a100", 1, 4),
            OfferCapacity("gpu", "r2", "gpu/r2/a100", 3, 4),
        ],
        shared=[SharedCapacity("cpu", "local", "slots", 1, 4)],
        reserved={"cpu/local/local-2": 1, "gone/r/x": 2},
        partners=[PartnerReading("p", "unreachable", 3, 400, 700, 5)],
        tasks={("own", "running"): 2},
        migrations={"transferring": 1},
    )
    s = scraped(r)
    assert s.value("cpnode_pool_online", pool="cpu", state="online") == 1
    assert s.value("cpnode_pool_online", pool="gpu", state="offline") == 0
    assert s.value("cpnode_pool_snapshot_age_seconds", pool="cpu") == 10
    assert s.value("cpnode_pool_cpu_utilisation_ratio", pool="cpu", region="local") == 0.25
    assert s.value("cpnode_pool_total_units", pool="gpu", offer="gpu/r1/a100") == 4
    assert s.value("cpnode_pool_reserved_units", pool="cpu", offer="cpu/local/local-2") == 1
    assert s.value("cpnode_pool_reserved_units", pool="gone", offer="gone/r/x") == 2
    assert s.value("cpnode_pool_utilisation_ratio", pool="cpu") == 0.75  # the shared slots, not the flavors
    assert s.value("cpnode_pool_utilisation_ratio", pool="gpu") == 0.5
    assert [
        st
        for st in ("never", "ok", "rejected", "unreachable")
        if s.value("cpnode_partner_link", partner="p", state=st)
    ] == ["unreachable"]
    assert s.value("cpnode_partner_catalog_age_seconds", partner="p") == 600
    assert s.value("cpnode_partner_catalog_confirmed_age_seconds", partner="p") == 300
    assert s.value("cpnode_partner_sync_failures", partner="p") == 3
    assert s.value("cpnode_tasks", kind="own", state="running") == 2
    assert s.value("cpnode_migrations", state="transferring") == 1
    assert utilisation("nothing", r.offers, r.shared) is None


def test_every_family_is_named_before_the_first_reading() -> None:
    """Before any reading the text names every business metric (nothing counted), so dashboards find them."""
    names = {f.name for f in families(Readings(taken_ts=0.0))}
    shown = parse(BusinessMetrics(lambda now: Readings(taken_ts=now), 5).text().decode())
    assert names <= set(shown.families)
    assert len(names) >= 25
    assert not [
        key for key, value in shown.samples.items() if key[0].removesuffix("_total") in names and value
    ]


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_one_reading_serves_every_scrape_within_cache_s() -> None:
    """Many scrapes at once and again within `cache_s` read the database once; after it, once more."""
    clock, calls = Clock(), []

    def read(now: float) -> Readings:
        calls.append(now)
        time.sleep(0.05)  # concurrent scrapes arrive while it reads
        return Readings(taken_ts=now)

    collector = BusinessMetrics(read, 5.0, clock)
    await asyncio.gather(*(collector.refresh() for _ in range(20)))
    clock.now += 4.9
    await collector.refresh()
    assert calls == [1000.0]
    clock.now += 0.2
    await collector.refresh()
    assert calls == [1000.0, 1005.1]
    assert collector.reads == 2


async def test_a_failed_or_slow_reading_keeps_the_last_one() -> None:
    """A reading that raises is counted and the previous one stays; a reading slower than the
    timeout does not hold the scrape, and no second reading starts while it runs."""
    clock = Clock()
    mode = {"fail": False}
    release = threading.Event()
    started: list[float] = []

    def read(now: float) -> Readings:
        started.append(now)
        if mode["fail"]:
            raise RuntimeError("database down")
        if len(started) == 3:
            release.wait(10)
        return Readings(taken_ts=now, migrations={"planned": len(started)})

    collector = BusinessMetrics(read, 1.0, clock, timeout_s=0.2)
    await collector.refresh()
    mode["fail"] = True
    clock.now += 2
    await collector.refresh()
    assert (collector.reads, collector.errors) == (1, 1)
    shown = parse(collector.text().decode())
    assert shown.value("cpnode_migrations", state="planned") == 1
    assert shown.value("cpnode_business_metrics_age_seconds") == 2
    assert shown.value("cpnode_business_metrics_errors_total") == 1
    mode["fail"] = False
    clock.now += 2
    begun = time.monotonic()
    await collector.refresh()  # the third reading hangs until released
    assert time.monotonic() - begun < 5
    clock.now += 2
    await collector.refresh()  # still pending: waits on it, starts none
    assert len(started) == 3
    release.set()
    await asyncio.wait_for(collector._pending, 10)  # type: ignore[arg-type]
    assert parse(collector.text().decode()).value("cpnode_migrations", state="planned") == 3


def test_offer_series_are_capped_but_utilisation_counts_every_offer() -> None:
    """More offers than MAX_OFFER_SERIES export that many free-unit series; the pool's utilisation
    still counts every offer."""
    offers = [OfferCapacity("big", "r", f"big/r/f{i:05d}", 0 if i < 6000 else 4, 4) for i in range(8000)]
    s = scraped(Readings(taken_ts=0.0, offers=offers))
    assert sum(1 for name, _ in s.samples if name == "cpnode_pool_free_units") == MAX_OFFER_SERIES
    assert s.value("cpnode_pool_utilisation_ratio", pool="big") == 0.75
