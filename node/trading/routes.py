"""HTTP API of trading (role `api`): the admin's, and the part a consumer uses with its own token.

    POST /api/v1/consumers                    {"id"}: a consumer account (idempotent)
    GET  /api/v1/consumers                    consumers with balance and available money
    GET  /api/v1/consumers/{id}               one consumer                                 (consumer: own)
    POST /api/v1/consumers/{id}/deposits      {"amount", "id"?}: money in (idempotent by id)
    POST /api/v1/consumers/{id}/tokens        a new consumer token, shown this once
    GET  /api/v1/consumers/{id}/tokens        its tokens (ids and times, never a secret)
    POST /api/v1/consumers/{id}/tokens/{token_id}/revoke
    POST /api/v1/orders                       {"consumer"?, "offer_id", "source", "units", "hours", "id"?}
                                              or {"consumer"?, "demand", "id"?}: the best match (node.market)
                                                                                           (consumer: own)
    GET  /api/v1/orders[?consumer=C][&state=S][&limit=N]  newest first, at most 500    (consumer: own)
    GET  /api/v1/orders/{id}                  one order with its receipt and settlement documents
    POST /api/v1/orders/{id}/settle           {"used_hours"}: usage typed by hand, an operator's
                                              correction (admin only; a task's order is metered)
    POST /api/v1/orders/{id}/cancel                               (consumer: own orders)
    GET  /api/v1/sales[?partner=P]            trades partners bought here
    GET  /api/v1/trading/summary?since_ts=T   orders and sales since T: count and sums by currency

Routes marked `consumer` also take a consumer token (node.http.auth) and then act only for that
consumer: another consumer's order or account answers 404 exactly as one that does not exist (so
ids cannot be probed), ordering or listing for another consumer is 403 `forbidden`. Every other
route answers a consumer token with 403 `admin_only`.

Handlers live at module level and find the buyer through the app (`BUYER`), as the peer API does.
Bodies are read by node.http.body (bounded size and depth) and checked whole before anything
changes (400 `bad_request` naming the field); an order that ends without a sale answers 409 with
the reason's code and the order, or 502 `bad_partner_answer` when the seller's answer could not be
read or trusted; a seller that does not answer in time 504 `partner_unavailable` (the order keeps
its state and is retried).
"""

from __future__ import annotations

import secrets
from typing import Any, Protocol

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StrictInt

import ledger
from ledger import Account, AccountKind
from ledger.records import MAX_AMOUNT
from node.accounts import store as accounts
from node.context import CTX
from node.db.threads import in_thread
from node.http.auth import ADMIN, TOKEN_ID_RE, Principal
from node.http.body import json_object, parse_body, validate
from node.http.errors import ApiError, bad_request
from node.trading import books, rules, store, tokens
from node.trading.buyer import Buyer
from node.trading.core import Trading
from node.trading.errors import StateError, UnknownError
from node.trading.summary import trading_summary
from node.trading.views import consumer_view, order_view

MAX_LISTED = 500


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewConsumer(_Body):
    """A consumer account to create."""

    id: str = Field(pattern=rules.CONSUMER_ID_RE.pattern)


class NewDeposit(_Body):
    """Money entering a consumer's account; the id makes a retry safe."""

    amount: StrictInt = Field(ge=1, le=MAX_AMOUNT)
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,99}$")


class NewOrder(_Body):
    """An order for one offer of the merged offer view (`offer_id` and `source` as it shows them);
    `consumer` may be left out with a consumer token (it is then the token's consumer)."""

    consumer: str | None = Field(default=None, min_length=1, max_length=63)
    offer_id: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=80)
    units: StrictInt = Field(ge=1, le=rules.MAX_UNITS)
    hours: StrictInt = Field(ge=1, le=rules.MAX_HOURS)
    id: str | None = Field(default=None, max_length=100)


class DemandOrder(_Body):
    """An order for the best match of a demand (node.market checks the demand itself)."""

    consumer: str | None = Field(default=None, min_length=1, max_length=63)
    demand: Any
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,99}$")


class DemandOrders(Protocol):
    """Places orders for a demand's best match (set by node.market); the answer's status and body."""

    async def __call__(
        self, consumer: str, demand: Any, request_id: str | None
    ) -> tuple[int, dict[str, Any]]: ...


DEMAND_ORDERS: web.AppKey[DemandOrders] = web.AppKey("trading_demand_orders")
BUYER = web.AppKey("trading_buyer", Buyer)


class Settlement(_Body):
    """How many of the ordered hours were used."""

    used_hours: StrictInt = Field(ge=0, le=rules.MAX_HOURS)


class NoBody(_Body):
    """A request that takes no fields (an empty body or `{}`)."""


def _forbidden(what: str) -> ApiError:
    return ApiError(403, "forbidden", f"a consumer token can only {what} of its own consumer")


def _unknown_consumer(name: str) -> UnknownError:
    return UnknownError(f"no consumer {name!r}", code="unknown_consumer")


def _unknown_order(order_id: str) -> UnknownError:
    # The same error node.trading.steps raises for an order that does not exist.
    return UnknownError(f"no order {order_id!r}", code="unknown_order")


def _trading(request: web.Request) -> Trading:
    return request.app[BUYER].trading


async def _consumer(request: web.Request, caller: Principal) -> Account:
    """The consumer of the URL: any for the admin, only its own for a consumer token (else 404)."""
    name = rules.check_consumer_id(request.match_info["id"])
    if not caller.is_admin and name != caller.consumer:
        raise _unknown_consumer(name)
    try:
        return await in_thread(_trading(request).engine, ledger.get_account, rules.consumer_account(name))
    except ledger.NotFoundError:
        raise _unknown_consumer(name) from None


async def _admin_consumer(request: web.Request) -> Account:
    request.app[CTX].require_admin(request)
    return await _consumer(request, ADMIN)


async def _own_order(request: web.Request, caller: Principal) -> store.Order:
    """The order of the URL, if the caller may see it (another consumer's answers 404)."""
    order_id = request.match_info["id"]
    order = await request.app[BUYER].get(order_id)
    if not caller.is_admin and order.consumer != caller.consumer:
        raise _unknown_order(order_id)
    return order


async def create_consumer(request: web.Request) -> web.Response:
    """`POST /api/v1/consumers`: a consumer account (idempotent)."""
    request.app[CTX].require_admin(request)
    trading = _trading(request)
    body = await parse_body(request, NewConsumer)
    spec = books.consumer_spec(body.id, trading.settings.currency)
    [result] = await in_thread(trading.engine, ledger.create_accounts, [spec])
    if not result.ok:
        raise StateError(f"consumer {body.id}: {result.message or result.status}", code=str(result.status))
    account = await in_thread(trading.engine, ledger.get_account, spec.id)
    status = 201 if result.status is ledger.Status.CREATED else 200
    if status == 201:
        caller = await request.app[CTX].authenticate(request)
        await in_thread(trading.engine, accounts.created, "consumer", body.id, caller.actor, tokens.now_ms())
    return web.json_response(consumer_view(account), status=status)


async def show_consumer(request: web.Request) -> web.Response:
    """`GET /api/v1/consumers/{id}`: one consumer's balances."""
    caller = await request.app[CTX].authenticate(request)
    return web.json_response(consumer_view(await _consumer(request, caller)))


async def list_consumers(request: web.Request) -> web.Response:
    """`GET /api/v1/consumers`: every consumer with its balances."""
    request.app[CTX].require_admin(request)
    accounts = await in_thread(_trading(request).engine, ledger.list_accounts)
    rows = [
        consumer_view(a)
        for a in accounts
        if a.spec.kind is AccountKind.CONSUMER and a.id.startswith(rules.CONSUMER_PREFIX)
    ]
    return web.json_response({"consumers": rows})


async def deposit(request: web.Request) -> web.Response:
    """`POST /api/v1/consumers/{id}/deposits`: money in (idempotent by id)."""
    account = await _admin_consumer(request)
    trading = _trading(request)
    body = await parse_body(request, NewDeposit)
    deposit_id = body.id or f"deposit:{secrets.token_hex(12)}"
    name = account.id.removeprefix(rules.CONSUMER_PREFIX)
    result = await in_thread(
        trading.engine, books.deposit, name, deposit_id, body.amount, account.spec.currency
    )
    if not result.ok:
        raise StateError(
            f"deposit {deposit_id}: {result.status}{f' ({result.field})' if result.field else ''}",
            code=str(result.status),
        )
    account = await in_thread(trading.engine, ledger.get_account, account.id)
    status = 201 if result.status is ledger.Status.CREATED else 200
    return web.json_response(
        {"deposit": deposit_id, "status": str(result.status), **consumer_view(account)}, status=status
    )


async def issue_token(request: web.Request) -> web.Response:
    """`POST /api/v1/consumers/{id}/tokens`: a new consumer token, shown this once."""
    account = await _admin_consumer(request)
    name = account.id.removeprefix(rules.CONSUMER_PREFIX)
    token, row = await in_thread(_trading(request).engine, tokens.issue, name, tokens.now_ms())
    await _token_event(request, name, "token", row.token_id, row.created_ts)
    return web.json_response({**row.view(), "token": token}, status=201)


async def list_tokens(request: web.Request) -> web.Response:
    """`GET /api/v1/consumers/{id}/tokens`: the consumer's tokens (never a secret)."""
    account = await _admin_consumer(request)
    name = account.id.removeprefix(rules.CONSUMER_PREFIX)
    rows = await in_thread(_trading(request).engine, tokens.list_tokens, name)
    return web.json_response({"consumer": name, "tokens": [row.view() for row in rows]})


async def revoke_token(request: web.Request) -> web.Response:
    """`POST /api/v1/consumers/{id}/tokens/{token_id}/revoke`."""
    request.app[CTX].require_admin(request)
    name = rules.check_consumer_id(request.match_info["id"])
    token_id = request.match_info["token_id"]
    row = None
    if TOKEN_ID_RE.fullmatch(token_id):
        row = await in_thread(_trading(request).engine, tokens.revoke, name, token_id, tokens.now_ms())
    if row is None:
        raise UnknownError(f"consumer {name!r} has no token {token_id!r}", code="unknown_token")
    await _token_event(request, name, "revoke-token", row.token_id, tokens.now_ms())
    return web.json_response(row.view())


async def _token_event(request: web.Request, consumer: str, action: str, token_id: str, ts_ms: int) -> None:
    caller = await request.app[CTX].authenticate(request)
    await in_thread(
        _trading(request).engine,
        accounts.record_event,
        caller.actor,
        "consumer",
        consumer,
        action,
        {"token_id": token_id},
        ts_ms,
    )


async def place(request: web.Request) -> web.Response:
    """`POST /api/v1/orders`: an order for one offer, or for the best match of a demand."""
    caller = await request.app[CTX].authenticate(request)
    data = await json_object(request)
    by_demand = "demand" in data
    if by_demand == ("offer_id" in data or "source" in data):
        # Neither form stays the 400 a missing field always was; both is the demand form's 422.
        raise ApiError(
            422 if by_demand else 400,
            "bad_request",
            "offer_id, source, demand: give either offer_id and source, or a demand, "
            + ("not both" if by_demand else "one of them"),
            field="offer_id, source, demand",
        )
    body: DemandOrder | NewOrder = validate(DemandOrder, data) if by_demand else validate(NewOrder, data)
    consumer_id = body.consumer if body.consumer is not None else caller.consumer
    if consumer_id is None:
        raise bad_request("consumer: Field required", field="consumer")
    if not caller.is_admin and consumer_id != caller.consumer:
        raise _forbidden("place orders")
    if isinstance(body, DemandOrder):
        await in_thread(_trading(request).engine, accounts.require_active, "consumer", consumer_id)
        place_by_demand = request.app.get(DEMAND_ORDERS)
        if place_by_demand is None:
            raise ApiError(503, "market_unavailable", "this process does not match demands")
        status, answer = await place_by_demand(consumer_id, body.demand, body.id)
        return web.json_response(answer, status=status)
    # The consumer's account is checked active in placing's first read (one trip fewer).
    order = await request.app[BUYER].place(
        consumer_id, body.offer_id, body.source, body.units, body.hours, body.id, require_active=True
    )
    return web.json_response(order_view(order), status=201)


def _query_int(request: web.Request, name: str, default: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 15 or int(raw) > high:
        raise bad_request(f"{name} must be a whole number from 0 to {high}", field=name)
    return int(raw)


async def list_orders(request: web.Request) -> web.Response:
    """`GET /api/v1/orders[?consumer=C][&state=S][&limit=N]`: newest first (at most 500)."""
    caller = await request.app[CTX].authenticate(request)
    consumer_id = request.query.get("consumer")
    if not caller.is_admin:
        if consumer_id is not None and consumer_id != caller.consumer:
            raise _forbidden("list the orders")
        consumer_id = caller.consumer
    limit = _query_int(request, "limit", MAX_LISTED, MAX_LISTED)
    state = request.query.get("state") or None
    orders = await in_thread(_trading(request).engine, store.list_orders, consumer_id, limit, state)
    return web.json_response({"orders": [order_view(o) for o in orders]})


async def summary(request: web.Request) -> web.Response:
    """`GET /api/v1/trading/summary?since_ts=T`: orders and sales since T (UTC seconds), counted and
    summed by currency in the database (admin token)."""
    request.app[CTX].require_admin(request)
    since_ts = _query_int(request, "since_ts", 0, 2**53)
    return web.json_response(await in_thread(_trading(request).engine, trading_summary, since_ts))


async def show_order(request: web.Request) -> web.Response:
    """`GET /api/v1/orders/{id}`: one order with its documents."""
    caller = await request.app[CTX].authenticate(request)
    order = await _own_order(request, caller)
    return web.json_response(order_view(order, documents=True))


async def settle(request: web.Request) -> web.Response:
    """`POST /api/v1/orders/{id}/settle`: the operator settles an accepted order for hours typed by
    hand (a correction, recorded as such; what a task runs is metered and settled by the node)."""
    request.app[CTX].require_admin(request)
    body = await parse_body(request, Settlement)
    order = await _own_order(request, ADMIN)
    order = await request.app[BUYER].settle(order.id, body.used_hours)
    return web.json_response(order_view(order))


async def cancel(request: web.Request) -> web.Response:
    """`POST /api/v1/orders/{id}/cancel`: cancel an accepted order."""
    caller = await request.app[CTX].authenticate(request)
    await parse_body(request, NoBody)
    order = await _own_order(request, caller)
    order = await request.app[BUYER].cancel(order.id)
    return web.json_response(order_view(order))


async def list_sales(request: web.Request) -> web.Response:
    """`GET /api/v1/sales[?partner=P]`: trades partners bought here, newest first."""
    request.app[CTX].require_admin(request)
    partner = request.query.get("partner")
    sales = await in_thread(_trading(request).engine, store.list_sales, partner, MAX_LISTED)
    return web.json_response({"sales": [s.view() for s in sales]})


def add_routes(app: web.Application, buyer: Buyer) -> None:
    """Mount the trading API for `buyer`."""
    app[BUYER] = buyer
    app.router.add_post("/api/v1/consumers", create_consumer)
    app.router.add_get("/api/v1/consumers", list_consumers)
    app.router.add_get("/api/v1/consumers/{id}", show_consumer)
    app.router.add_post("/api/v1/consumers/{id}/deposits", deposit)
    app.router.add_post("/api/v1/consumers/{id}/tokens", issue_token)
    app.router.add_get("/api/v1/consumers/{id}/tokens", list_tokens)
    app.router.add_post("/api/v1/consumers/{id}/tokens/{token_id}/revoke", revoke_token)
    app.router.add_post("/api/v1/orders", place)
    app.router.add_get("/api/v1/orders", list_orders)
    app.router.add_get("/api/v1/orders/{id}", show_order)
    app.router.add_post("/api/v1/orders/{id}/settle", settle)
    app.router.add_post("/api/v1/orders/{id}/cancel", cancel)
    app.router.add_get("/api/v1/sales", list_sales)
    app.router.add_get("/api/v1/trading/summary", summary)
