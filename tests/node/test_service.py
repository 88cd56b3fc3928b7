"""A real node serving HTTP: core routes, JSON errors, limits, readiness, graceful shutdown."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from federation.keydoc import verify_key_document
from node import components
from node.components import Component
from node.config import load_settings
from node.db import make_engine
from node.roles import ALL_ROLES
from node.service import NodeServer
from tests.support.nodes import make_node_dir, running_node


@pytest.fixture(name="config")
def fixture_config(tmp_path: Path, db_url: str) -> Path:
    """A fresh node folder on each database backend."""
    return make_node_dir(tmp_path, "alpha", db_url=db_url)


async def test_core_routes_answer(config: Path) -> None:
    """healthz, readyz, node info, key document and metrics all answer on a fresh node."""
    async with running_node(config) as server, aiohttp.ClientSession(server.url) as http:
        async with http.get("/healthz") as r:
            assert r.status == 200
            assert (await r.json())["node"] == "alpha"
        async with http.get("/readyz") as r:
            assert r.status == 200
            assert (await r.json())["checks"] == {"database": "ok", "scheduler": "ok"}
        async with http.get("/api/v1/node") as r:
            info = await r.json()
        assert info["name"] == "alpha"
        assert info["region"] == "Testville"
        assert info["key_id"].startswith("ed25519:")
        assert info["version"]
        async with http.get("/fed/v1/keys") as r:
            document = await r.json()
        records = verify_key_document(document, "alpha", document["issued_ts"] + 1)
        assert info["key_id"] in records
        async with http.get("/metrics") as r:
            text = await r.text()
        assert 'cpnode_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
        assert "cpnode_http_request_duration_seconds_bucket" in text


async def test_errors_are_json_without_traces(config: Path) -> None:
    """Unknown routes, wrong methods and oversized bodies get JSON errors with the right status."""
    async with running_node(config) as server, aiohttp.ClientSession(server.url) as http:
        async with http.get("/nope") as r:
            assert r.status == 404
            assert (await r.json())["error"] == "not_found"
        async with http.post("/healthz") as r:
            assert r.status == 405
            assert (await r.json())["error"] == "method_not_allowed"
            assert "GET" in r.headers["Allow"]
        async with http.post("/api/v1/node", data=io.BytesIO(b"x" * (2 * 1024 * 1024))) as r:
            assert r.status == 413
            assert (await r.json())["error"] == "body_too_large"


async def test_unhandled_error_is_500_json_without_trace(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in a handler yields a JSON 500 naming the request id, never a stack trace."""

    async def broken(_request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    def install(app: web.Application, _ctx: object) -> None:
        app.router.add_get("/broken", broken)

    monkeypatch.setattr(
        components, "COMPONENTS", (*components.COMPONENTS, Component("t", ALL_ROLES, install))
    )
    async with (
        running_node(config) as server,
        aiohttp.ClientSession(server.url) as http,
        http.get("/broken", headers={"X-Request-Id": "req-42"}) as r,
    ):
        body = await r.json()
    assert r.status == 500
    assert body["error"] == "internal"
    assert "req-42" in body["message"]
    assert "secret internals" not in body["message"]


async def test_readyz_fails_when_database_goes_away(config: Path) -> None:
    """readyz answers 503 naming the database when it stops answering, and 200 again when back."""
    async with running_node(config) as server, aiohttp.ClientSession(server.url) as http:
        assert server.ctx is not None
        real = server.ctx.engine
        server.ctx.engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
        try:
            async with http.get("/readyz") as r:
                body = await r.json()
            assert r.status == 503
            assert "not reachable" in body["checks"]["database"]
        finally:
            server.ctx.engine.dispose()
            server.ctx.engine = real
        async with http.get("/readyz") as r:
            assert r.status == 200


async def test_readyz_fails_when_scheduler_stopped(config: Path) -> None:
    """readyz answers 503 when this process should run the scheduler and it is not running."""
    async with running_node(config) as server, aiohttp.ClientSession(server.url) as http:
        assert server.ctx is not None
        await server.ctx.scheduler.stop()
        async with http.get("/readyz") as r:
            assert r.status == 503
            assert (await r.json())["checks"]["scheduler"] == "not running"


async def test_roles_limit_what_is_served(config: Path) -> None:
    """A process run with only the api role serves no federation routes and runs no scheduler."""
    async with (
        running_node(config, roles=frozenset({"api"})) as server,
        aiohttp.ClientSession(server.url) as http,
    ):
        async with http.get("/fed/v1/keys") as r:
            assert r.status == 404
        async with http.get("/readyz") as r:
            assert (await r.json())["checks"] == {"database": "ok"}
        async with http.get("/api/v1/node") as r:
            assert (await r.json())["roles"] == ["api"]


async def test_inflight_request_finishes_during_shutdown(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request in flight when shutdown starts still completes with its response."""
    started = asyncio.Event()

    async def slow(_request: web.Request) -> web.Response:
        started.set()
        await asyncio.sleep(0.3)
        return web.json_response({"done": True})

    def install(app: web.Application, _ctx: object) -> None:
        app.router.add_get("/slow", slow)

    monkeypatch.setattr(
        components, "COMPONENTS", (*components.COMPONENTS, Component("t", ALL_ROLES, install))
    )
    async with running_node(config) as server, aiohttp.ClientSession(server.url) as http:

        async def call() -> tuple[int, object]:
            async with http.get("/slow") as r:
                return r.status, await r.json()

        pending = asyncio.create_task(call())
        await started.wait()
        await server.stop()
        assert await pending == (200, {"done": True})


async def test_a_start_failing_part_way_stops_what_had_started(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a component fails to start (the database lost while starting), the components started
    before it are stopped then, in reverse order, with their background work cancelled: none is
    left to the loop's shutdown (which closed them out of order and logged a traceback)."""
    events: list[str] = []

    def started_first(app: web.Application, _ctx: object) -> None:
        async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
            rounds = asyncio.create_task(asyncio.sleep(3600))
            events.append("first started")
            try:
                yield
            finally:
                rounds.cancel()
                events.append("first stopped")

        app.cleanup_ctx.append(lifecycle)

    def failing(app: web.Application, _ctx: object) -> None:
        async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
            events.append("second failed")
            if events:  # always: the generator fails before its first yield
                raise RuntimeError("cannot start")
            yield

        app.cleanup_ctx.append(lifecycle)

    extra = (Component("first", ALL_ROLES, started_first), Component("second", ALL_ROLES, failing))
    monkeypatch.setattr(components, "COMPONENTS", (*components.COMPONENTS, *extra))
    server = NodeServer(load_settings(config, environ={}), ALL_ROLES)
    with pytest.raises(RuntimeError, match="cannot start"):
        await server.start()
    assert events == ["first started", "second failed", "first stopped"]
