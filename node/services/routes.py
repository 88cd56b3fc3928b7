"""HTTP API of services (role `api`); every route takes the admin token or a consumer's own token.

    POST   /api/v1/services                  {"name", "spec", "replicas"?, "consumer"?, "max_replicas"?,
                                              "scale_in_flight"?, "scale_window_s"?, "health_path"?}
    GET    /api/v1/services                  every service the caller may see, with its replicas
    GET    /api/v1/services/{name}           one service, its replicas' live state
    POST   /api/v1/services/{name}/scale     {"replicas": N}
    POST   /api/v1/services/{name}/pin       {"weights": {"REPLICA": W | null}}: 0 drains, null unpins
    DELETE /api/v1/services/{name}           stop its replicas and forget it
    GET    /api/v1/services/{name}/resolve?site=S   ranked replica endpoints with the reasons of each

A consumer token acts for its consumer only (another consumer's service answers 404 as a missing one).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from node.context import CTX
from node.http.body import parse_body
from node.services.core import NewService, Services
from node.services.proxy import RUNTIME
from node.services.records import Replica, Service

SERVICES = web.AppKey("services", Services)


class Scale(BaseModel):
    """`POST .../scale`."""

    model_config = ConfigDict(extra="forbid")

    replicas: Any


class Pin(BaseModel):
    """`POST .../pin`."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, Any] = Field(max_length=1000)


def _view(request: web.Request, service: Service, replicas: list[Replica]) -> dict[str, Any]:
    runtime = request.app[RUNTIME]
    live = runtime.services.get(service.name)
    shown: list[dict[str, Any]] = []
    for replica in replicas:
        state = live.replicas.get(replica.id) if live else None
        base = state.view() if state else {"replica": replica.id, "healthy": False, "problem": "not seen yet"}
        shown.append({**base, "weight": replica.effective_weight, "pinned": replica.weight is not None})
    return {**service.view(), "replica_list": shown, "health_rounds": runtime.rounds}


async def create(request: web.Request) -> web.Response:
    """`POST /api/v1/services`: create a service and submit its replicas."""
    caller = await request.app[CTX].authenticate(request)
    body = await parse_body(request, NewService)
    services = request.app[SERVICES]
    created, service = await services.create(caller, body)
    replicas = await services.replicas(service.name)
    request.app[RUNTIME].track(service, replicas)
    return web.json_response(_view(request, service, replicas), status=201 if created else 200)


async def list_services(request: web.Request) -> web.Response:
    """`GET /api/v1/services`."""
    caller = await request.app[CTX].authenticate(request)
    services = request.app[SERVICES]
    shown = [_view(request, s, await services.replicas(s.name)) for s in await services.list_for(caller)]
    return web.json_response({"services": shown})


async def show(request: web.Request) -> web.Response:
    """`GET /api/v1/services/{name}`."""
    caller = await request.app[CTX].authenticate(request)
    services = request.app[SERVICES]
    service = await services.get(caller, request.match_info["name"])
    return web.json_response(_view(request, service, await services.replicas(service.name)))


async def scale(request: web.Request) -> web.Response:
    """`POST /api/v1/services/{name}/scale`."""
    caller = await request.app[CTX].authenticate(request)
    body = await parse_body(request, Scale)
    services = request.app[SERVICES]
    service = await services.scale(caller, request.match_info["name"], body.replicas)
    return web.json_response(_view(request, service, await services.replicas(service.name)))


async def pin(request: web.Request) -> web.Response:
    """`POST /api/v1/services/{name}/pin`."""
    caller = await request.app[CTX].authenticate(request)
    body = await parse_body(request, Pin)
    services = request.app[SERVICES]
    name = request.match_info["name"]
    await services.pin(caller, name, body.weights)
    await request.app[RUNTIME].refresh_weights(name, await services.replicas(name))
    service = await services.get(caller, name)
    return web.json_response(_view(request, service, await services.replicas(name)))


async def delete(request: web.Request) -> web.Response:
    """`DELETE /api/v1/services/{name}`."""
    caller = await request.app[CTX].authenticate(request)
    service = await request.app[SERVICES].delete(caller, request.match_info["name"])
    request.app[RUNTIME].services.pop(service.name, None)
    return web.json_response({"deleted": service.name})


async def resolve(request: web.Request) -> web.Response:
    """`GET /api/v1/services/{name}/resolve?site=S`: the replicas ranked for a user at S."""
    caller = await request.app[CTX].authenticate(request)
    service = await request.app[SERVICES].get(caller, request.match_info["name"])
    runtime = request.app[RUNTIME]
    site = runtime.user_site(request.query.get("site"))
    ranked = runtime.ranked(service.name, site) if service.name in runtime.services else []
    return web.json_response({"service": service.name, "site": site, "replicas": [r.view() for r in ranked]})


def add_routes(app: web.Application) -> None:
    """Mount the services API (SERVICES and RUNTIME already set)."""
    app.router.add_post("/api/v1/services", create)
    app.router.add_get("/api/v1/services", list_services)
    app.router.add_get("/api/v1/services/{name}", show)
    app.router.add_post("/api/v1/services/{name}/scale", scale)
    app.router.add_post("/api/v1/services/{name}/pin", pin)
    app.router.add_delete("/api/v1/services/{name}", delete)
    app.router.add_get("/api/v1/services/{name}/resolve", resolve)
