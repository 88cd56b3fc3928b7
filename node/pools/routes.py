"""HTTP routes of the connectors component: plugins (add, list, remove, heartbeat, check) and pools.

Admin routes need `Authorization: Bearer <admin token>`; heartbeats carry the plugin's own token.
Bodies are validated before anything changes; plugin failures come back as the connectors error
codes with their 4xx/5xx statuses (never a 500). Any replica answers any route: registrations,
removals and heartbeats go to the database, which every replica follows.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from connectors.conformance import run_checks
from connectors.contract import ComputePlugin, Program
from connectors.errors import InvalidRequest
from connectors.gateway_store import GatewayStore
from connectors.host import HostedPlugin, PluginHost
from connectors.identifier import ComputeIdentifier, RegistrationClaim
from connectors.pools.local import COUNTER_PROGRAM
from federation.canonical import encode
from federation.documents import sign_document
from federation.keys import b64url
from node.context import CTX
from node.db import in_thread
from node.http.body import json_object, parse_body, validate
from node.http.errors import ApiError
from node.pools.rounds import ReplicaWork

HOST = web.AppKey("connectors_host", PluginHost)
WORK = web.AppKey("connectors_work", ReplicaWork)

NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AddEntryPoint(_Body):
    """Host an installed plugin in-process (re-adding a name upgrades it)."""

    name: str = Field(pattern=NAME)
    entry_point: str = Field(min_length=1, max_length=100)
    options: dict[str, Any] = Field(default_factory=dict)
    reload: bool = False


class RegisterRemote(_Body):
    """An out-of-process plugin registering itself."""

    name: str = Field(pattern=NAME)
    url: str = Field(pattern=r"^https?://\S+$", max_length=500)
    call_token: str = Field(min_length=16, max_length=200)
    version: str = Field(default="?", max_length=200)


class CheckRequest(_Body):
    """Which program the conformance run deploys (default: the reference counter program), and the
    Python interpreter on the pool that runs the run checks' scripts (default: the node's)."""

    command: list[str] | None = None
    python: list[str] | None = Field(default=None, min_length=1, max_length=16)
    timeout_s: float = Field(default=30.0, gt=0, le=600)


class RegistrationRequest(_Body):
    """Which identifier to register a pool under (default: its first offer's)."""

    identifier: str | None = None


def plugin_view(host: PluginHost, hosted: HostedPlugin) -> dict[str, Any]:
    """What the API shows of a plugin."""
    offers = [o for o in host.offers() if o.pool == hosted.name]
    return {
        "name": hosted.name,
        "kind": hosted.kind,
        "source": hosted.source,
        "target": hosted.target,
        "version": hosted.version,
        "state": hosted.state,
        "loaded": hosted.plugin is not None,  # on the replica that answers
        "last_seen_ms": hosted.last_seen_ms,
        "last_error": hosted.last_error,
        "snapshot_ms": hosted.snapshot_ms,
        "offers": len(offers),
        "free_units": sum(o.free for o in offers),
    }


async def add(request: web.Request) -> web.Response:
    """`POST /api/v1/plugins`: add a plugin by entry point or register a remote one (admin)."""
    host = request.app[HOST]
    ctx = request.app[CTX]
    ctx.require_admin(request)
    data = await json_object(request)
    if "url" in data:
        remote = validate(RegisterRemote, data)
        hosted, token = await host.add_remote(remote.name, remote.url, remote.call_token)
        await host.refresh([hosted.name])
        body = {
            **plugin_view(host, hosted),
            "heartbeat_token": token,
            "heartbeat_interval_s": host.settings.heartbeat_interval_s,
        }
        return web.json_response(body, status=201)
    local = validate(AddEntryPoint, data)
    hosted = await host.add_entry_point(local.name, local.entry_point, local.options, reload=local.reload)
    await host.refresh([hosted.name])
    return web.json_response(plugin_view(host, hosted), status=201)


async def listing(request: web.Request) -> web.Response:
    """`GET /api/v1/plugins`: the plugins, load errors and this replica's work (admin)."""
    host = request.app[HOST]
    request.app[CTX].require_admin(request)
    plugins = [plugin_view(host, hosted) for hosted in host.plugins()]
    return web.json_response(
        {"plugins": plugins, "load_errors": host.load_errors, "replica": asdict(request.app[WORK])}
    )


async def remove(request: web.Request) -> web.Response:
    """`DELETE /api/v1/plugins/{name}`: remove a plugin and its gateway token (admin)."""
    host = request.app[HOST]
    ctx = request.app[CTX]
    ctx.require_admin(request)
    hosted = await host.remove(request.match_info["name"])
    # a gateway's standing token goes with its pool: it registers again only with a new code
    await in_thread(ctx.engine, lambda engine: GatewayStore(engine).forget(hosted.name))
    return web.json_response({"name": hosted.name, "state": hosted.state})


async def heartbeat(request: web.Request) -> web.Response:
    """`POST /api/v1/plugins/{name}/heartbeat`: a remote plugin's heartbeat (its token)."""
    host = request.app[HOST]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized", "a heartbeat needs 'Authorization: Bearer <heartbeat token>'")
    state = await host.heartbeat(request.match_info["name"], token.strip())
    return web.json_response({"state": state})


async def check(request: web.Request) -> web.Response:
    """`POST /api/v1/plugins/{name}/check`: run the conformance kit on a compute plugin (admin)."""
    host = request.app[HOST]
    request.app[CTX].require_admin(request)
    body = await parse_body(request, CheckRequest)
    name = (await host.lookup(request.match_info["name"])).name
    plugin = host.loaded(name)
    if not isinstance(plugin, ComputePlugin):
        raise InvalidRequest("the conformance kit checks compute plugins")
    program = Program(command=body.command or [sys.executable, str(COUNTER_PROGRAM)])
    results = await run_checks(plugin, program, body.timeout_s, body.python)
    rows = [{"check": r.name, "passed": r.passed, "detail": r.detail, "ms": r.duration_ms} for r in results]
    return web.json_response({"plugin": name, "passed": all(r.passed for r in results), "checks": rows})


async def pools(request: web.Request) -> web.Response:
    """`GET /api/v1/pools`: the compute pools and their offers (admin)."""
    host = request.app[HOST]
    request.app[CTX].require_admin(request)
    offers = [o.model_dump() for o in host.offers()]
    compute = [plugin_view(host, h) for h in host.plugins() if h.kind == "compute"]
    return web.json_response({"pools": compute, "offers": offers})


async def registration(request: web.Request) -> web.Response:
    """`POST /api/v1/pools/{name}/registration`: a signed registration code for a pool (admin)."""
    host = request.app[HOST]
    ctx = request.app[CTX]
    ctx.require_admin(request)
    name = (await host.lookup(request.match_info["name"])).name
    body = await parse_body(request, RegistrationRequest)
    identifier = body.identifier or next(
        (o.identifier for o in host.offers() if o.pool == name and o.identifier), None
    )
    if identifier is None:
        raise ApiError(
            409, "no_identifier", f"pool {name!r} has no identifier: configure its identity or pass one"
        )
    ComputeIdentifier.parse(identifier)
    now = int(time.time())
    claim = RegistrationClaim(
        ctx.name, name, identifier, now, now + ctx.settings.connectors.registration_validity_s
    )
    signed = sign_document(claim.document(), ctx.identity.signing_key)
    return web.json_response(
        {"pool": name, "identifier": identifier, "code": b64url(encode(signed)), "document": signed},
        status=201,
    )


def add_routes(app: web.Application, host: PluginHost, work: ReplicaWork) -> None:
    """Mount the plugin and pool routes over `host` (`work`: what this replica's rounds did)."""
    app[HOST] = host
    app[WORK] = work
    app.router.add_post("/api/v1/plugins", add)
    app.router.add_get("/api/v1/plugins", listing)
    app.router.add_delete("/api/v1/plugins/{name}", remove)
    app.router.add_post("/api/v1/plugins/{name}/heartbeat", heartbeat)
    app.router.add_post("/api/v1/plugins/{name}/check", check)
    app.router.add_get("/api/v1/pools", pools)
    app.router.add_post("/api/v1/pools/{name}/registration", registration)
