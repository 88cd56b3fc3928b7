"""The parts a node is composed of, and which roles each belongs to.

A component contributes, when its roles are run by this process:
- `install(app, ctx)`: routes, `cleanup_ctx` entries, readiness checks;
- `schedule(ctx)`: scheduled jobs (registered only in processes that run the `scheduler` role).
What each reports for `cpnode status` is read by node.cli.status_lines, which loads none of them.
Packages are wired in here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from node import reload
from node.accounts import component as accounts
from node.console import component as console
from node.context import NodeContext
from node.http import core_routes
from node.market import component as market
from node.migration import component as migration
from node.network import component as network
from node.peering import component as peering
from node.pools import component as pools
from node.roles import ALL_ROLES, KNOWN_ROLES
from node.services import component as services
from node.settlement import component as settlement
from node.statements import component as statements
from node.strategies import component as strategies
from node.supervision import component as supervision
from node.tasks import component as tasks
from node.telemetry import component as telemetry
from node.trading import component as trading

Installer = Callable[[web.Application, NodeContext], None]
Scheduler = Callable[[NodeContext], None]


@dataclass(frozen=True)
class Component:
    """One part of the node: its name, the roles that include it, and what it contributes."""

    name: str
    roles: frozenset[str]
    install: Installer | None = None
    schedule: Scheduler | None = None


def _roles(names: str) -> frozenset[str]:
    """The roles named in `names` (separated by spaces); ValueError for one that is not a role."""
    roles = frozenset(names.split())
    if roles - KNOWN_ROLES:
        raise ValueError(f"not a role: {', '.join(sorted(roles - KNOWN_ROLES))}")
    return roles


COMPONENTS: tuple[Component, ...] = (
    Component("core", KNOWN_ROLES, install=core_routes.install),
    Component("reload", KNOWN_ROLES, install=reload.install),
    Component("federation", _roles("federation api scheduler supervisor"), install=peering.install),
    # After federation: pools replace the config's offer source, and every process that builds
    # catalogs gets the connectors' offers (from the live host, or from stored snapshots).
    Component("connectors", _roles("connectors federation api scheduler"), install=pools.install),
    Component(
        "ledger", _roles("ledger api scheduler"), install=settlement.install, schedule=settlement.schedule
    ),
    # After federation and connectors: it takes the federation service and wraps every offer source.
    Component("trading", _roles("federation api scheduler"), install=trading.install),
    # After trading: matching a demand places its orders through trading's buyer.
    Component("market", _roles("api"), install=market.install),
    # After connectors, trading and market: it drives tasks on the hosted pools through the buyer.
    Component("tasks", _roles("api connectors federation"), install=tasks.install),
    Component(
        "statements", _roles("api scheduler"), install=statements.install, schedule=statements.schedule
    ),
    # After connectors: its driver calls the plugin host (where the `connectors` role runs). After
    # tasks: a migrated task follows its program, and a partner's pool is bought as a task order.
    Component("migration", _roles("api connectors federation"), install=migration.install),
    # After federation: partners' consumers are authenticated through its service.
    Component("accounts", _roles("api federation scheduler"), install=accounts.install),
    # Business metrics in /metrics, read from the shared database: the same on every replica.
    Component("telemetry", ALL_ROLES, install=telemetry.install),
    # After federation (it takes the federation service) and trading (its reservations are in the
    # figures it reports); the supervisor's intake too.
    Component("supervision", _roles("federation scheduler supervisor"), install=supervision.install),
    # After connectors: the network view's refresh reads the network plugins the host holds.
    Component("network", _roles("api connectors scheduler"), install=network.install),
    Component("strategies", _roles("api"), install=strategies.install),
    # After tasks: a service's replicas are tasks, submitted through the tasks service.
    Component("services", _roles("api"), install=services.install),
    # After every component whose API it reads: the web console, over that API (docs/console.md).
    Component("console", _roles("api"), install=console.install),
)


def active_components(roles: frozenset[str]) -> list[Component]:
    """The components a process running `roles` includes, in order."""
    return [component for component in COMPONENTS if component.roles & roles]
