"""`/api/v1/partners` (admin token): who this node trusts, with link state and catalog age, the
catalog alerts (equivocations and rejections), and pinning, trusting and removing partners: the
same operations as `cpnode partners`, for the console and other clients of the API.

    GET  /api/v1/partners                 {"partners", "alerts", "discovered"}
    POST /api/v1/partners                 {"name", "urls", "public_key", "credit_limit"?, "markup_bp"?}
    POST /api/v1/partners/trust           {"name", "fingerprint", "credit_limit"?, "markup_bp"?}: pin a
                                          discovered node after comparing its fingerprint
    POST /api/v1/partners/{name}/remove   forget a partner pinned here (config ones live in node.toml)
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from federation import store
from federation.keys import fingerprint, parse_public_key
from federation.partners import Agreement, Partner
from node.context import CTX, NodeContext
from node.db.threads import in_thread
from node.http.body import parse_body
from node.http.errors import ApiError
from node.peering.partners import check_partner_url, discovered_candidate, discovered_rows, partner_rows

ALERTS_LISTED = 50
EVENTS_READ = 500  # catalog events read to find the latest alerts among the accepted ones


class _Terms(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credit_limit: StrictInt = Field(default=0, ge=0, le=10**15)
    markup_bp: StrictInt = Field(default=0, ge=0, le=100_000)


class NewPartner(_Terms):
    """A partner to pin: name, base URLs, public key, and the agreement's money terms."""

    name: str = Field(min_length=1, max_length=63)
    urls: list[str] = Field(min_length=1, max_length=8)
    public_key: str = Field(min_length=1, max_length=200)


class TrustCandidate(_Terms):
    """A discovered node to pin, with the fingerprint its operator read out."""

    name: str = Field(min_length=1, max_length=63)
    fingerprint: str = Field(min_length=1, max_length=200)


def _agreement(ctx: NodeContext, terms: _Terms) -> Agreement:
    return Agreement(
        credit_limit=terms.credit_limit, markup_bp=terms.markup_bp, currency=ctx.settings.trading.currency
    )


def _pin(
    ctx: NodeContext, name: str, urls: list[str], key: str, terms: _Terms, source: str
) -> dict[str, Any]:
    """Check and pin one partner (FederationError or ValueError when it cannot be)."""
    checked = tuple(check_partner_url(url, ctx.settings.federation.allow_networks) for url in urls)
    partner = Partner(name, checked, key, _agreement(ctx, terms), source=source)
    store.add_partner(ctx.engine, partner, int(time.time()))
    return {
        "name": partner.name,
        "urls": list(checked),
        "fingerprint": fingerprint(parse_public_key(key)),
        "source": source,
        "agreement": partner.agreement.to_json(),
    }


async def list_partners(request: web.Request) -> web.Response:
    """`GET /api/v1/partners`: partners, recent catalog alerts, discovered candidates."""
    ctx = request.app[CTX]
    ctx.require_admin(request)

    def read() -> dict[str, Any]:
        partners = partner_rows(ctx.engine, int(time.time()))
        return {
            "partners": partners,
            "alerts": [
                event
                for event in store.catalog_events(ctx.engine, None, EVENTS_READ)
                if event["kind"] != "accepted"
            ][:ALERTS_LISTED],
            "discovered": discovered_rows(ctx.engine, {row["name"] for row in partners}),
        }

    return web.json_response(await in_thread(ctx.engine, lambda _engine: read()))


async def add_partner(request: web.Request) -> web.Response:
    """`POST /api/v1/partners`: pin a partner (409 when the name is taken)."""
    ctx = request.app[CTX]
    ctx.require_admin(request)
    body = await parse_body(request, NewPartner)
    try:
        answer = await in_thread(
            ctx.engine, lambda _engine: _pin(ctx, body.name, body.urls, body.public_key, body, "api")
        )
    except ValueError as exc:  # the URL does not resolve (federation's own errors have their status)
        raise ApiError(400, "bad_partner", str(exc)) from None
    return web.json_response(answer, status=201)


async def trust(request: web.Request) -> web.Response:
    """`POST /api/v1/partners/trust`: pin a discovered node whose fingerprint matches."""
    ctx = request.app[CTX]
    ctx.require_admin(request)
    body = await parse_body(request, TrustCandidate)
    candidate = await in_thread(ctx.engine, discovered_candidate, body.name, body.fingerprint)
    answer = await in_thread(
        ctx.engine,
        lambda _engine: _pin(ctx, body.name, [candidate["url"]], candidate["public_key"], body, "discovery"),
    )
    return web.json_response(answer, status=201)


async def remove(request: web.Request) -> web.Response:
    """`POST /api/v1/partners/{name}/remove`: forget a partner and its keys, session and catalog."""
    ctx = request.app[CTX]
    ctx.require_admin(request)
    name = request.match_info["name"]
    await in_thread(ctx.engine, store.remove_partner, name)
    return web.json_response({"removed": name})


def add_routes(app: web.Application) -> None:
    """Mount `/api/v1/partners`."""
    app.router.add_get("/api/v1/partners", list_partners)
    app.router.add_post("/api/v1/partners", add_partner)
    app.router.add_post("/api/v1/partners/trust", trust)
    app.router.add_post("/api/v1/partners/{name}/remove", remove)
