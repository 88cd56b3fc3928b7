"""The parts a node is composed of, and which roles each belongs to.

A component contributes, when its roles are run by this process:
- `install(app, ctx)`: routes, `cleanup_ctx` entries, readiness checks;
- `schedule(ctx)`: scheduled jobs (registered only in processes that run the `scheduler` role);
- `status(settings, engine)`: lines for `cpnode status`.
Packages are wired in here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy.engine import Engine

from node import reload
from node.config import Settings
from node.context import NodeContext
from node.http import core_routes
from node.market import component as market
from node.migration import component as migration
from node.peering import component as peering
from node.pools import component as pools
from node.roles import ALL_ROLES
from node.settlement import component as settlement
from node.tasks import component as tasks
from node.trading import component as trading

Installer = Callable[[web.Application, NodeContext], None]
Scheduler = Callable[[NodeContext], None]
StatusLines = Callable[[Settings, Engine], list[tuple[str, object]]]


@dataclass(frozen=True)
class Component:
    """One part of the node: its name, the roles that include it, and what it contributes."""

    name: str
    roles: frozenset[str]
    install: Installer | None = None
    schedule: Scheduler | None = None
    status: StatusLines | None = None


COMPONENTS: tuple[Component, ...] = (
    Component("core", ALL_ROLES, install=core_routes.install),
    Component("reload", ALL_ROLES, install=reload.install),
    Component(
        "federation",
        frozenset({"federation", "api", "scheduler"}),
        install=peering.install,
        status=peering.status_lines,
    ),
    # After federation: pools replace the config's offer source, and every process that builds
    # catalogs gets the connectors' offers (from the live host, or from stored snapshots).
    Component(
        "connectors",
        frozenset({"connectors", "federation", "api", "scheduler"}),
        install=pools.install,
        status=pools.status_lines,
    ),
    Component(
        "ledger",
        frozenset({"ledger", "api", "scheduler"}),
        install=settlement.install,
        schedule=settlement.schedule,
        status=settlement.status_lines,
    ),
    # After federation and connectors: it takes the federation service and wraps every offer source.
    Component(
        "trading",
        frozenset({"federation", "api", "scheduler"}),
        install=trading.install,
        status=trading.status_lines,
    ),
    # After trading: matching a demand places its orders through trading's buyer.
    Component("market", frozenset({"api"}), install=market.install),
    # After connectors, trading and market: it drives tasks on the hosted pools through the buyer.
    Component(
        "tasks",
        frozenset({"api", "connectors", "federation"}),
        install=tasks.install,
        status=tasks.status_lines,
    ),
    # After connectors: its driver calls the plugin host (where the `connectors` role runs).
    Component(
        "migration",
        frozenset({"api", "connectors"}),
        install=migration.install,
        status=migration.status_lines,
    ),
)


def active_components(roles: frozenset[str]) -> list[Component]:
    """The components a process running `roles` includes, in order."""
    return [component for component in COMPONENTS if component.roles & roles]
