"""The typed state of one running node, shared by its components through the aiohttp app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy.engine import Engine

from node import __version__
from node.config import Settings
from node.http.auth import check_admin
from node.identity import Identity
from node.metrics import Metrics
from node.scheduler import JobScheduler

# A readiness check returns None when healthy, else a short reason.
OfferSource = Callable[[], Awaitable[list[dict[str, Any]]]]
ReadinessCheck = Callable[[], Awaitable[str | None]]


@dataclass
class NodeContext:
    """Everything a component needs: config, identity, database, scheduler, metrics, roles."""

    settings: Settings
    identity: Identity
    engine: Engine
    scheduler: JobScheduler
    metrics: Metrics
    roles: frozenset[str]
    replica_id: str
    admin_token: str
    started_ts: int
    base_url: str = ""
    version: str = __version__
    readiness_checks: dict[str, ReadinessCheck] = field(default_factory=dict)
    # Where the node's own offers come from, by source name (config `[[offers]]`, connectors, ...).
    # Each returns catalog offers (federation.catalog.OFFER_FIELDS); a source replaces another by name.
    offer_sources: dict[str, OfferSource] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """This node's name."""
        return self.settings.node.name

    def require_admin(self, request: web.Request) -> None:
        """Raise a 401 unless `request` carries this node's admin token."""
        check_admin(request, self.admin_token)


CTX = web.AppKey("cpnode", NodeContext)
