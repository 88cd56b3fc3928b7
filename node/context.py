"""The typed state of one running node, shared by its components through the aiohttp app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from aiohttp import web
from sqlalchemy.engine import Engine

from node import __version__
from node.accounts import store as accounts
from node.accounts.lifecycle import Status, refusal
from node.config import Settings
from node.db import in_thread
from node.http.auth import (
    ADMIN,
    Principal,
    bad_admin_token,
    bearer_token,
    check_admin,
    consumer_principal,
    is_admin_token,
    looks_like_consumer_token,
    looks_like_user_token,
)
from node.http.errors import ApiError
from node.identity import Identity
from node.metrics import Metrics
from node.offers import OfferSource
from node.scheduler import JobScheduler
from node.trading import tokens

# A readiness check returns None when healthy, else a short reason.
ReadinessCheck = Callable[[], Awaitable[str | None]]
# Authenticates a request that carries another scheme than a bearer token (node.accounts.federated).
Authenticator = Callable[[web.Request], Awaitable[Principal]]
ASSERTION_SCHEME = "cpnode-assertion"  # federation.assertions.SCHEME, compared in lower case
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
    # Set by node.accounts when this process serves partners' consumers (`Authorization:
    # Cpnode-Assertion ...`); None refuses that scheme.
    assertion_authenticator: Authenticator | None = None

    @property
    def name(self) -> str:
        """This node's name."""
        return self.settings.node.name

    def require_admin(self, request: web.Request) -> None:
        """Raise unless the caller is the node's staff: a 401 without valid credentials, a 403
        `admin_only` for a consumer. Which staff role may call the route is the permission table's
        (node.http.access has checked it before the handler runs)."""
        principal = request.get(PRINCIPAL)
        if principal is None:
            check_admin(request, self.admin_token)
        elif not principal.is_admin:
            raise ApiError(
                403, "admin_only", "this route is for the node's staff; consumer tokens are not allowed"
            )

    async def authenticate(self, request: web.Request) -> Principal:
        """Who calls (once per request; later calls return the same): the bootstrap admin, an
        operator user, a consumer, or a partner's consumer by assertion. A 401 without valid
        credentials (`admin_auth_required` without any, `bad_consumer_token` / `bad_user_token` for
        a token that is malformed, unknown, revoked or has the wrong secret, `bad_admin_token` for
        anything else); a 403 `account_suspended` / `account_closed` for a valid credential of an
        account that is not active. Tokens and account states are read on every request, so a
        revocation or suspension through any replica holds at once."""
        principal = request.get(PRINCIPAL)
        if principal is None:
            principal = await self._identify(request)
            request[PRINCIPAL] = principal
        return principal

    async def _identify(self, request: web.Request) -> Principal:
        scheme = request.headers.get("Authorization", "").partition(" ")[0].lower()
        if scheme == ASSERTION_SCHEME:
            if self.assertion_authenticator is None:
                raise ApiError(
                    401, "assertions_not_accepted", "this process does not accept account assertions"
                )
            return await self.assertion_authenticator(request)
        token = bearer_token(request)
        if is_admin_token(token, self.admin_token):
            return ADMIN
        if looks_like_user_token(token):
            user = await in_thread(self.engine, accounts.user_of, token)
            if user is None:
                raise ApiError(
                    401, "bad_user_token", "the user token is not valid (malformed, unknown or replaced)"
                )
            refused = refusal(user.account.status, f"user:{user.name}")
            if refused is not None:
                raise refused
            return Principal(role=user.role, user=user.name)
        if not looks_like_consumer_token(token):
            raise bad_admin_token()
        found = await in_thread(self.engine, tokens.consumer_and_status, token)
        if found is None:
            raise ApiError(
                401, "bad_consumer_token", "the consumer token is not valid (malformed, unknown or revoked)"
            )
        consumer, status = found
        refused = refusal(cast(Status, status), f"consumer:{consumer}")
        if refused is not None:
            raise refused
        return consumer_principal(consumer)


PRINCIPAL = web.RequestKey("cpnode_principal", Principal)
CTX = web.AppKey("cpnode", NodeContext)
