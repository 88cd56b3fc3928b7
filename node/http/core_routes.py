"""Routes every node serves: liveness, readiness, metrics, node info, and the key document."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from node.context import CTX, NodeContext
from node.db import DatabaseError, check_database, in_thread
from node.identity import reload_if_rotated

READINESS_TIMEOUT_S = 2.0


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process is up and serving."""
    return web.json_response({"status": "alive", "node": request.app[CTX].name})


async def _database_check(ctx: NodeContext) -> str | None:
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_S):
            await in_thread(ctx.engine, check_database)
    except DatabaseError as exc:
        return str(exc)
    except TimeoutError:
        return f"database did not answer within {READINESS_TIMEOUT_S:g} s"
    return None


def scheduler_expected(ctx: NodeContext) -> bool:
    """Whether this process should be running the scheduler (a supervisor runs its own jobs)."""
    return bool({"scheduler", "supervisor"} & ctx.roles) and ctx.settings.scheduler.enabled


async def readyz(request: web.Request) -> web.Response:
    """Readiness: database reachable, scheduler running (when this process runs it), component checks."""
    ctx = request.app[CTX]
    checks: dict[str, str] = {}
    problem = await _database_check(ctx)
    checks["database"] = problem or "ok"
    if scheduler_expected(ctx):
        checks["scheduler"] = "ok" if ctx.scheduler.running else "not running"
    for name, check in ctx.readiness_checks.items():
        try:
            async with asyncio.timeout(READINESS_TIMEOUT_S):
                result = await check()
        except TimeoutError:
            result = f"no answer within {READINESS_TIMEOUT_S:g} s"
        checks[name] = result or "ok"
    ready = all(value == "ok" for value in checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    return web.json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of this node's metrics (business metrics refreshed first)."""
    metrics = request.app[CTX].metrics
    await metrics.refresh()
    payload, content_type = metrics.exposition()
    response = web.Response(body=payload)
    response.headers["Content-Type"] = content_type
    return response


def node_info(ctx: NodeContext) -> dict[str, Any]:
    """The public description of this node served at /api/v1/node."""
    node = ctx.settings.node
    return {
        "name": node.name,
        "operator": node.operator,
        "region": node.region,
        "key_id": ctx.identity.key_id,
        "public_key": ctx.identity.public_key,
        "version": ctx.version,
        "roles": sorted(ctx.roles),
        "started_ts": ctx.started_ts,
        "url": ctx.base_url,
    }


async def api_node(request: web.Request) -> web.Response:
    """Name, operator, region, key id and version of this node."""
    return web.json_response(node_info(request.app[CTX]))


async def whoami(request: web.Request) -> web.Response:
    """`GET /api/v1/whoami`: who the bearer token names: staff (`admin` true, its `role` and the
    `user` name, null for the bootstrap admin token) or a consumer (`consumer` NAME, role consumer or
    federated); a 401 for a token that is not valid here."""
    caller = await request.app[CTX].authenticate(request)
    return web.json_response(
        {"admin": caller.is_admin, "consumer": caller.consumer, "role": caller.role, "user": caller.user}
    )


class KeyDocumentCache:
    """Re-signs the key document when a quarter of its validity has passed, not on every request."""

    def __init__(self) -> None:
        self._document: dict[str, Any] | None = None
        self._renew_at_ts = 0
        self._kid = ""

    def get(self, ctx: NodeContext) -> dict[str, Any]:
        """The current signed key document of `ctx`'s node."""
        now = int(time.time())
        ctx.identity = reload_if_rotated(ctx.settings, ctx.identity)
        if self._document is None or now >= self._renew_at_ts or self._kid != ctx.identity.key_id:
            self._kid = ctx.identity.key_id
            validity = ctx.settings.keys.document_validity_s
            self._document = ctx.identity.key_document(now, validity)
            self._renew_at_ts = now + validity // 4
        return self._document


def install(app: web.Application, ctx: NodeContext) -> None:
    """Add the core routes to `app`."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/node", api_node)
    app.router.add_get("/api/v1/whoami", whoami)
    if "federation" in ctx.roles:
        cache = KeyDocumentCache()

        async def key_document(request: web.Request) -> web.Response:
            """The node's self-signed key document."""
            return web.json_response(cache.get(request.app[CTX]))

        app.router.add_get("/fed/v1/keys", key_document)
