"""Business metrics as Prometheus metric families, from one `Readings` (pure: no I/O).

Every family is yielded on every scrape, with no samples when there is nothing to count, so a
dashboard finds each metric name on a fresh node. Gauges say what is now (units, states, ages);
counters only grow (trades made, money settled, bytes moved), so `rate()` and `increase()` apply.
Money is in minor units (`_minor`), labelled with its currency; ages are seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from node.telemetry.readings import Readings, pool_of, pools_of_offers, utilisation
from node.trading.machine import ORDER_FINAL, SALE_OPEN

_Key = TypeVar("_Key", tuple[str, str], tuple[str, str, str])

# Per-offer series are capped (the first offers by pool and id); utilisation still counts them all.
MAX_OFFER_SERIES = 5000

LINK_STATES = ("never", "ok", "rejected", "unreachable")


def _add(values: dict[_Key, int], key: _Key, amount: int) -> None:
    values[key] = values.get(key, 0) + amount


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def pool_families(r: Readings) -> Iterator[Metric]:
    """Pools: health, snapshot age, free / total / reserved units per offer, utilisation."""
    online = _gauge("cpnode_pool_online", "1 when the pool's plugin is online, else 0.", ["pool", "state"])
    age = _gauge(
        "cpnode_pool_snapshot_age_seconds", "Age of the pool's latest data-source snapshot.", ["pool"]
    )
    cpu = _gauge(
        "cpnode_pool_cpu_utilisation_ratio",
        "CPU utilisation the pool reports per region, 0-1.",
        ["pool", "region"],
    )
    for pool in r.pools:
        online.add_metric([pool.name, pool.state], 1.0 if pool.state == "online" else 0.0)
        if pool.snapshot_ms is not None:
            age.add_metric([pool.name], max(0.0, r.taken_ts - pool.snapshot_ms / 1000))
        for region, permille in sorted(pool.cpu_permille.items()):
            cpu.add_metric([pool.name, region], permille / 1000)
    free = _gauge(
        "cpnode_pool_free_units", "Free units of an offer as its pool reports them.", ["pool", "offer"]
    )
    total = _gauge(
        "cpnode_pool_total_units", "Total units of an offer as its pool reports them.", ["pool", "offer"]
    )
    for offer in sorted(r.offers, key=lambda o: (o.pool, o.offer))[:MAX_OFFER_SERIES]:
        free.add_metric([offer.pool, offer.offer], offer.free)
        if offer.total is not None:
            total.add_metric([offer.pool, offer.offer], offer.total)
    reserved = _gauge(
        "cpnode_pool_reserved_units",
        "Units of an offer held by open trades (reservations not yet settled, voided or expired).",
        ["pool", "offer"],
    )
    known = pools_of_offers(r.offers)
    for offer_id, units in sorted(r.reserved.items())[:MAX_OFFER_SERIES]:
        reserved.add_metric([pool_of(offer_id, known), offer_id], units)
    ratio = _gauge(
        "cpnode_pool_utilisation_ratio",
        "Used share of the pool's capacity, 0-1 (shared units where a region shares one, else offer units).",
        ["pool"],
    )
    for name in sorted({o.pool for o in r.offers} | {s.pool for s in r.shared}):
        used = utilisation(name, r.offers, r.shared)
        if used is not None:
            ratio.add_metric([name], used)
    yield from (online, age, cpu, free, total, reserved, ratio)


def trade_families(r: Readings) -> Iterator[Metric]:
    """Orders placed here and sales to partners: by state, trades made, revenue and spend."""
    orders = _gauge(
        "cpnode_orders",
        "Orders placed at this node by partner (empty for its own pools) and state.",
        ["partner", "state"],
    )
    sales = _gauge(
        "cpnode_sales", "Trades partners bought from this node, by partner and state.", ["partner", "state"]
    )
    trades = CounterMetricFamily(
        "cpnode_trades",
        "Trades with partners: side buy (orders on their offers) or sell (their orders here).",
        labels=["partner", "side"],
    )
    revenue = CounterMetricFamily(
        "cpnode_revenue_minor",
        "Money settled to this node, in minor units: partners' trades here and orders on its own pools.",
        labels=["partner", "currency"],
    )
    spend = CounterMetricFamily(
        "cpnode_spend_minor",
        "Money settled to partners for orders on their offers, in minor units.",
        labels=["partner", "currency"],
    )
    held = _gauge(
        "cpnode_open_trade_value_minor",
        "Amount held by orders and trades not yet ended, in minor units, by side (own, buy, sell).",
        ["partner", "side", "currency"],
    )
    order_states: dict[tuple[str, str], int] = {}
    sale_states: dict[tuple[str, str], int] = {}
    counts: dict[tuple[str, str], int] = {}
    earned: dict[tuple[str, str], int] = {}
    paid: dict[tuple[str, str], int] = {}
    open_value: dict[tuple[str, str, str], int] = {}
    for group in r.orders:
        _add(order_states, (group.partner, group.state), group.count)
        if group.partner:
            _add(counts, (group.partner, "buy"), group.count)
        if group.state == "settled":
            _add(paid if group.partner else earned, (group.partner, group.currency), group.settled_minor)
        elif group.state not in ORDER_FINAL:
            _add(
                open_value,
                (group.partner, "buy" if group.partner else "own", group.currency),
                group.amount_minor,
            )
    for group in r.sales:
        _add(sale_states, (group.partner, group.state), group.count)
        _add(counts, (group.partner, "sell"), group.count)
        if group.state == "settled":
            _add(earned, (group.partner, group.currency), group.settled_minor)
        elif group.state in SALE_OPEN:
            _add(open_value, (group.partner, "sell", group.currency), group.amount_minor)
    for family, values in (
        (orders, order_states),
        (sales, sale_states),
        (trades, counts),
        (revenue, earned),
        (spend, paid),
        (held, open_value),
    ):
        for labels, value in sorted(values.items()):
            family.add_metric(list(labels), value)
    yield from (orders, sales, trades, revenue, spend, held)


def partner_families(r: Readings) -> Iterator[Metric]:
    """Partners: link state (one series per state, 1 for the current one), failures, catalog age."""
    link = _gauge(
        "cpnode_partner_link",
        "1 for the partner's current link state (never, ok, rejected, unreachable).",
        ["partner", "state"],
    )
    failures = _gauge(
        "cpnode_partner_sync_failures", "Consecutive failed catalog syncs with the partner.", ["partner"]
    )
    age = _gauge(
        "cpnode_partner_catalog_age_seconds",
        "Time since the partner's held catalog was received.",
        ["partner"],
    )
    confirmed = _gauge(
        "cpnode_partner_catalog_confirmed_age_seconds",
        "Time since a sync last confirmed the partner's catalog.",
        ["partner"],
    )
    offers = _gauge(
        "cpnode_partner_catalog_offers", "Offers in the catalog held from the partner.", ["partner"]
    )
    for p in r.partners:
        for state in LINK_STATES:
            link.add_metric([p.name, state], 1.0 if p.link == state else 0.0)
        failures.add_metric([p.name], p.failures)
        if p.catalog_received_ts is not None:
            age.add_metric([p.name], max(0.0, r.taken_ts - p.catalog_received_ts))
        if p.last_success_ts is not None:
            confirmed.add_metric([p.name], max(0.0, r.taken_ts - p.last_success_ts))
        if p.catalog_offers is not None:
            offers.add_metric([p.name], p.catalog_offers)
    yield from (link, failures, age, confirmed, offers)


def work_families(r: Readings) -> Iterator[Metric]:
    """Tasks by kind and state; migrations by state, the progress of those not ended, bytes moved."""
    tasks = _gauge("cpnode_tasks", "Tasks by kind (local or partner) and state.", ["kind", "state"])
    for (kind, state), count in sorted(r.tasks.items()):
        tasks.add_metric([kind, state], count)
    migrations = _gauge("cpnode_migrations", "Migrations by state.", ["state"])
    for state, count in sorted(r.migrations.items()):
        migrations.add_metric([state], count)
    done = _gauge(
        "cpnode_migration_bytes_done", "Bytes a running migration has transferred.", ["migration", "state"]
    )
    size = _gauge(
        "cpnode_migration_size_bytes", "Bytes a running migration transfers in all.", ["migration", "state"]
    )
    rate = _gauge(
        "cpnode_migration_rate_bytes_per_second",
        "Transfer rate of a running migration (recent seconds).",
        ["migration", "state"],
    )
    eta = _gauge(
        "cpnode_migration_eta_seconds",
        "Estimated time until a running migration's transfer ends.",
        ["migration", "state"],
    )
    for m in r.active_migrations:
        labels = [m.id, m.state]
        done.add_metric(labels, m.bytes_done)
        size.add_metric(labels, m.bytes_total)
        rate.add_metric(labels, m.rate_bytes_per_s)
        if m.eta_ms is not None:
            eta.add_metric(labels, m.eta_ms / 1000)
    moved = CounterMetricFamily(
        "cpnode_migration_transferred_bytes", "Bytes transferred by every migration of this node."
    )
    moved.add_metric([], r.migration_bytes_moved)
    yield from (tasks, migrations, done, size, rate, eta, moved)


def families(r: Readings) -> list[Metric]:
    """Every business metric family of one reading."""
    return [*pool_families(r), *trade_families(r), *partner_families(r), *work_families(r)]
