"""The network controller SIMULATOR (`cpnode-netsim`): topology from TOML, reservations, link failures.

A stand-in for a carrier's network controller, for tests and demos; it moves no packets. Paths are
computed by `connectors.network.routing` over free bandwidth; a failed link breaks every path on it
(and frees their reservations).

API (`Authorization: Bearer <token>` except /healthz): `GET /v1/topology`, `POST /v1/paths`
(a PathRequest; 201 Path, or 409 no_path), `GET|DELETE /v1/paths/{id}`, and the simulator's
control plane `POST /_sim/links/{id}/fail|restore`.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import itertools
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path as FilePath
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from connectors.errors import ConnectorError, InvalidRequest, NotFound
from connectors.network.contract import Link, Path, PathRequest, Topology
from connectors.network.routing import compute_route, hops_of
from connectors.serving import serve_until_signal
from connectors.statuses import status_of


class NetworkState:
    """Links, reservations and paths of the simulated network (no I/O)."""

    def __init__(self, sites: list[str], links: list[Link]) -> None:
        self.sites = list(sites)
        self._links = {link.id: link for link in links}
        self._paths: dict[str, Path] = {}
        self._ids = itertools.count(1)
        for link in links:
            if link.a not in self.sites or link.b not in self.sites:
                raise InvalidRequest(f"link {link.id} joins unknown sites {link.a}, {link.b}")

    @classmethod
    def from_toml(cls, data: dict[str, Any]) -> NetworkState:
        """Build from the TOML topology's data (see configs/network/default.toml)."""
        try:
            links = [Link(free_mbps=entry["bandwidth_mbps"], **entry) for entry in data.get("links", [])]
        except (ValidationError, TypeError) as exc:
            raise InvalidRequest(f"bad link in topology: {exc}") from None
        return cls(list(data.get("sites", [])), links)

    def _reserved(self, link_id: str) -> int:
        return sum(
            p.bandwidth_mbps for p in self._paths.values() if p.state == "active" and link_id in p.links
        )

    def topology(self) -> Topology:
        """Sites and links with free bandwidth after active reservations."""
        links = [
            link.model_copy(update={"free_mbps": max(0, link.bandwidth_mbps - self._reserved(link.id))})
            for link in self._links.values()
        ]
        return Topology(sites=self.sites, links=links)

    def provision(self, request: PathRequest) -> Path:
        """Reserve the best route for `request`, or raise NoPath."""
        route = compute_route(self.sites, self.topology().links, request)
        path = Path(
            id=f"path-{next(self._ids)}",
            src=request.src,
            dst=request.dst,
            hops=hops_of(request.src, route),
            links=[link.id for link in route],
            bandwidth_mbps=request.bandwidth_mbps,
            latency_us=sum(link.latency_us for link in route),
            cost_minor_per_gb=sum(link.cost_minor_per_gb for link in route),
            state="active",
        )
        self._paths[path.id] = path
        return path

    def path(self, path_id: str) -> Path:
        """A path by id, or NotFound."""
        try:
            return self._paths[path_id]
        except KeyError:
            raise NotFound(f"no path {path_id!r}") from None

    def release(self, path_id: str) -> Path:
        """Release a path (idempotent)."""
        path = self.path(path_id)
        if path.state != "released":
            path = self._paths[path_id] = path.model_copy(update={"state": "released"})
        return path

    def set_link(self, link_id: str, up: bool) -> Link:
        """Fail or restore a link; failing breaks every active path that crosses it."""
        if link_id not in self._links:
            raise NotFound(f"no link {link_id!r}")
        link = self._links[link_id] = self._links[link_id].model_copy(update={"up": up})
        if not up:
            for path in list(self._paths.values()):
                if path.state == "active" and link_id in path.links:
                    self._paths[path.id] = path.model_copy(update={"state": "broken"})
        return link


def netsim_app(state: NetworkState, token: str) -> web.Application:
    """The simulator's HTTP API over `state`."""

    def guarded(
        fn: Callable[[web.Request], Awaitable[Any]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, f"Bearer {token}".encode()):
                return web.json_response({"error": "unauthorized", "message": "wrong token"}, status=401)
            try:
                result = await fn(request)
            except ValidationError as exc:
                return web.json_response({"error": "invalid_request", "message": str(exc)}, status=400)
            except ConnectorError as exc:
                return web.json_response({"error": exc.code, "message": str(exc)}, status=status_of(exc))
            status = 201 if request.method == "POST" and request.path == "/v1/paths" else 200
            return web.json_response(result.model_dump(), status=status)

        return handler

    async def provision(request: web.Request) -> Path:
        try:
            body = await request.json()
        except ValueError:
            raise InvalidRequest("body is not JSON") from None
        return state.provision(PathRequest.model_validate(body))

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def topology(_r: web.Request) -> Topology:
        return state.topology()

    async def get_path(r: web.Request) -> Path:
        return state.path(r.match_info["id"])

    async def delete_path(r: web.Request) -> Path:
        return state.release(r.match_info["id"])

    async def fail(r: web.Request) -> Link:
        return state.set_link(r.match_info["id"], up=False)

    async def restore(r: web.Request) -> Link:
        return state.set_link(r.match_info["id"], up=True)

    app = web.Application(client_max_size=64 << 10)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/topology", guarded(topology))
    app.router.add_post("/v1/paths", guarded(provision))
    app.router.add_get("/v1/paths/{id}", guarded(get_path))
    app.router.add_delete("/v1/paths/{id}", guarded(delete_path))
    app.router.add_post("/_sim/links/{id}/fail", guarded(fail))
    app.router.add_post("/_sim/links/{id}/restore", guarded(restore))
    return app


def main(argv: list[str] | None = None) -> int:
    """`cpnode-netsim --config FILE [--host H] [--port P]`: serve the simulator until a signal."""
    parser = argparse.ArgumentParser(prog="cpnode-netsim", description="Network controller SIMULATOR.")
    parser.add_argument("--config", type=FilePath, required=True, help="topology TOML")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        data = tomllib.loads(args.config.read_text(encoding="utf-8"))
        state = NetworkState.from_toml(data)
    except (OSError, tomllib.TOMLDecodeError, ConnectorError) as exc:
        parser.error(f"cannot use {args.config}: {exc}")
    app = netsim_app(state, str(data.get("token", "")))
    asyncio.run(serve_until_signal(app, args.host, args.port, "cpnode-netsim (simulator) listening at {url}"))
    return 0
