"""Health shared through the database (table service_health): two API processes' runtimes over one
database, one replica serving on loopback and one dead. What one process saw — a health round's
checks, a failed connection through its proxy — the other takes at its next round, and one started
anew steers at once by the stored health and endpoints, with no check or endpoint discovery yet;
and with two real API replicas of one node, a replica found dead through one is out on the other."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy.engine import Engine

from node.config import load_settings
from node.service import NodeServer
from node.services import store
from node.services.errors import NoReplicaError
from node.services.runtime import ReplicaState, Runtime
from node.services.settings import ServicesSection
from node.services.steering import LatencyTable
from node.tasks.service import TaskService
from tests.services.test_proxy import SERVICE, closed_port, served
from tests.support.polling import eventually
from tests.support.services import replica_spec, service, serving, steered, steered_node
from tests.support.tasks import Node


class NoTasks:
    """Stands in for the tasks path: any use of it (discovering an endpoint from a log) fails."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the tasks path was used ({name})")


def runtime(
    engine: Engine, observer: str, http: aiohttp.ClientSession, calls: list[tuple[str, Any]] | None = None
) -> Runtime:
    """One API process's services runtime over `engine`; its database calls (name and arguments)
    are appended to `calls`."""
    settings = ServicesSection(site="here", latency_ms={"here/there": 10.0})

    async def call(fn: Any, *args: Any) -> object:
        if calls is not None:
            calls.append((fn.__name__, args))
        return await asyncio.to_thread(fn, engine, *args)

    made = Runtime(
        call,
        cast(TaskService, NoTasks()),
        settings,
        LatencyTable.from_config(settings.latency_ms),
        lambda: frozenset({"here", "there"}),
        {},
        observer=observer,
    )
    made.http = http
    return made


@pytest.fixture(name="replica")
async def fixture_replica() -> AsyncIterator[tuple[str, list[str]]]:
    """A replica on loopback answering its health path; the paths it was asked, in order."""
    asked: list[str] = []

    async def health(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/healthz", health)
    async with served(app) as url:
        yield url, asked


async def test_processes_share_what_they_saw(engine: Engine, replica: tuple[str, list[str]]) -> None:
    """A's checks are B's view at once; A's failed connection takes the replica out of B's
    steering at B's next round; B's own good check, later, is A's view at A's next round."""
    live_url, asked = replica
    dead_url = f"http://127.0.0.1:{closed_port()}"
    values = {f: getattr(SERVICE, f) for f in SERVICE.__dataclass_fields__}
    assert store.insert_service(engine, values, ["live", "dead"])[0]
    async with aiohttp.ClientSession() as http:
        a = runtime(engine, "replica-a", http)
        a.track(SERVICE, store.replicas_of(engine, "svc"))
        for rid, url, site in (("live", live_url, "here"), ("dead", dead_url, "here")):
            a.services["svc"].replicas[rid].endpoint, a.services["svc"].replicas[rid].site = url, site
        await a.refresh()  # A's endpoints are given here (as their logs would give them); it checks
        assert [r.healthy for r in a.services["svc"].replicas.values()] == [True, False]
        checks = len(asked)

        b = runtime(engine, "replica-b", http)  # started anew: no check, no discovery yet
        b.track(SERVICE, store.replicas_of(engine, "svc"))
        b.adopt(await asyncio.to_thread(store.load_health, engine))
        for _ in range(10):
            assert b.choose("svc", "here", set()).id == "live"
        shown = {r.id: r.view() for r in b.services["svc"].replicas.values()}
        assert shown["dead"]["healthy"] is False
        assert shown["dead"]["observed_by"] == "replica-a"
        assert shown["live"]["endpoint"] == live_url
        assert len(asked) == checks

        a.mark_failed(a.services["svc"].replicas["live"], "connection failed: ClientConnectorError")
        await a.flush()
        b.adopt(await asyncio.to_thread(store.load_health, engine))  # B's next round, before its checks
        with pytest.raises(NoReplicaError):
            b.choose("svc", "here", set())
        live_in_b: ReplicaState = b.services["svc"].replicas["live"]
        assert (live_in_b.problem, live_in_b.observer) == (
            "connection failed: ClientConnectorError",
            "replica-a",
        )

        await b.refresh()  # B's own check of the live replica, newer, wins: in B and then in A
        assert b.choose("svc", "here", set()).id == "live"
        await a.refresh()
        assert a.choose("svc", "here", set()).id == "live"
        stored = await asyncio.to_thread(store.load_health, engine)
        assert (stored["live"].healthy, stored["dead"].healthy) == (True, False)


async def test_a_steady_round_writes_nothing_and_a_change_is_written(engine: Engine) -> None:
    """The first round stores both replicas' health; rounds that find them as they were write
    nothing; a replica turning sick is written (it alone), and so is its recovery."""
    sick = {"now": False}

    async def health(_request: web.Request) -> web.Response:
        return web.Response(status=503 if sick["now"] else 200)

    app = web.Application()
    app.router.add_get("/healthz", health)
    values = {f: getattr(SERVICE, f) for f in SERVICE.__dataclass_fields__}
    assert store.insert_service(engine, values, ["live", "dead"])[0]
    calls: list[tuple[str, Any]] = []
    async with served(app) as live_url, aiohttp.ClientSession() as http:
        a = runtime(engine, "replica-a", http, calls)
        a.track(SERVICE, store.replicas_of(engine, "svc"))
        for rid, url in (("live", live_url), ("dead", f"http://127.0.0.1:{closed_port()}")):
            a.services["svc"].replicas[rid].endpoint = url

        async def written() -> list[tuple[str, bool]]:
            calls.clear()
            await a.refresh()
            saved = [args[0] for name, args in calls if name == "save_health"]
            return [(seen.replica, seen.healthy) for batch in saved for seen in batch]

        assert sorted(await written()) == [("dead", False), ("live", True)]
        first = await asyncio.to_thread(store.load_health, engine)
        for _ in range(3):
            assert await written() == []
        assert await asyncio.to_thread(store.load_health, engine) == first
        sick["now"] = True
        assert await written() == [("live", False)]
        stored = (await asyncio.to_thread(store.load_health, engine))["live"]
        assert (stored.healthy, stored.problem) == (False, "health check answered 503")
        assert stored.observed_ms >= first["live"].observed_ms
        assert await written() == []
        sick["now"] = False
        assert await written() == [("live", True)]


async def test_a_lost_write_is_written_by_the_next_round(engine: Engine) -> None:
    """An observation whose write failed (the database unavailable) still differs from what is
    stored, so the next round stores it."""
    values = {f: getattr(SERVICE, f) for f in SERVICE.__dataclass_fields__}
    assert store.insert_service(engine, values, ["dead"])[0]
    async with aiohttp.ClientSession() as http:
        a = runtime(engine, "replica-a", http)
        a.track(SERVICE, store.replicas_of(engine, "svc"))
        a.services["svc"].replicas["dead"].endpoint = f"http://127.0.0.1:{closed_port()}"
        working = a.engine_call

        async def failing_writes(fn: Any, *args: Any) -> object:
            if fn is store.save_health:
                raise OSError("database unavailable")
            return await working(fn, *args)

        a.engine_call = failing_writes
        await a.refresh()
        assert await asyncio.to_thread(store.load_health, engine) == {}
        a.engine_call = working
        await a.refresh()
        assert not (await asyncio.to_thread(store.load_health, engine))["dead"].healthy


async def test_an_older_observation_never_overwrites_a_newer_one(engine: Engine) -> None:
    """The latest observation of a replica wins in the database, whatever order they arrive in;
    a removed replica's observation goes with it."""
    values = {f: getattr(SERVICE, f) for f in SERVICE.__dataclass_fields__}
    assert store.insert_service(engine, values, ["r1"])[0]
    newer = store.Health("r1", "svc", False, "down", "http://127.0.0.1:9", "here", 2_000, "b")
    older = store.Health("r1", "svc", True, None, "http://127.0.0.1:9", "here", 1_000, "a")
    store.save_health(engine, [newer])
    store.save_health(engine, [older])
    assert store.load_health(engine) == {"r1": newer}
    store.remove_replica(engine, "r1")
    assert store.load_health(engine) == {}


async def test_two_api_replicas_a_replica_dead_on_one_is_out_on_the_other(tmp_path: Path) -> None:
    """Two API replicas of one node over one database (real HTTP): a service replica killed and
    found dead through replica A's proxy is out of replica B's steering by B's next round (or gone,
    once its ended task left the service), and B's users' requests go to the live one, none failed."""
    async with steered_node(tmp_path) as a:
        body = {"name": "echo", "spec": replica_spec(), "replicas": 2, "consumer": "alice"}
        status, answer = await a.call("POST", "/api/v1/services", body)
        assert status == 201, answer
        by_site = {r["site"]: r["replica"] for r in await serving(a, "echo", 2)}
        victim, other = by_site["guangzhou"], by_site["beijing"]
        _status, answer = await steered(a, "echo", "/who", site="guangzhou")
        assert answer["replica"] == victim
        server = NodeServer(load_settings(tmp_path / "a" / "node.toml", environ={}), frozenset({"api"}))
        await server.start()
        try:
            assert server.ctx is not None
            headers = {"Authorization": f"Bearer {server.ctx.admin_token}"}
            async with aiohttp.ClientSession(server.url, headers=headers) as http:
                b = Node(server, http)
                await serving(b, "echo", 2)
                os.kill(answer["pid"], signal.SIGKILL)
                status, moved = await steered(a, "echo", "/who", site="guangzhou")  # A fails over
                assert (status, moved["replica"]) == (200, other)
                rounds_then = (await service(b, "echo"))["health_rounds"]
                down: list[dict[str, Any]] = []

                async def out_on_b() -> bool:  # unhealthy there, or already gone from the service
                    replicas = (await service(b, "echo"))["replica_list"]
                    down[:] = [r for r in replicas if r["replica"] == victim]
                    return not down or not down[0]["healthy"]

                await eventually(out_on_b, 30, "the killed replica out on replica B")
                if down:
                    assert down[0]["down_since_round"] <= rounds_then + 1
                for _ in range(5):
                    status, seen = await steered(b, "echo", "/who", site="guangzhou")
                    assert (status, seen["replica"]) == (200, other)
        finally:
            await server.stop()
