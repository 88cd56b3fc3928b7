"""The console component (role `api`): mounts the pages, the sign-in, the live streams and the
vendored assets at `[console] path`, unless `[console] enabled` is false."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

from node.console import ledger_pages, operator, reports, trading
from node.console.errors import error_pages
from node.console.render import SECURITY_HEADERS
from node.console.session import SessionKeys
from node.console.web import CONSOLE, Console, signin, signin_form, signout
from node.context import NodeContext

STATIC_DIR = Path(__file__).parent / "static"
LOOPBACK_CONNECTIONS = 32


def session_secret(ctx: NodeContext) -> bytes:
    """The secret console sessions are sealed under: derived from the node's signing key, so every
    replica opens the same cookies and rotating the key signs everyone out."""
    seed = bytes(ctx.identity.signing_key)
    return hashlib.sha256(b"cpnode console sessions\x00" + seed).digest()


async def _static_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.match_info.route.name == "console-static":
        response.headers.update(SECURITY_HEADERS)
        response.headers["Cache-Control"] = "public, max-age=3600"


def install(app: web.Application, ctx: NodeContext) -> None:
    """Add the console's routes to `app` (nothing when it is switched off)."""
    settings = ctx.settings.console
    if not settings.enabled or "api" not in ctx.roles:
        return
    console = Console(
        settings,
        SessionKeys(session_secret(ctx)),
        ctx.name,
        ctx.settings.trading.currency,
    )
    app[CONSOLE] = console

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=LOOPBACK_CONNECTIONS)
        console.http = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=60), auto_decompress=True
        )
        yield
        await console.http.close()

    app.cleanup_ctx.append(lifecycle)
    app.on_response_prepare.append(_static_headers)
    u = console.url
    router = app.router
    router.add_static(u("static"), STATIC_DIR, name="console-static", append_version=False)
    router.add_get(u(""), trading.home, name="console-home")
    router.add_get(u("signin"), signin_form)
    router.add_post(u("signin"), signin)
    router.add_post(u("signout"), signout)
    router.add_get(u("federation"), operator.federation)
    router.add_post(u("federation/partners"), operator.pin_partner)
    router.add_post(u("federation/trust"), operator.trust_partner)
    router.add_get(u("federation/partners/{name}/remove"), operator.confirm_remove)
    router.add_post(u("federation/partners/{name}/remove"), operator.confirm_remove)
    router.add_get(u("pools"), operator.pools)
    router.add_get(u("migrations"), operator.migrations)
    router.add_get(u("migrations/{id}"), operator.migration)
    router.add_post(u("migrations/{id}/cancel"), operator.cancel_migration)
    router.add_get(u("migrations/{id}/events"), trading.migration_events)
    router.add_get(u("ledger"), ledger_pages.ledger)
    router.add_post(u("ledger/audits"), ledger_pages.export_audit)
    router.add_get(u("ledger/bundle"), ledger_pages.download_bundle)
    router.add_post(u("ledger/verify"), ledger_pages.verify_bundle)
    router.add_post(u("ledger/reconcile"), ledger_pages.reconcile)
    router.add_get(u("plan"), operator.plan)
    router.add_get(u("strategies"), reports.strategies)
    router.add_get(u("statements"), reports.statements)
    router.add_get(u("statements/{id}"), reports.statement)
    router.add_get(u("statements/{id}/csv"), reports.statement_csv)
    router.add_get(u("orders"), trading.orders)
    router.add_post(u("orders"), trading.place_order)
    router.add_get(u("orders/{id}"), trading.order)
    router.add_post(u("orders/{id}/cancel"), trading.cancel_order)
    router.add_get(u("offers"), trading.offers)
    router.add_post(u("offers"), trading.offers)
    router.add_post(u("tasks"), trading.submit_task)
    router.add_get(u("tasks/{id}"), trading.task)
    router.add_post(u("tasks/{id}/stop"), trading.stop_task)
    router.add_get(u("tasks/{id}/events"), trading.task_events)
    app.middlewares.insert(0, error_pages(console.prefix))  # outermost: sees the node's final answer
