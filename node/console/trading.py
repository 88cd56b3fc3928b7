"""Pages both roles use, scoped by the API to what the signed-in person may see: the home page,
orders and tasks (an operator sees all, a consumer only its own), one order, one task with its
live log, and the live streams behind them."""

from __future__ import annotations

import asyncio
import shlex
from typing import Any, get_args

from aiohttp import web

from node.console.api import ApiRefused, NodeApi
from node.console.operator import overview
from node.console.render import SECURITY_HEADERS
from node.console.summaries import filter_rows
from node.console.web import CONSOLE, Page, page, signin_redirect
from node.money import parse_major
from node.tasks.machine import TaskState
from node.trading.machine import OrderState

ORDERS_SHOWN = 50
# The filter offers every state an order or a task can be in, as their state machines name them.
STATES = tuple(dict.fromkeys([*get_args(OrderState)[1:], *get_args(TaskState)]))


async def home(request: web.Request) -> web.StreamResponse:
    """`/`: the operator's overview, or a consumer's own balance, orders and tasks."""
    console = request.app[CONSOLE]
    session = console.session_of(request)
    if session is None:
        return signin_redirect(console, request)
    if session.is_admin:
        return await overview(request)
    return await consumer_home(request)


@page()
async def consumer_home(p: Page) -> web.StreamResponse:
    """A consumer's balance, its latest orders and tasks."""
    me = p.session.consumer or ""
    balance, orders, tasks = await asyncio.gather(
        p.api.get(f"/api/v1/consumers/{me}"),
        p.api.get("/api/v1/orders", limit="20"),
        p.api.maybe("/api/v1/tasks"),
    )
    return p.render(
        "consumer_home.html",
        title="My account",
        balance=balance,
        orders=orders["orders"][:20],
        tasks=(tasks or {}).get("tasks", [])[:20],
    )


@page()
async def orders(p: Page) -> web.StreamResponse:
    """Orders and tasks, filterable by consumer and state, refreshed live."""
    consumer = p.request.query.get("consumer", "").strip()
    state = p.request.query.get("state", "").strip()
    query = {"consumer": consumer} if consumer and p.session.is_admin else {}
    order_rows, task_rows = await asyncio.gather(
        p.api.get(
            "/api/v1/orders", **query, **({"state": state} if state else {}), limit=str(ORDERS_SHOWN + 1)
        ),
        p.api.maybe("/api/v1/tasks", **query),
    )
    shown_orders = order_rows["orders"]
    shown_tasks = filter_rows((task_rows or {}).get("tasks", []), state=state)
    return p.render(
        "orders.html",
        title="Orders and tasks",
        orders=shown_orders[:ORDERS_SHOWN],
        more_orders=len(shown_orders) > ORDERS_SHOWN,
        tasks=shown_tasks[:ORDERS_SHOWN],
        task_count=len(shown_tasks),
        consumer=consumer,
        state=state,
        states=STATES,
        query_string=p.request.query_string,
    )


@page()
async def order(p: Page) -> web.StreamResponse:
    """One order with its state and amounts."""
    found = await p.api.get(f"/api/v1/orders/{p.request.match_info['id']}")
    return p.render("order.html", title=f"Order {found['id']}", o=found)


@page()
async def cancel_order(p: Page) -> web.StreamResponse:
    """Cancel an accepted order (the API decides whether it may be)."""
    order_id = p.request.match_info["id"]
    await p.api.call("POST", f"/api/v1/orders/{order_id}/cancel", {})
    p.redirect(f"orders/{order_id}")


@page()
async def task(p: Page) -> web.StreamResponse:
    """One task: its state and history, and its log as it grows."""
    found = await p.api.get(f"/api/v1/tasks/{p.request.match_info['id']}")
    return p.render("task.html", title=f"Task {found['id']}", t=found)


@page()
async def stop_task(p: Page) -> web.StreamResponse:
    """Stop a task."""
    task_id = p.request.match_info["id"]
    await p.api.call("POST", f"/api/v1/tasks/{task_id}/stop", {})
    p.redirect(f"tasks/{task_id}")


def _int_field(p: Page, name: str, default: int, low: int = 1, high: int = 10_000) -> int:
    text = p.field(name) or str(default)
    if not text.isdigit() or not low <= int(text) <= high:
        raise ApiRefused(400, "bad_request", f"{name}: a whole number from {low} to {high}")
    return int(text)


def demand_from_form(p: Page) -> dict[str, Any]:
    """The demand the offers form states (only the fields filled in)."""
    demand: dict[str, Any] = {"units": _int_field(p, "units", 1), "hours": _int_field(p, "hours", 1)}
    for name in ("chip_model", "chip_vendor", "region"):
        if p.field(name):
            demand[name if name != "region" else "regions"] = (
                p.field(name) if name != "region" else [p.field(name)]
            )
    if p.field("max_price"):
        try:
            demand["max_price_per_unit_hour"] = parse_major(
                p.field("max_price"), p.field("currency") or "CNY"
            )
        except ValueError as exc:
            raise ApiRefused(400, "bad_amount", str(exc)) from None
    objective = p.field("objective") or "cost"
    demand["objective"] = objective
    return demand


@page()
async def offers(p: Page) -> web.StreamResponse:
    """Every offer this node can sell (own and partners'), and the demand form; a POST shows the
    ranked matches for the demand with why the others were left out."""
    result = None
    demand: dict[str, Any] = {}
    if p.request.method == "POST":
        demand = demand_from_form(p)
        result = await p.api.call("POST", "/api/v1/match", demand)
    listing = await p.api.get("/api/v1/offers")
    return p.render(
        "offers.html",
        title="Offers",
        offers=listing["offers"][:300],
        result=result,
        demand=demand,
        form=p.form,
    )


@page()
async def place_order(p: Page) -> web.StreamResponse:
    """Order one offer for the signed-in consumer (or, for the operator, the consumer named)."""
    body: dict[str, Any] = {
        "offer_id": p.field("offer_id"),
        "source": p.field("source"),
        "units": _int_field(p, "units", 1),
        "hours": _int_field(p, "hours", 1),
    }
    if p.session.is_admin:
        body["consumer"] = p.field("consumer")
    placed = await p.api.call("POST", "/api/v1/orders", body)
    p.redirect(f"orders/{placed['id']}")


@page()
async def submit_task(p: Page) -> web.StreamResponse:
    """Submit a task: a command run on the cheapest (or best) offer that fits its resources."""
    try:
        command = shlex.split(p.field("command"))
    except ValueError as exc:
        raise ApiRefused(400, "bad_request", f"command: {exc}") from None
    resources: dict[str, Any] = {
        "units": _int_field(p, "units", 1),
        "hours": _int_field(p, "hours", 1),
        "objective": p.field("objective") or "cost",
    }
    if p.field("chip_model"):
        resources["chip_model"] = p.field("chip_model")
    spec: dict[str, Any] = {"program": {"command": command}, "resources": resources}
    body: dict[str, Any] = {"spec": spec}
    if p.session.is_admin:
        body["consumer"] = p.field("consumer")
    created = await p.api.call("POST", "/api/v1/tasks", body)
    p.redirect(f"tasks/{created['id']}")


async def _relay(request: web.Request, api_path: str) -> web.StreamResponse:
    """Relay one of the API's event streams to the browser, as the signed-in person."""
    console = request.app[CONSOLE]
    session = console.session_of(request)
    if session is None:
        raise web.HTTPUnauthorized(text="sign in first")
    assert console.http is not None
    api = NodeApi(console.http, request, session.token)
    stream = api.stream(api_path, request.headers.get("Last-Event-ID"))
    try:
        first = await anext(stream, b"")
    except ApiRefused as exc:
        return web.Response(status=exc.status, text=str(exc), headers=SECURITY_HEADERS)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **SECURITY_HEADERS}
    )
    await response.prepare(request)
    try:
        await response.write(first)
        async for block in stream:
            await response.write(block)
        await response.write(b"event: closed\ndata: {}\n\n")
    except (ConnectionError, asyncio.CancelledError):
        await stream.aclose()
        raise
    return response


async def task_events(request: web.Request) -> web.StreamResponse:
    """The task's state and log events (the API's stream, relayed)."""
    return await _relay(request, f"/api/v1/tasks/{request.match_info['id']}/events")


async def migration_events(request: web.Request) -> web.StreamResponse:
    """The migration's progress events (the API's stream, relayed; admin only, as in the API)."""
    return await _relay(request, f"/api/v1/migrations/{request.match_info['id']}/events")
