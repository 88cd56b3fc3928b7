"""The federation component: mounts the `/fed/v1` peer API and `/api/v1/offers`, registers the
catalog sync job and the purge of expired replay nonces and lapsed trade claims, keeps config
partners in the database, and runs discovery when enabled."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

from aiohttp import web

from federation import store
from federation.httpsig import Identity as SigningIdentity
from federation.issuing import OfferSource as FederationOfferSource
from federation.server import SERVICE, add_routes
from federation.service import FederationService, OwnKeys
from federation.sync import run_round
from node.config import Settings
from node.context import CTX, NodeContext
from node.db.threads import in_thread
from node.http.errors import ApiError
from node.identity import Identity, reload_if_rotated
from node.peering import routes
from node.peering.offers import config_offer_source, merged_view, own_offers, relayed_offers

if TYPE_CHECKING:
    from federation.discovery import Candidate

log = logging.getLogger("cpnode.federation")
SYNC_JOB = "federation.sync"
PURGE_JOB = "federation.purge"
PURGE_INTERVAL_S = 60.0
DISCOVERY_START_TIMEOUT_S = 30.0


class OwnKeysWatcher:
    """The node's current keys for the federation service, noticing `cpnode keys rotate` within
    `node.identity.ROTATION_CHECK_S` (one stat of the key file a second at most)."""

    def __init__(self, ctx: NodeContext) -> None:
        self._ctx = ctx
        self._identity: Identity | None = None
        self._keys: OwnKeys | None = None

    def __call__(self) -> OwnKeys:
        identity = self._ctx.identity = reload_if_rotated(self._ctx.settings, self._ctx.identity)
        if self._keys is None or self._identity is not identity:
            self._identity = identity
            self._keys = OwnKeys(SigningIdentity(identity.name, identity.signing_key), identity.records())
        return self._keys


def static_keys(identity: Identity) -> Callable[[], OwnKeys]:
    """Keys for a short-lived federation service (a CLI command): the identity as loaded."""
    keys = OwnKeys(SigningIdentity(identity.name, identity.signing_key), identity.records())
    return lambda: keys


async def offers_api(request: web.Request) -> web.Response:
    """`GET /api/v1/offers[?partner=NAME][&relayed=1]`: own and partner offers with source and age
    (the admin or any consumer with its token), and with `relayed=1` the offers aggregator partners
    relayed; 404 `unknown_partner` for a partner that is not pinned."""
    ctx = request.app[CTX]
    await ctx.authenticate(request)
    partner = request.query.get("partner") or None
    if partner is not None and await in_thread(ctx.engine, store.get_partner, partner) is None:
        raise ApiError(
            404, "unknown_partner", f"no partner named {partner!r} is pinned (see `cpnode partners list`)"
        )
    own = await own_offers(ctx.offer_sources)
    now = int(time.time())
    rows = await in_thread(ctx.engine, lambda engine: merged_view(own, engine, now, partner))
    if request.query.get("relayed") in ("1", "true"):
        relayed = await in_thread(ctx.engine, relayed_offers, now)
        rows.extend(row for row in relayed if partner is None or row["partner"] == partner)
    return web.json_response({"node": ctx.name, "count": len(rows), "offers": rows})


def install(app: web.Application, ctx: NodeContext) -> None:
    """Add the federation routes, job and lifecycle to a node."""
    settings = ctx.settings

    # Registered even when empty, so offers added by a config reload are served (and wrapped by
    # trading's reservations like any source); pools, when configured, replace it.
    config_offers = config_offer_source(o.offer() for o in settings.offers)
    ctx.offer_sources.setdefault("config", config_offers)

    async def reload_hook(new: Settings) -> None:
        config_offers.replace(o.offer() for o in new.offers)
        partners = [entry.partner() for entry in new.partners]
        await in_thread(ctx.engine, store.sync_config_partners, partners, int(time.time()))
        issuers = [entry.issuer() for entry in new.issuers]
        await in_thread(ctx.engine, store.sync_config_issuers, issuers, int(time.time()))

    ctx.reload_hooks.append(reload_hook)
    service = FederationService(
        OwnKeysWatcher(ctx),
        ctx.engine,
        settings.federation.protocol_settings(),
        lambda: ctx.base_url,
        # The same dict, read by federation as plain mappings (it cannot import node's offer type).
        cast(dict[str, FederationOfferSource], ctx.offer_sources),
    )
    if "federation" in ctx.roles:
        add_routes(app, service)
    else:
        app[SERVICE] = service
    if "api" in ctx.roles:
        app.router.add_get("/api/v1/offers", offers_api)
        routes.add_routes(app)
    if "scheduler" in ctx.roles:

        async def sync_job() -> None:
            await run_round(service)

        ctx.scheduler.add_interval_job(SYNC_JOB, sync_job, settings.federation.sync_interval_s)

        async def purge_job() -> None:
            purged_nonces, purged_claims = await service.purge_expired()
            if purged_nonces or purged_claims:
                log.debug("purged %d expired nonces and %d lapsed trade claims", purged_nonces, purged_claims)

        ctx.scheduler.add_interval_job(PURGE_JOB, purge_job, PURGE_INTERVAL_S)

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        partners = [entry.partner() for entry in settings.partners]
        await in_thread(ctx.engine, store.sync_config_partners, partners, int(time.time()))
        issuers = [entry.issuer() for entry in settings.issuers]
        await in_thread(ctx.engine, store.sync_config_issuers, issuers, int(time.time()))
        discovery_task = None
        if settings.federation.discovery and "federation" in ctx.roles:
            discovery_task = asyncio.ensure_future(_run_discovery(ctx))
        yield
        if discovery_task is not None:
            discovery_task.cancel()
            await asyncio.gather(discovery_task, return_exceptions=True)
        await service.close()

    app.cleanup_ctx.append(lifecycle)


async def _run_discovery(ctx: NodeContext) -> None:
    """Announce and browse once the node knows its URL; stop when cancelled."""
    from federation.discovery import Discovery  # zeroconf is loaded only when discovery is on

    deadline = time.monotonic() + DISCOVERY_START_TIMEOUT_S
    # NodeServer sets base_url right after binding, which follows app start-up by moments.
    while not ctx.base_url and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    if not ctx.base_url:
        log.warning("discovery not started: the node has no URL")
        return
    port = urlsplit(ctx.base_url).port or 80

    async def seen(candidate: Candidate) -> None:
        await in_thread(
            ctx.engine,
            store.upsert_discovered,
            candidate.name,
            candidate.url,
            candidate.public_key,
            candidate.fingerprint,
            int(time.time()),
        )

    discovery = Discovery(ctx.name, ctx.base_url, port, ctx.identity.public_key, seen)
    try:
        await discovery.start()
        await asyncio.Event().wait()
    finally:
        await discovery.stop()
