"""The typed state of one running node, shared by its components through the aiohttp app."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from sqlalchemy.engine import Engine

from node import __version__
from node.config import Settings
from node.http.auth import (
    ADMIN,
    Principal,
    bad_admin_token,
    bearer_token,
    check_admin,
    is_admin_token,
    looks_like_consumer_token,
)
from node.http.errors import ApiError
from node.identity import Identity
from node.metrics import Metrics
from node.offers import OfferSource
from node.scheduler import JobScheduler
from node.trading import tokens

# A readiness check returns None when healthy, else a short reason.
ReadinessCheck = Callable[[], Awaitable[str | None]]
# Called with the new settings after a config reload (node.reload) applied reloadable keys.
ReloadHook = Callable[[Settings], Awaitable[None]]


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
    # Each returns catalog offers (node.offers.CatalogOffer); a source replaces another by name.
    offer_sources: dict[str, OfferSource] = field(default_factory=dict)
    # The config file the node was started from (None when built from settings alone, as in tests),
    # what components re-read when it is reloaded, and changed keys that wait for a restart.
    config_path: Path | None = None
    reload_hooks: list[ReloadHook] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """This node's name."""
        return self.settings.node.name

    def require_admin(self, request: web.Request) -> None:
        """Raise a 401 unless `request` carries this node's admin token (a 403 for a consumer token)."""
        check_admin(request, self.admin_token)

    async def authenticate(self, request: web.Request) -> Principal:
        """Who calls: the admin, or the consumer whose unrevoked token `request` carries; else a 401
        (`admin_auth_required` without a token, `bad_consumer_token` for a consumer token that is
        malformed, unknown, revoked or has the wrong secret, `bad_admin_token` for anything else).
        The token is looked up on every request, so a revocation through any replica holds at once."""
        token = bearer_token(request)
        if is_admin_token(token, self.admin_token):
            return ADMIN
        if not looks_like_consumer_token(token):
            raise bad_admin_token()
        consumer = await asyncio.to_thread(tokens.consumer_of, self.engine, token)
        if consumer is None:
            raise ApiError(
                401, "bad_consumer_token", "the consumer token is not valid (malformed, unknown or revoked)"
            )
        return Principal(consumer)


CTX = web.AppKey("cpnode", NodeContext)
