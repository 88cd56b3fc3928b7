"""The strategy management component (调度管理), role `api`:

GET  /api/v1/strategies                   registered versions, built-in kinds, splits
POST /api/v1/strategies                   {name, kind, params, note} → the next version (admin)
GET  /api/v1/strategies/{name}            its versions and split
POST /api/v1/strategies/{name}/retire     {version} (admin)
PUT  /api/v1/strategies/{name}/split      {split: {version: percent}} summing to 100 (admin)
GET  /api/v1/strategies/report?a=&b=      two versions compared on their real orders (admin)
GET  /api/v1/strategies/orders/{order_id} which strategy chose an order
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from sqlalchemy.engine import Engine

from node.context import CTX, NodeContext
from node.db import in_thread
from node.http.body import json_object
from node.http.errors import ApiError
from node.market.errors import StrategyError, UnknownStrategyError
from node.market.strategy_spec import KINDS, builtin, parse_ref
from node.strategies import store
from node.strategies.ab import summarise


def _ref(text: str | None, where: str) -> tuple[str, int]:
    if not text or not store.NAME_RE.fullmatch(text.partition("@")[0]) or "@" not in text:
        raise StrategyError(where, f"name a strategy version as NAME@VERSION, got {text!r}")
    name, version = parse_ref(text)
    return name, version or 0


def catalogue(engine: Engine) -> dict[str, Any]:
    """Every registered version, the built-in kinds and the splits."""
    registered = store.versions(engine)
    names = sorted({r.strategy.name for r in registered})
    return {
        "strategies": [r.view() for r in registered],
        "builtin": [builtin(kind).view() for kind in KINDS],
        "splits": {name: split for name in names if (split := store.get_split(engine, name)) is not None},
    }


def one(engine: Engine, name: str) -> dict[str, Any]:
    """One strategy's versions and split (a built-in kind shows itself)."""
    found = store.versions(engine, name)
    if not found:
        if name in KINDS:
            return {"name": name, "versions": [builtin(name).view()], "split": None, "builtin": True}
        raise UnknownStrategyError(f"no strategy named {name!r} is registered")
    return {"name": name, "versions": [r.view() for r in found], "split": store.get_split(engine, name)}


def compare(engine: Engine, a: tuple[str, int], b: tuple[str, int]) -> dict[str, Any]:
    """The report of two versions, from the orders each chose."""
    sides: dict[str, Any] = {}
    for label, (name, version) in (("a", a), ("b", b)):
        if version != 0 and not any(r.strategy.version == version for r in store.versions(engine, name)):
            raise UnknownStrategyError(f"strategy {name!r} has no version {version}")
        sides[label] = {
            "strategy": f"{name}@{version}",
            **summarise(store.outcomes(engine, name, version)),
        }
    return sides


def install(app: web.Application, ctx: NodeContext) -> None:
    """Mount the strategy routes."""
    if "api" not in ctx.roles:
        return
    engine = ctx.engine

    async def list_all(request: web.Request) -> web.Response:
        await request.app[CTX].authenticate(request)
        return web.json_response(await in_thread(engine, catalogue))

    async def add(request: web.Request) -> web.Response:
        request.app[CTX].require_admin(request)
        body = await json_object(request)
        name, kind, note = body.get("name"), body.get("kind"), body.get("note", "")
        if not isinstance(name, str) or not isinstance(kind, str) or not isinstance(note, str):
            raise StrategyError("strategy", "needs a name and a kind (strings), and optionally a note")
        added = await in_thread(engine, store.add, name, kind, body.get("params"), note, int(time.time()))
        return web.json_response(added.view(), status=201)

    async def show(request: web.Request) -> web.Response:
        await request.app[CTX].authenticate(request)
        return web.json_response(await in_thread(engine, one, request.match_info["name"]))

    async def retire(request: web.Request) -> web.Response:
        request.app[CTX].require_admin(request)
        version = (await json_object(request)).get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise StrategyError("version", f"must be an integer, got {version!r}")
        done = await in_thread(engine, store.retire, request.match_info["name"], version, int(time.time()))
        return web.json_response(done.view())

    async def split(request: web.Request) -> web.Response:
        request.app[CTX].require_admin(request)
        name = request.match_info["name"]
        given = (await json_object(request)).get("split")
        checked = await in_thread(engine, store.set_split, name, given, int(time.time()))
        return web.json_response({"name": name, "split": checked})

    async def report(request: web.Request) -> web.Response:
        request.app[CTX].require_admin(request)
        a, b = _ref(request.query.get("a"), "a"), _ref(request.query.get("b"), "b")
        return web.json_response(await in_thread(engine, compare, a, b))

    async def order(request: web.Request) -> web.Response:
        principal = await request.app[CTX].authenticate(request)
        found = await in_thread(engine, store.chosen, request.match_info["order_id"])
        if found is None or principal.consumer not in (None, found["consumer"]):
            raise ApiError(404, "unknown_order", "no strategy noted this order")
        return web.json_response(found)

    app.router.add_get("/api/v1/strategies", list_all)
    app.router.add_post("/api/v1/strategies", add)
    app.router.add_get("/api/v1/strategies/report", report)
    app.router.add_get("/api/v1/strategies/orders/{order_id}", order)
    app.router.add_get("/api/v1/strategies/{name}", show)
    app.router.add_post("/api/v1/strategies/{name}/retire", retire)
    app.router.add_put("/api/v1/strategies/{name}/split", split)
