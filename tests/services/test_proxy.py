"""The steering proxy against small replicas in this process: failover on a refused connection for
any request whose body was not read, on a dropped connection for idempotent requests only."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web

from node.http.middleware import make_middlewares
from node.metrics import Metrics
from node.services.proxy import BUFFERED_MAX, RUNTIME, add_routes
from node.services.records import Service
from node.services.runtime import ReplicaState, Runtime, ServiceState
from node.services.settings import ServicesSection
from node.services.steering import LatencyTable
from node.tasks.service import TaskService
from tests.support.polling import eventually, within
from tests.support.services import STEP_S

SERVICE = Service("svc", "alice", "{}", 2, 2, 0.0, 30.0, "/healthz", 0, 0)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """`app` on 127.0.0.1, port 0; its base URL (handlers still running at the end are cancelled
    after a second)."""
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def answer(request: web.Request) -> web.Response:
    """A replica that answers with the size of the body it read."""
    body = await request.read()
    return web.json_response({"replica": "live", "bytes": len(body)})


async def hang_up(request: web.Request) -> web.Response:
    """A replica that drops the connection once it has the request."""
    assert request.transport is not None
    request.transport.close()
    raise web.HTTPInternalServerError


async def reset(request: web.Request) -> web.Response:
    """A replica whose connection is reset once it has the request (RST, as from a killed process
    whose socket had the request unread: the proxy reads ECONNRESET, not a clean close)."""
    assert request.transport is not None
    sock = request.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    request.transport.abort()
    raise web.HTTPInternalServerError


@asynccontextmanager
async def proxy(
    first: str, second: str, body_timeout_s: float = 60.0, **fields: Any
) -> AsyncIterator[tuple[aiohttp.ClientSession, Runtime]]:
    """A node's steering entry alone, for service `svc`: replica `first` at the user's site, `second`
    10 ms away (`fields` more `[services]` settings); a client session to it."""
    settings = ServicesSection(site="here", latency_ms={"here/there": 10.0}, **fields)
    table = LatencyTable.from_config(settings.latency_ms)

    async def no_db(*_args: Any) -> object:
        raise AssertionError("the proxy reads no database")

    runtime = Runtime(
        no_db, cast(TaskService, None), settings, table, lambda: frozenset({"here", "there"}), {}
    )
    runtime.services["svc"] = ServiceState(
        SERVICE,
        {
            "first": ReplicaState("first", site="here", endpoint=first, healthy=True, problem=None),
            "second": ReplicaState("second", site="there", endpoint=second, healthy=True, problem=None),
        },
    )
    middlewares = make_middlewares(Metrics(), 1 << 20, body_timeout_s)  # the node's error answers
    app = web.Application(middlewares=middlewares, client_max_size=1 << 20)
    app[RUNTIME] = runtime
    add_routes(app)
    async with aiohttp.ClientSession() as http:
        runtime.http = http
        async with served(app) as url, aiohttp.ClientSession(url) as client:
            yield client, runtime


async def test_a_refused_connection_fails_over_even_for_a_post() -> None:
    """Nothing was sent to the dead replica: the POST goes to the next one, which reads its body."""
    live = web.Application()
    live.router.add_route("*", "/{tail:.*}", answer)
    async with served(live) as live_url, proxy(f"http://127.0.0.1:{closed_port()}", live_url) as (client, rt):
        async with client.post("/svc/svc/infer", data=b"x" * 100_000) as response:
            body = await response.json()
        assert (response.status, body) == (200, {"replica": "live", "bytes": 100_000})
        assert response.headers["X-Cpnode-Replica"] == "second"
        first = rt.services["svc"].replicas["first"]
        assert (first.healthy, first.failed, first.in_flight) == (False, 1, 0)
        assert first.problem == "connection failed: ClientConnectorError"


@pytest.mark.parametrize(
    ("rude_replica", "problem"),
    [(hang_up, "ServerDisconnectedError"), (reset, "ClientOSError")],
    ids=["dropped", "reset"],
)
async def test_a_dropped_or_reset_connection_fails_over_only_idempotent_requests(
    rude_replica: Any, problem: str
) -> None:
    """A replica that hangs up, or resets the connection (a killed replica's pooled connection),
    after taking the request: a GET goes on to the next replica; a POST is a 502 (it may have had
    effects), and the replica is out for both; never a 500."""
    rude, live = web.Application(), web.Application()
    rude.router.add_route("*", "/{tail:.*}", rude_replica)
    live.router.add_route("*", "/{tail:.*}", answer)
    async with served(rude) as rude_url, served(live) as live_url:
        async with proxy(rude_url, live_url) as (client, rt), client.get("/svc/svc/who") as response:
            assert response.status == 200
            assert response.headers["X-Cpnode-Replica"] == "second"
            assert rt.services["svc"].replicas["first"].problem == f"connection failed: {problem}"
        async with proxy(rude_url, live_url) as (client, rt):
            async with client.post("/svc/svc/who", data=b"{}") as response:
                body = await response.json()
            assert (response.status, body["error"]) == (502, "replica_failed")
            assert not rt.services["svc"].replicas["first"].healthy
            assert rt.services["svc"].replicas["first"].in_flight == 0


async def test_no_replica_and_unknown_names() -> None:
    """Every replica out: 503; an unknown service: 404; an unknown site: 400."""
    async with proxy(f"http://127.0.0.1:{closed_port()}", f"http://127.0.0.1:{closed_port()}") as (
        client,
        _rt,
    ):
        async with client.get("/svc/svc/who") as response:
            assert response.status == 502  # both tried and refused
        async with client.get("/svc/svc/who") as response:
            assert (response.status, (await response.json())["error"]) == (503, "no_healthy_replica")
        async with client.get("/svc/nope/who") as response:
            assert response.status == 404
        async with client.get("/svc/svc/who?cpnode_site=mars") as response:
            assert response.status == 400


async def sized(request: web.Request) -> web.StreamResponse:
    """A replica answering `?bytes=N` bytes of known length; `?cut=1` sends half of them and hangs up."""
    size = int(request.query["bytes"])
    response = web.StreamResponse(headers={"Content-Length": str(size), "X-Model": "m1"})
    await response.prepare(request)
    if request.query.get("cut"):
        await response.write(b"y" * (size // 2))
        assert request.transport is not None
        request.transport.close()
        return response
    await response.write(b"y" * size)
    await response.write_eof()
    return response


async def test_short_answers_whole_long_ones_streamed_and_proxied_lines_quiet(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A short answer of known length and a long one both arrive whole with the replica's headers;
    a short one cut off by the replica is a 502 (nothing was sent yet); the proxied requests are
    in the metrics, and their access lines are at DEBUG (a 5xx at INFO)."""
    replica = web.Application()
    replica.router.add_get("/{tail:.*}", sized)
    caplog.set_level(logging.INFO, logger="cpnode.access")
    async with served(replica) as url, proxy(url, url) as (client, rt):
        for size in (10, BUFFERED_MAX, BUFFERED_MAX + 1, 3 * BUFFERED_MAX):
            async with client.get("/svc/svc/data", params={"bytes": str(size)}) as response:
                assert (response.status, len(await response.read())) == (200, size)
                assert response.headers["X-Model"] == "m1"
                assert response.headers["Content-Length"] == str(size)
        async with client.get("/svc/svc/data", params={"bytes": "1000", "cut": "1"}) as response:
            assert (response.status, (await response.json())["error"]) == (502, "replica_failed")
        assert rt.services["svc"].replicas["first"].failed == 1
    lines = [r for r in caplog.records if r.name == "cpnode.access"]
    assert [(r.levelno, getattr(r, "status", None)) for r in lines] == [(logging.INFO, 502)]


async def silent(_request: web.Request) -> web.Response:
    """A replica that takes the request and never answers."""
    await asyncio.Event().wait()
    raise AssertionError("never answered")


async def test_a_silent_replica_times_out_and_gets_on_with_the_next() -> None:
    """A replica that sends nothing for read_timeout_s is marked down; a GET goes on to the next
    replica, a POST is a 504 (it may have had effects): neither waits forever."""
    mute, live = web.Application(), web.Application()
    mute.router.add_route("*", "/{tail:.*}", silent)
    live.router.add_route("*", "/{tail:.*}", answer)
    async with served(mute) as mute_url, served(live) as live_url:
        async with proxy(mute_url, live_url, read_timeout_s=0.3) as (client, rt):
            async with within(STEP_S, "a GET past a silent replica"), client.get("/svc/svc/who") as response:
                assert (response.status, response.headers["X-Cpnode-Replica"]) == (200, "second")
            first = rt.services["svc"].replicas["first"]
            assert (first.healthy, first.in_flight) == (False, 0)
            assert first.problem == "no answer within 0.3 s: SocketTimeoutError"
        async with proxy(mute_url, live_url, read_timeout_s=0.3) as (client, rt):
            async with (
                within(STEP_S, "a POST to a silent replica"),
                client.post("/svc/svc/x", data=b"{}") as response,
            ):
                body = await response.json()
            assert (response.status, body["error"]) == (504, "replica_timeout")
            assert rt.services["svc"].replicas["first"].in_flight == 0


async def test_the_users_own_upload_failing_is_not_held_against_the_replica() -> None:
    """An upload that stops coming is answered 408 and one over the body limit 413; the replica
    that was receiving it stays healthy, with no failure counted."""
    replica = web.Application()
    replica.router.add_route("*", "/{tail:.*}", answer)

    async def stalls() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        await asyncio.Event().wait()

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 65_536

    async with served(replica) as url, proxy(url, url, body_timeout_s=0.3) as (client, rt):
        for data, status, code in ((stalls(), 408, "body_timeout"), (endless(), 413, "body_too_large")):
            async with (
                within(STEP_S, f"an upload answered {status}"),
                client.post("/svc/svc/up", data=data) as response,
            ):
                body = await response.json()
            assert (response.status, body["error"]) == (status, code)
        for state in rt.services["svc"].replicas.values():
            assert (state.healthy, state.failed, state.in_flight) == (True, 0, 0)


async def endless_stream(request: web.Request) -> web.StreamResponse:
    """A replica streaming a line every 20 ms until the reader goes."""
    response = web.StreamResponse()
    await response.prepare(request)
    while True:
        await response.write(b"line\n")
        await asyncio.sleep(0.02)


async def test_a_user_leaving_mid_stream_is_not_the_replicas_failure() -> None:
    """The user closes a streamed answer after its first line: the proxy lets go of the replica's
    stream (nothing left in flight) and counts no failure against it."""
    replica = web.Application()
    replica.router.add_get("/{tail:.*}", endless_stream)
    async with served(replica) as url, proxy(url, url) as (client, rt):
        async with within(STEP_S, "the first streamed line"), client.get("/svc/svc/s") as response:
            assert await response.content.readline() == b"line\n"
            response.close()
        first = rt.services["svc"].replicas["first"]
        await eventually(lambda: first.in_flight == 0, STEP_S, "the stream let go")
        assert (first.healthy, first.failed) == (True, 0)
