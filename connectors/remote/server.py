"""The plugin side of an out-of-process plugin: serve a `ComputePlugin` over HTTP, register, heartbeat."""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import BaseModel, ValidationError

from connectors.contract import ComputePlugin, InstanceSpec, Program
from connectors.errors import ConnectorError, InvalidRequest, Unauthorized
from connectors.serving import json_object, log_range, start_app
from connectors.statuses import status_of
from connectors.stopping import stop_tasks

log = logging.getLogger("cpnode.connectors.remote")
Handler = Callable[[web.Request], Awaitable[Any]]


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [_dump(item) for item in value]
    return value


def _guarded(plugin: ComputePlugin, call_token: str, fn: Callable[[web.Request], Awaitable[Any]]) -> Handler:
    """A handler that checks the call token, runs `fn` and answers its result or its error as JSON."""

    async def handler(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, f"Bearer {call_token}".encode()):
            return web.json_response({"error": "unauthorized", "message": "wrong call token"}, status=401)
        try:
            return web.json_response(_dump(await fn(request)))
        except ValidationError as exc:
            return web.json_response({"error": "invalid_request", "message": str(exc)}, status=400)
        except ConnectorError as exc:
            return web.json_response({"error": exc.code, "message": str(exc)}, status=status_of(exc))
        except Exception as exc:  # report, never crash the service
            log.exception("plugin %s failed", plugin.name)
            return web.json_response({"error": "platform_error", "message": repr(exc)}, status=502)

    return handler


def plugin_app(plugin: ComputePlugin, call_token: str) -> web.Application:
    """An aiohttp app exposing `plugin` under `/plugin/v1`, callable only with `call_token`."""

    def route(fn: Callable[[web.Request], Awaitable[Any]]) -> Handler:
        return _guarded(plugin, call_token, fn)

    def iid(request: web.Request) -> str:
        return request.match_info["id"]

    async def checkpoint(r: web.Request) -> Any:
        timeout_s = (await json_object(r, empty_ok=True)).get("timeout_s", 30)
        if not isinstance(timeout_s, int | float) or not 0 < timeout_s <= 3600:
            raise InvalidRequest("timeout_s must be a number of seconds in (0, 3600]")
        return await plugin.checkpoint(iid(r), float(timeout_s))

    async def start(r: web.Request) -> Any:
        return await plugin.start_instance(
            iid(r), restore=bool((await json_object(r, empty_ok=True)).get("restore", False))
        )

    async def create(r: web.Request) -> Any:
        return await plugin.create_instance(InstanceSpec.model_validate(await json_object(r, empty_ok=True)))

    async def deploy(r: web.Request) -> Any:
        return await plugin.deploy(iid(r), Program.model_validate(await json_object(r, empty_ok=True)))

    async def logs(r: web.Request) -> Any:
        offset, limit = log_range(r)
        return await plugin.logs(iid(r), offset, limit)

    app = web.Application(client_max_size=1 << 20)
    p = "/plugin/v1/"
    app.router.add_get(p + "info", route(lambda _request: plugin.info()))
    app.router.add_get(p + "health", route(lambda _request: plugin.health()))
    app.router.add_post(p + "account", route(lambda _request: plugin.ensure_account()))
    app.router.add_get(p + "datasource", route(lambda _request: plugin.data_source()))
    app.router.add_get(p + "instances", route(lambda _request: plugin.list_instances()))
    app.router.add_post(p + "instances", route(create))
    app.router.add_get(p + "instances/{id}", route(lambda r: plugin.get_instance(iid(r))))
    app.router.add_delete(p + "instances/{id}", route(lambda r: plugin.delete_instance(iid(r))))
    app.router.add_post(p + "instances/{id}/deploy", route(deploy))
    app.router.add_post(p + "instances/{id}/start", route(start))
    app.router.add_post(p + "instances/{id}/stop", route(lambda r: plugin.stop_instance(iid(r))))
    app.router.add_post(p + "instances/{id}/checkpoint", route(checkpoint))
    app.router.add_get(p + "instances/{id}/storage", route(lambda r: plugin.storage_endpoint(iid(r))))
    app.router.add_get(p + "instances/{id}/logs", route(logs))
    app.router.add_get(p + "instances/{id}/outputs", route(lambda r: plugin.outputs(iid(r))))
    return app


class RegistrationRefused(Unauthorized, code="registration_refused"):
    """The node refused to register the plugin (wrong credentials, a used or expired code, ...)."""


# Registers a plugin service with its node: given an HTTP session and the service's own facts
# (name, url, call_token, version), answers the heartbeat token and interval.
Registrar = Callable[[aiohttp.ClientSession, dict[str, Any]], Awaitable[tuple[str, float]]]


async def post_registration(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """POST a registration to the node; its JSON answer, or RegistrationRefused saying why."""
    async with session.post(url, json=body, headers=headers or {}) as response:
        try:
            data = await response.json()
        except (aiohttp.ContentTypeError, ValueError):
            data = {}
        if response.status >= 400:
            detail = data.get("message", "") if isinstance(data, dict) else ""
            code = data.get("error", response.status) if isinstance(data, dict) else response.status
            raise RegistrationRefused(f"registration refused ({response.status} {code}): {detail}")
        if not isinstance(data, dict):
            raise RegistrationRefused(
                "the node answered the registration with something other than an object"
            )
        return data


def admin_registrar(node_url: str, admin_token: str) -> Registrar:
    """Registration with the node's admin token (`POST /api/v1/plugins`)."""

    async def register(session: aiohttp.ClientSession, facts: dict[str, Any]) -> tuple[str, float]:
        headers = {"Authorization": f"Bearer {admin_token}"}
        data = await post_registration(session, f"{node_url}/api/v1/plugins", facts, headers)
        return str(data["heartbeat_token"]), float(data["heartbeat_interval_s"])

    return register


class PluginService:
    """Runs one plugin as an HTTP service that registers with a node and sends heartbeats."""

    def __init__(
        self,
        plugin: ComputePlugin,
        node_url: str,
        admin_token: str = "",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        public_url: str | None = None,
        register: Registrar | None = None,
    ) -> None:
        self.plugin = plugin
        self.node_url = node_url.rstrip("/")
        self._register = register or admin_registrar(self.node_url, admin_token)
        self._host, self._port, self._public_url = host, port, public_url
        self._call_token = secrets.token_urlsafe(24)
        self._runner: web.AppRunner | None = None
        self._beats: asyncio.Task[None] | None = None
        self._heartbeat_token, self._interval_s = "", 1.0
        self.url = ""
        self.heartbeats_sent = 0

    async def start(self, *, register_first: bool = False) -> str:
        """Start the plugin and its HTTP service, then register and heartbeat in the background; with
        `register_first`, register before returning (RegistrationRefused if the node says no)."""
        await self.plugin.start()
        self._runner, bound = await start_app(
            plugin_app(self.plugin, self._call_token), self._host, self._port
        )
        self.url = self._public_url or bound
        if register_first:
            try:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                    await self._registered(session)
            except BaseException:
                await self.close()
                raise
        self._beats = asyncio.create_task(self._heartbeat_loop())
        return self.url

    async def close(self) -> None:
        """Stop heartbeating, serving and the plugin."""
        if self._beats is not None:
            await stop_tasks([self._beats], "the plugin's heartbeat")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.plugin.close()

    async def _registered(self, session: aiohttp.ClientSession) -> None:
        info = await self.plugin.info()
        facts = {
            "name": self.plugin.name,
            "url": self.url,
            "call_token": self._call_token,
            "version": info.version,
        }
        self._heartbeat_token, self._interval_s = await self._register(session, facts)
        log.info("plugin %s registered with %s", self.plugin.name, self.node_url)

    async def _heartbeat_loop(self) -> None:
        timeout = aiohttp.ClientTimeout(total=5)
        version = (await self.plugin.info()).version
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                try:
                    if not self._heartbeat_token:
                        await self._registered(session)
                    url = f"{self.node_url}/api/v1/plugins/{self.plugin.name}/heartbeat"
                    headers = {"Authorization": f"Bearer {self._heartbeat_token}"}
                    async with session.post(url, json={"version": version}, headers=headers) as response:
                        if response.status in (
                            401,
                            404,
                        ):  # node forgot us (removed or new token): register again
                            self._heartbeat_token = ""
                            continue
                        self.heartbeats_sent += 1
                except (aiohttp.ClientError, TimeoutError, ConnectorError, ValueError, KeyError) as exc:
                    log.warning("plugin %s cannot reach the node: %s", self.plugin.name, exc)
                    if isinstance(exc, ConnectorError):
                        self._heartbeat_token = ""
                await asyncio.sleep(self._interval_s)
