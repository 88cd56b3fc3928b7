"""HTTP API of statements (role `api`):

    POST /api/v1/statements                 {"period", "consumer"? | "partner"?}: issue (staff)
    GET  /api/v1/statements[?consumer=C|partner=P][&period=YYYY-MM]     newest first   (consumer: own)
    GET  /api/v1/statements/{id}[?format=json|csv|html]                  one statement  (consumer: own)

Which roles may call each route is node.http.permissions' table (issuing: admin and operator;
reading: every staff role and consumers). With a consumer token a caller sees only its own account's statements: another's answers 404 as
one that does not exist, listing another consumer's or a partner's is 403 `forbidden`. `format=json`
(the default) answers the signed document byte for byte.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

import ledger
from node.context import CTX
from node.db import in_thread
from node.http.body import parse_body
from node.http.errors import ApiError, bad_request
from node.statements import store
from node.statements.errors import UnknownStatement
from node.statements.render import file_name, render

CONTENT_TYPES = {"json": "application/json", "csv": "text/csv", "html": "text/html"}
MAX_LISTED = 500


class IssueBody(BaseModel):
    """What to issue: a month, and at most one consumer or partner (none: every account)."""

    model_config = ConfigDict(extra="forbid")
    period: str = Field(min_length=7, max_length=7)
    consumer: str | None = Field(default=None, min_length=1, max_length=63)
    partner: str | None = Field(default=None, min_length=1, max_length=63)


async def issue(request: web.Request) -> web.Response:
    """`POST /api/v1/statements`: issue (or find) the month's statements; 409 `period_not_closed`."""
    ctx = request.app[CTX]
    ctx.require_admin(request)
    body = await parse_body(request, IssueBody)
    if body.consumer is not None and body.partner is not None:
        raise bad_request("give consumer or partner, not both")
    try:
        issued = await in_thread(
            ctx.engine,
            store.issue,
            ctx.identity.signing_key,
            ledger.origin_for(ctx.name),
            body.period,
            consumer=body.consumer,
            partner=body.partner,
        )
    except ledger.RequestError as exc:
        raise bad_request(str(exc)) from None
    return web.json_response({"statements": [{**s.summary(), "issued_now": new} for s, new in issued]})


async def list_statements(request: web.Request) -> web.Response:
    """`GET /api/v1/statements`: newest first; a consumer's own only."""
    ctx = request.app[CTX]
    caller = await ctx.authenticate(request)
    consumer, partner = request.query.get("consumer"), request.query.get("partner")
    if consumer is not None and partner is not None:
        raise bad_request("give consumer or partner, not both")
    if not caller.is_admin:
        if partner is not None or consumer not in (None, caller.consumer):
            raise ApiError(
                403, "forbidden", "a consumer token can only list the statements of its own consumer"
            )
        consumer = caller.consumer
    account = f"consumer:{consumer}" if consumer is not None else None
    if partner is not None:
        account = f"partner:{partner}"
    statements = await in_thread(
        ctx.engine,
        store.list_statements,
        account=account,
        period=request.query.get("period"),
        limit=MAX_LISTED,
    )
    return web.json_response({"statements": [s.summary() for s in statements]})


async def show(request: web.Request) -> web.Response:
    """`GET /api/v1/statements/{id}`: the statement in the asked form; another consumer's is 404."""
    ctx = request.app[CTX]
    caller = await ctx.authenticate(request)
    form = request.query.get("format", "json")
    if form not in CONTENT_TYPES:
        raise bad_request("format must be json, csv or html", field="format")
    statement_id = request.match_info["id"]
    statement = await in_thread(ctx.engine, store.get_statement, statement_id)
    if not caller.is_admin and statement.account != f"consumer:{caller.consumer}":
        raise UnknownStatement(f"no statement {statement_id!r}")
    body = render(statement.document or b"", form)
    headers = {"Content-Disposition": f'inline; filename="{file_name(statement.id, form)}"'}
    return web.Response(body=body, content_type=CONTENT_TYPES[form], charset="utf-8", headers=headers)


def add_routes(app: web.Application) -> None:
    """Mount the statements API."""
    app.router.add_post("/api/v1/statements", issue)
    app.router.add_get("/api/v1/statements", list_statements)
    app.router.add_get("/api/v1/statements/{id}", show)
