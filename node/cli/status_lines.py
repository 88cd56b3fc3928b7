"""What each part of the node reports for `cpnode status`, read from its tables.

Each reader imports only the store or tables it reads, when it is called: `cpnode status` loads
none of the components' routes, services or drivers (node.components), which is most of a node's
import time. Every reader answers even before its tables exist, or says why it cannot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from node.config import Settings

Lines = list[tuple[str, object]]


def federation(_settings: Settings, engine: Engine) -> Lines:
    """Partners, their link state and catalogs."""
    from federation import store

    partners = store.list_partners(engine)
    states = store.sync_states(engine)
    catalogs = {row["partner"]: row for row in store.received_catalogs(engine)}
    relayed: dict[str, int] = {}
    for row in store.relayed_catalogs(engine):
        relayed[row["via"]] = relayed.get(row["via"], 0) + 1
    lines: Lines = [("partners", len(partners))]
    for partner in partners:
        state = states.get(partner.name, {}).get("status", "never")
        catalog = catalogs.get(partner.name)
        held = f"catalog v{catalog['version']}, {catalog['offer_count']} offers" if catalog else "no catalog"
        if partner.name in relayed:
            held += f"; relays {relayed[partner.name]} issuers' catalogs"
        lines.append((f"  {partner.name}", f"{state}; {held}"))
    return lines


def connectors(settings: Settings, engine: Engine) -> Lines:
    """Plugins by state."""
    from connectors.store import PluginStore

    try:
        rows = PluginStore(engine).load()
    except Exception as exc:  # status must answer even with a broken database
        return [("plugins", f"unknown ({type(exc).__name__})")]
    states: dict[str, int] = {}
    for row in rows:
        states[row.state] = states.get(row.state, 0) + 1
    summary = ", ".join(f"{count} {state}" for state, count in sorted(states.items())) or "none"
    return [("pools configured", len(settings.pools)), ("plugins", summary)]


def ledger(_settings: Settings, engine: Engine) -> Lines:
    """Accounts, log size, latest checkpoint, open discrepancies."""
    import sqlalchemy as sa

    from ledger import current_checkpoint, list_accounts, list_discrepancies, log_size
    from node.times import format_ms

    try:
        stored = current_checkpoint(engine)
        accounts, transfers = len(list_accounts(engine)), log_size(engine)
        discrepancies = len(list_discrepancies(engine, open_only=True))
    except sa.exc.SQLAlchemyError:
        return [("ledger", "no tables yet (cpnode db upgrade, or start the node)")]
    return [
        ("ledger", f"{accounts} accounts, {transfers} transfers, {discrepancies} open discrepancies"),
        (
            "ledger checkpoint",
            "none" if stored is None else f"size {stored.size} at {format_ms(stored.checkpoint.time_ms)}",
        ),
    ]


def _by_state(engine: Engine, table: object) -> str:
    """`N state, ...` of a table with a `state` column, or `none`."""
    import sqlalchemy as sa

    assert isinstance(table, sa.Table)
    with engine.connect() as conn:
        counts = conn.execute(sa.select(table.c.state, sa.func.count()).group_by(table.c.state)).all()
    return ", ".join(f"{count} {state}" for state, count in sorted(counts)) or "none"


def trading(_settings: Settings, engine: Engine) -> Lines:
    """Orders and sales by state."""
    from node.trading.tables import orders_t, sales_t

    try:
        return [("orders", _by_state(engine, orders_t)), ("sales", _by_state(engine, sales_t))]
    except Exception as exc:  # status must answer even before the tables exist
        return [("trading", f"unknown ({type(exc).__name__})")]


def tasks(_settings: Settings, engine: Engine) -> Lines:
    """Tasks by state."""
    from node.tasks import store

    try:
        counts = store.count_by_state(engine)
    except Exception as exc:  # status must answer even before the tables exist
        return [("tasks", f"unknown ({type(exc).__name__})")]
    return [("tasks", ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none")]


def statements(_settings: Settings, engine: Engine) -> Lines:
    """How many statements are issued, and the latest month."""
    import sqlalchemy as sa

    from node.statements import store

    try:
        count, latest = store.issued_summary(engine)
    except sa.exc.SQLAlchemyError:
        return [("statements", "no table yet (cpnode db upgrade, or start the node)")]
    return [("statements", f"{count} issued, latest month {latest}" if count else "none issued")]


def migration(_settings: Settings, engine: Engine) -> Lines:
    """Migrations by state."""
    from node.migration.tables import migrations_t

    try:
        return [("migrations", _by_state(engine, migrations_t))]
    except Exception as exc:  # status must answer even before the tables exist
        return [("migrations", f"unknown ({type(exc).__name__})")]


def accounts(_settings: Settings, engine: Engine) -> Lines:
    """Consumers suspended and closed, users, partners' consumers seen here."""
    import sqlalchemy as sa

    from node.accounts.tables import accounts_t, federated_t, users_t

    with engine.connect() as conn:
        by_status: dict[str, int] = dict(
            conn.execute(
                sa.select(accounts_t.c.status, sa.func.count())
                .where(accounts_t.c.kind == "consumer")
                .group_by(accounts_t.c.status)
            ).all()
        )
        users = conn.execute(sa.select(sa.func.count()).select_from(users_t)).scalar_one()
        federated = conn.execute(sa.select(sa.func.count()).select_from(federated_t)).scalar_one()
    suspended, closed = by_status.get("suspended", 0), by_status.get("closed", 0)
    return [
        ("consumers suspended / closed", f"{suspended} / {closed}"),
        ("consumers closing", by_status.get("closing", 0)),
        ("operator users", users),
        ("partners' consumers seen", federated),
    ]


def supervision(_settings: Settings, engine: Engine) -> Lines:
    """Supervisors and their deliveries; registered nodes if any."""
    from node.supervision import store
    from node.supervision.tables import nodes_t, supervisors_t

    supervisors = store.list_pinned(engine, supervisors_t)
    overview = store.outbox_overview(engine)
    lines: Lines = [("supervisors", len(supervisors))]
    for supervisor in supervisors:
        item = overview.get(supervisor.name)
        state = "no report yet"
        if item is not None:
            state = f"last report {item['last_seq']}; {item['sent']} sent, {item['pending']} pending, {item['refused']} refused"
        lines.append((f"  {supervisor.name}", state))
    registered = store.list_pinned(engine, nodes_t)
    if registered:
        lines.append(("supervised nodes", len(registered)))
    return lines


def network(_settings: Settings, engine: Engine) -> Lines:
    """The stored network view's size and age."""
    from node.network.store import load_view

    try:
        view = load_view(engine)
    except Exception as exc:  # status must answer even with a broken database
        return [("network view", f"unknown ({type(exc).__name__})")]
    if view is None:
        return [("network view", "not read yet")]
    age = max(0, int(time.time()) - view.refreshed_ts)
    failed = f", {len(view.errors)} not read" if view.errors else ""
    return [("network view", f"{len(view.sites)} sites, {len(view.links)} links, read {age} s ago{failed}")]


def services(_settings: Settings, engine: Engine) -> Lines:
    """Services and their replicas."""
    from node.services import store

    try:
        found = store.list_services(engine)
        replicas = len(store.all_replicas(engine))
    except Exception as exc:  # status must answer even before the tables exist
        return [("services", f"unknown ({type(exc).__name__})")]
    return [("services", f"{len(found)} ({replicas} replicas)" if found else "none")]


# In the order of node.components, so the lines read as before.
READERS: tuple[Callable[[Settings, Engine], Lines], ...] = (
    federation,
    connectors,
    ledger,
    trading,
    tasks,
    statements,
    migration,
    accounts,
    supervision,
    network,
    services,
)
