"""HTTP API of accounts (role `api`); who may call each route is the permission table's
(node.http.permissions).

    GET  /api/v1/accounts                      every consumer with its status and verification
    GET  /api/v1/accounts/{id}                 one consumer's account: status, verification, balances
    POST /api/v1/accounts/{id}/verify          {"verdict": "verified"|"rejected", "note"?}
    POST /api/v1/accounts/{id}/suspend         {"reason"?}: its tokens stop working at once
    POST /api/v1/accounts/{id}/reinstate       {"reason"?}
    POST /api/v1/accounts/{id}/close           {"reason"?}: needs a zero balance, no holds, no open
                                               orders or tasks (409 `close_blocked` naming them)
    GET  /api/v1/account-events                ?kind=&subject=&after=&limit=: the audit trail
    GET  /api/v1/federated-accounts            ?issuer=: partners' consumers seen here
    POST /api/v1/account-assertions            {"audience", "public_key"} (consumer token): a signed
                                               assertion for partner `audience`
    POST /api/v1/users                         {"name", "role"}: an operator user and its token (once)
    GET  /api/v1/users, /api/v1/users/{id}
    POST /api/v1/users/{id}/token              a new token (the old one stops working)
    POST /api/v1/users/{id}/verify|suspend|reinstate|close

Consumer lifecycle changes are told to the partners that have seen the consumer (the answer's
`partners` says how each went). Bodies are checked whole before anything changes.
"""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

import ledger
from ledger import AccountKind
from node.accounts import closing, federated_store, store
from node.accounts.federated import INTERCONNECT
from node.accounts.lifecycle import Action, UnknownAccountError
from node.context import CTX
from node.db import in_thread
from node.http.body import parse_body
from node.http.errors import ApiError
from node.http.permissions import USER_ROLES
from node.trading import rules
from node.trading.views import consumer_view

NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Verdict(_Body):
    """The operator's real-name verification verdict."""

    verdict: Literal["verified", "rejected"]
    note: str = Field(default="", max_length=500)


class Reason(_Body):
    """Why a lifecycle action is taken (kept in the audit event)."""

    reason: str = Field(default="", max_length=500)


class NewUser(_Body):
    """An operator user to create."""

    name: str = Field(pattern=NAME)
    role: Literal["admin", "operator", "auditor"]


class NewAssertion(_Body):
    """An assertion to issue: for which partner, bound to which public key (base64url Ed25519)."""

    audience: str = Field(pattern=NAME)
    public_key: str = Field(min_length=40, max_length=100)


def _int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 15:
        raise ApiError(400, "bad_request", f"{name} must be a non-negative integer", field=name)
    return int(raw)


async def _consumer(request: web.Request) -> tuple[str, ledger.Account]:
    name = rules.check_consumer_id(request.match_info["id"])
    try:
        account = await in_thread(request.app[CTX].engine, ledger.get_account, rules.consumer_account(name))
    except ledger.NotFoundError:
        raise UnknownAccountError(f"no consumer {name!r}", code="unknown_consumer") from None
    return name, account


def _account_view(record: store.AccountRecord, account: ledger.Account) -> dict[str, Any]:
    return {**record.view(), **{k: v for k, v in consumer_view(account).items() if k != "id"}}


async def list_accounts(request: web.Request) -> web.Response:
    """`GET /api/v1/accounts`."""
    engine = request.app[CTX].engine
    accounts = await in_thread(engine, ledger.list_accounts)
    records = await in_thread(engine, store.list_records, "consumer")
    rows = []
    for account in accounts:
        if account.spec.kind is AccountKind.CONSUMER and account.id.startswith(rules.CONSUMER_PREFIX):
            name = account.id.removeprefix(rules.CONSUMER_PREFIX)
            rows.append(_account_view(records.get(name) or store.AccountRecord("consumer", name), account))
    return web.json_response({"accounts": rows})


async def show_account(request: web.Request) -> web.Response:
    """`GET /api/v1/accounts/{id}`."""
    name, account = await _consumer(request)
    record = await in_thread(request.app[CTX].engine, store.get, "consumer", name)
    partners = await in_thread(request.app[CTX].engine, federated_store.audiences, name)
    return web.json_response({**_account_view(record, account), "partners": partners})


async def _tell_partners(request: web.Request, consumer: str) -> dict[str, str]:
    interconnect = request.app.get(INTERCONNECT)
    return {} if interconnect is None else await interconnect.push(consumer)


async def verify_account(request: web.Request) -> web.Response:
    """`POST /api/v1/accounts/{id}/verify`."""
    ctx = request.app[CTX]
    name, account = await _consumer(request)
    body = await parse_body(request, Verdict)
    caller = await ctx.authenticate(request)
    record = await in_thread(
        ctx.engine, store.verify, "consumer", name, body.verdict, caller.actor, body.note, store.now_ms()
    )
    told = await _tell_partners(request, name)
    return web.json_response({**_account_view(record, account), "partners_told": told})


def _consumer_action(action: Action) -> Any:
    async def handler(request: web.Request) -> web.Response:
        ctx = request.app[CTX]
        name, account = await _consumer(request)
        body = await parse_body(request, Reason)
        caller = await ctx.authenticate(request)
        if action == "close":
            record, account = await closing.close(ctx.engine, name, caller.actor, body.reason)
        else:
            record = await in_thread(
                ctx.engine, store.change, "consumer", name, action, caller.actor, store.now_ms(), body.reason
            )
        told = await _tell_partners(request, name)
        return web.json_response({**_account_view(record, account), "partners_told": told})

    handler.__doc__ = f"`POST /api/v1/accounts/{{id}}/{action}`."
    return handler


async def list_events(request: web.Request) -> web.Response:
    """`GET /api/v1/account-events`."""
    kind = request.query.get("kind") or None
    subject = request.query.get("subject") or None
    rows = await in_thread(
        request.app[CTX].engine,
        store.events,
        kind,
        subject,
        _int(request, "after", 0),
        min(_int(request, "limit", 100), store.MAX_EVENTS),
    )
    return web.json_response({"events": [row.view() for row in rows]})


async def list_federated(request: web.Request) -> web.Response:
    """`GET /api/v1/federated-accounts`."""
    rows = await in_thread(
        request.app[CTX].engine, federated_store.list_accounts, request.query.get("issuer") or None
    )
    return web.json_response({"accounts": [row.view() for row in rows]})


async def issue_assertion(request: web.Request) -> web.Response:
    """`POST /api/v1/account-assertions`."""
    caller = await request.app[CTX].authenticate(request)
    body = await parse_body(request, NewAssertion)
    interconnect = request.app.get(INTERCONNECT)
    if interconnect is None or caller.consumer is None:
        raise ApiError(503, "federation_unavailable", "this process does not issue assertions")
    document = await interconnect.issue(caller.consumer, body.audience, body.public_key)
    return web.json_response(document, status=201)


# --- operator users ------------------------------------------------------------------------------


async def _user(request: web.Request) -> store.User:
    name = request.match_info["id"]
    user = await in_thread(request.app[CTX].engine, store.get_user, name) if len(name) <= 63 else None
    if user is None:
        raise UnknownAccountError(f"no user {name!r}", code="unknown_user")
    return user


async def create_user(request: web.Request) -> web.Response:
    """`POST /api/v1/users`."""
    ctx = request.app[CTX]
    body = await parse_body(request, NewUser)
    caller = await ctx.authenticate(request)
    token, user = await in_thread(
        ctx.engine, store.create_user, body.name, body.role, caller.actor, store.now_ms()
    )
    return web.json_response({**user.view(), "token": token}, status=201)


async def list_users(request: web.Request) -> web.Response:
    """`GET /api/v1/users`."""
    users = await in_thread(request.app[CTX].engine, store.list_users)
    return web.json_response({"users": [user.view() for user in users], "roles": list(USER_ROLES)})


async def show_user(request: web.Request) -> web.Response:
    """`GET /api/v1/users/{id}`."""
    return web.json_response((await _user(request)).view())


async def user_token(request: web.Request) -> web.Response:
    """`POST /api/v1/users/{id}/token`."""
    ctx = request.app[CTX]
    user = await _user(request)
    caller = await ctx.authenticate(request)
    token = await in_thread(ctx.engine, store.new_user_token_for, user.name, caller.actor, store.now_ms())
    return web.json_response({"name": user.name, "token": token}, status=201)


async def verify_user(request: web.Request) -> web.Response:
    """`POST /api/v1/users/{id}/verify`."""
    ctx = request.app[CTX]
    user = await _user(request)
    body = await parse_body(request, Verdict)
    caller = await ctx.authenticate(request)
    await in_thread(
        ctx.engine, store.verify, "user", user.name, body.verdict, caller.actor, body.note, store.now_ms()
    )
    return web.json_response((await _user(request)).view())


def _user_action(action: Action) -> Any:
    async def handler(request: web.Request) -> web.Response:
        ctx = request.app[CTX]
        user = await _user(request)
        body = await parse_body(request, Reason)
        caller = await ctx.authenticate(request)
        if caller.user == user.name and action != "reinstate":
            raise ApiError(409, "own_account", f"a user cannot {action} its own account")
        await in_thread(
            ctx.engine, store.change, "user", user.name, action, caller.actor, store.now_ms(), body.reason
        )
        return web.json_response((await _user(request)).view())

    handler.__doc__ = f"`POST /api/v1/users/{{id}}/{action}`."
    return handler


ACTIONS: tuple[Action, ...] = ("suspend", "reinstate", "close")


def add_routes(app: web.Application) -> None:
    """Mount the accounts API."""
    app.router.add_get("/api/v1/accounts", list_accounts)
    app.router.add_get("/api/v1/accounts/{id}", show_account)
    app.router.add_post("/api/v1/accounts/{id}/verify", verify_account)
    app.router.add_get("/api/v1/account-events", list_events)
    app.router.add_get("/api/v1/federated-accounts", list_federated)
    app.router.add_post("/api/v1/account-assertions", issue_assertion)
    app.router.add_post("/api/v1/users", create_user)
    app.router.add_get("/api/v1/users", list_users)
    app.router.add_get("/api/v1/users/{id}", show_user)
    app.router.add_post("/api/v1/users/{id}/token", user_token)
    app.router.add_post("/api/v1/users/{id}/verify", verify_user)
    for action in ACTIONS:
        app.router.add_post(f"/api/v1/accounts/{{id}}/{action}", _consumer_action(action))
        app.router.add_post(f"/api/v1/users/{{id}}/{action}", _user_action(action))
