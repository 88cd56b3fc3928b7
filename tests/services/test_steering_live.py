"""Steering with real processes: a node, two local pools at two sites, echo replicas as tasks."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.polling import eventually, within
from tests.support.services import STEP_S, replica_spec, service, serving, steered, steered_node
from tests.support.tasks import Node


async def test_near_replica_takes_traffic_and_far_loses_it(tmp_path: Path) -> None:
    """Two replicas (beijing, guangzhou): beijing users reach the near one, guangzhou users the far."""
    async with steered_node(tmp_path) as node:
        status, body = await node.call(
            "POST",
            "/api/v1/services",
            {"name": "echo", "spec": replica_spec(), "replicas": 2, "consumer": "alice"},
        )
        assert status == 201, body
        status, body = await steered(node, "echo")  # known at once; no replica serves yet
        assert (status, body["error"]) == (503, "no_healthy_replica")
        replicas = await serving(node, "echo", 2)
        by_site = {r["site"]: r["replica"] for r in replicas}
        assert set(by_site) == {"beijing", "guangzhou"}
        seen: Counter[str] = Counter()
        for _ in range(20):
            status, answer = await steered(node, "echo")
            assert status == 200, answer
            seen[answer["replica"]] += 1
        assert seen == {by_site["beijing"]: 20}
        far: Counter[str] = Counter()
        for _ in range(10):
            status, answer = await steered(node, "echo", site="guangzhou")
            far[answer["replica"]] += 1
        assert far == {by_site["guangzhou"]: 10}
        status, resolved = await node.call("GET", "/api/v1/services/echo/resolve?site=guangzhou")
        assert status == 200, resolved
        assert [r["replica"] for r in resolved["replicas"]] == [by_site["guangzhou"], by_site["beijing"]]
        assert "latency 30 ms (guangzhou → beijing)" in resolved["replicas"][1]["reasons"]


async def _create(node: Node, name: str = "echo", **fields: object) -> dict[str, object]:
    body = {"name": name, "spec": replica_spec(), "replicas": 2, "consumer": "alice", **fields}
    async with within(STEP_S, f"creating service {name}"):
        status, answer = await node.call("POST", "/api/v1/services", body)
    assert status == 201, answer
    return dict(answer)


async def test_busy_replica_loses_traffic(tmp_path: Path) -> None:
    """Slow requests pile up on the near replica until its load outweighs the far one's latency."""
    async with steered_node(tmp_path) as node:
        await _create(node)
        by_site = {r["site"]: r["replica"] for r in await serving(node, "echo", 2)}
        answers = await asyncio.gather(*(steered(node, "echo", "/slow?delay_ms=3000") for _ in range(8)))
        seen = Counter(answer["replica"] for status, answer in answers if status == 200)
        assert sum(seen.values()) == 8
        # 10 ms per request in flight against 30 ms more latency (5 ms tolerance): the near one
        # takes three before the far one is as good, then they share.
        assert seen[by_site["beijing"]] >= 3
        assert seen[by_site["guangzhou"]] >= 2


async def test_pinned_weights_are_honoured(tmp_path: Path) -> None:
    """From a site equally far from both, traffic follows pinned weights 3:1; weight 0 drains."""
    async with steered_node(tmp_path) as node:
        await _create(node)
        by_site = {r["site"]: r["replica"] for r in await serving(node, "echo", 2)}
        near, far = by_site["beijing"], by_site["guangzhou"]
        status, body = await node.call(
            "POST", "/api/v1/services/echo/pin", {"weights": {near: 300, far: 100}}
        )
        assert status == 200, body
        seen: Counter[str] = Counter()
        for _ in range(40):
            _status, answer = await steered(node, "echo", site="chengdu")
            seen[answer["replica"]] += 1
        assert seen == {near: 30, far: 10}
        status, body = await node.call("POST", "/api/v1/services/echo/pin", {"weights": {near: 0, far: None}})
        assert status == 200, body
        for _ in range(10):
            _status, answer = await steered(node, "echo")  # from beijing, yet the near one is drained
            assert answer["replica"] == far
        status, resolved = await node.call("GET", "/api/v1/services/echo/resolve?site=beijing")
        assert resolved["replicas"][-1]["replica"] == near
        assert "weight 0 (pinned): drained" in resolved["replicas"][-1]["reasons"]


async def test_bad_input_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    """Unknown service or site, bad weights, names and counts: clear errors, nothing changed."""
    async with steered_node(tmp_path) as node:
        await _create(node)
        by_site = {r["site"]: r["replica"] for r in await serving(node, "echo", 2)}
        near, far = by_site["beijing"], by_site["guangzhou"]
        async with node.http.get("/svc/nope/who") as response:
            assert response.status == 404
            assert (await response.json())["error"] == "unknown_service"
        status, body = await node.call("GET", "/api/v1/services/nope/resolve")
        assert (status, body["error"]) == (404, "unknown_service")
        status, body = await steered(node, "echo", site="atlantis")
        assert (status, body["error"]) == (400, "unknown_site")
        status, body = await node.call("GET", "/api/v1/services/echo/resolve?site=atlantis")
        assert (status, body["error"]) == (400, "unknown_site")
        for weights in ({near: -1}, {near: 10_001}, {near: "heavy"}, {near: 0, far: 0}, {}):
            status, body = await node.call("POST", "/api/v1/services/echo/pin", {"weights": weights})
            assert (status, body["error"]) == (422, "bad_weight"), (weights, body)
        status, body = await node.call("POST", "/api/v1/services/echo/pin", {"weights": {"a.nobody": 5}})
        assert (status, body["error"]) == (404, "unknown_replica")
        shown = await service(node, "echo")
        assert all(not r["pinned"] for r in shown["replica_list"])
        for fields, field in (
            ({"name": "Bad Name"}, "name"),
            ({"name": "x", "replicas": 0}, "replicas"),
            ({"name": "x", "replicas": 3, "max_replicas": 2}, "replicas"),
            ({"name": "x", "spec": {"program": {}, "resources": {"units": 1, "hours": 1}}}, "spec.program"),
            ({"name": "x", "health_path": "healthz"}, "health_path"),
        ):
            body = {"spec": replica_spec(), "consumer": "alice", **fields}
            status, answer = await node.call("POST", "/api/v1/services", body)
            assert status == 422, answer
            assert answer["field"] == field, answer
        status, answer = await node.call(
            "POST",
            "/api/v1/services",
            {"name": "echo", "spec": replica_spec(), "replicas": 1, "consumer": "alice"},
        )
        assert (status, answer["error"]) == (409, "service_exists")
        status, answer = await node.call("POST", "/api/v1/services/echo/scale", {"replicas": 9})
        assert status == 422, answer
        status, listing = await node.call("GET", "/api/v1/services")
        assert [s["name"] for s in listing["services"]] == ["echo"]
        assert listing["services"][0]["replicas"] == 2


async def test_killed_replica_fails_over_without_failed_requests(tmp_path: Path) -> None:
    """A replica killed under traffic: requests move to the other at once, it is marked unhealthy
    within one health interval, no request fails beyond those in flight, and it is replaced."""
    async with steered_node(tmp_path) as node:
        await _create(node)
        by_site = {r["site"]: r["replica"] for r in await serving(node, "echo", 2)}
        victim = by_site["guangzhou"]
        results: list[tuple[int, str | None]] = []
        stop = asyncio.Event()

        async def worker() -> None:
            while not stop.is_set():
                status, answer = await steered(node, "echo", "/who?delay_ms=20", site="chengdu")
                results.append((status, answer.get("replica") if status == 200 else None))

        workers = [asyncio.create_task(worker()) for _ in range(4)]
        await eventually(lambda: any(r == victim for _s, r in results), 20, "traffic on both replicas")
        _status, answer = await steered(node, "echo", "/who", site="guangzhou")
        assert answer["replica"] == victim
        rounds_at_kill = (await service(node, "echo"))["health_rounds"]
        os.kill(answer["pid"], signal.SIGKILL)
        killed_at = len(results)

        down: list[int] = []

        async def marked() -> bool:
            replicas = (await service(node, "echo"))["replica_list"]
            down[:] = [r["down_since_round"] for r in replicas if r["replica"] == victim and not r["healthy"]]
            return bool(down)

        await eventually(marked, 30, "the killed replica marked unhealthy")
        # Out by the next health round at the latest (the one running at the kill may predate it).
        assert down[0] <= rounds_at_kill + 1
        await eventually(lambda: len(results) > killed_at + 40, 20, "traffic after the kill")
        stop.set()
        await asyncio.gather(*workers)
        after = results[killed_at:]
        failed = [r for r in after if r[0] != 200]
        assert len(failed) <= len(workers), failed  # only requests in flight at the kill may fail
        assert all(replica != victim for _s, replica in after[len(workers) :])
        # The dead replica's task ends; the service is brought back to two replicas.
        await eventually(lambda: _replaced(node, victim), 60, "a new replica in place of the killed one")


async def _replaced(node: Node, victim: str) -> bool:
    replicas = (await service(node, "echo"))["replica_list"]
    return victim not in {r["replica"] for r in replicas} and sum(bool(r["healthy"]) for r in replicas) == 2


async def test_streams_pass_through_both_ways(tmp_path: Path) -> None:
    """A chunked answer arrives in pieces as the replica writes them; an upload streams to it whole."""
    async with steered_node(tmp_path) as node:
        await _create(node, replicas=1)
        await serving(node, "echo", 1)
        async with (
            within(STEP_S, "the streamed answer's headers"),
            node.http.get("/svc/echo/stream?chunks=4&delay_ms=300") as response,
        ):
            assert response.status == 200
            assert (
                "Transfer-Encoding" not in response.headers
                or response.headers["Transfer-Encoding"] == "chunked"
            )
            async with within(STEP_S, "the streamed answer's first chunk"):
                first = await response.content.readline()
            assert first == b"chunk 0\n"
            assert not response.content.at_eof()
            async with within(STEP_S, "the rest of the streamed answer"):
                rest = await response.content.read()
        assert rest == b"chunk 1\nchunk 2\nchunk 3\n"
        blob = os.urandom(700_000)

        async def body() -> AsyncIterator[bytes]:
            for start in range(0, len(blob), 65_536):
                yield blob[start : start + 65_536]

        async with (
            within(STEP_S, "the streamed upload and its answer"),
            node.http.post("/svc/echo/upload", data=body()) as response,
        ):
            answer = await response.json()
        assert response.status == 200, answer
        assert answer == {
            "replica": answer["replica"],
            "bytes": len(blob),
            "sha256": hashlib.sha256(blob).hexdigest(),
        }
        assert response.headers["X-Cpnode-Replica"] == answer["replica"]
        headers = {
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "for the next hop only",
            "Keep-Alive": "timeout=5",
            "X-Cpnode-Site": "beijing",
            "X-End": "to the replica",
        }
        async with (
            within(STEP_S, "the request with hop-by-hop headers"),
            node.http.get("/svc/echo/a%2Fb/c?x=1&cpnode_site=beijing&y=%20", headers=headers) as response,
        ):
            answer = await response.json()
        assert response.status == 200, answer
        assert (answer["path"], answer["query"]) == ("/a%2Fb/c", "x=1&y=%20")
        seen = {k.lower(): v for k, v in answer["headers"].items()}
        assert seen["x-end"] == "to the replica"
        assert seen["x-forwarded-for"] == "127.0.0.1"
        assert seen["x-forwarded-proto"] == "http"
        assert not {"x-hop", "keep-alive", "x-cpnode-site"} & set(seen)


async def test_load_over_threshold_adds_a_replica(tmp_path: Path) -> None:
    """In-flight requests per replica over the threshold for the window: the service grows by one."""
    async with steered_node(tmp_path) as node:
        await _create(node, replicas=1, max_replicas=2, scale_in_flight=1, scale_window_s=0.5)
        await serving(node, "echo", 1)
        stop = asyncio.Event()
        statuses: list[int] = []

        async def client() -> None:  # one slow request in flight after another until it grew
            while not stop.is_set():
                status, _answer = await steered(node, "echo", "/slow?delay_ms=1000")
                statuses.append(status)

        load = [asyncio.create_task(client()) for _ in range(4)]
        await eventually(lambda: _count(node, 2), 60, "the service scaled to two replicas")
        stop.set()
        await asyncio.gather(*load)
        assert set(statuses) == {200}, statuses
        replicas = await serving(node, "echo", 2)
        assert len({r["replica"] for r in replicas}) == 2
        shown = await service(node, "echo")
        assert shown["replicas"] == 2  # and no further: max_replicas is 2


async def _count(node: Node, wanted: int) -> bool:
    return int((await service(node, "echo"))["replicas"]) == wanted


async def test_failing_health_checks_take_a_replica_out_until_it_recovers(tmp_path: Path) -> None:
    """A replica whose health path answers 503 gets no traffic after the next round, and gets its
    share again once its checks pass."""
    async with steered_node(tmp_path) as node:
        await _create(node)
        replicas = {r["site"]: r for r in await serving(node, "echo", 2)}
        sick = replicas["beijing"]
        async with aiohttp.ClientSession() as direct, direct.post(sick["endpoint"] + "/sick") as response:
            assert response.status == 200

        async def out() -> bool:
            shown = (await service(node, "echo"))["replica_list"]
            return any(r["replica"] == sick["replica"] and not r["healthy"] for r in shown)

        await eventually(out, 30, "the sick replica taken out")
        for _ in range(10):
            status, answer = await steered(node, "echo")  # from beijing, yet its replica is out
            assert (status, answer["replica"]) == (200, replicas["guangzhou"]["replica"])
        async with aiohttp.ClientSession() as direct, direct.post(sick["endpoint"] + "/well") as response:
            assert response.status == 200
        await serving(node, "echo", 2)
        status, answer = await steered(node, "echo")
        assert (status, answer["replica"]) == (200, sick["replica"])


@pytest.mark.postgres
async def test_steering_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    """The same service on PostgreSQL: replicas stored, placed, found and steered to by site."""
    async with steered_node(tmp_path, db_url=postgres_url) as node:
        await _create(node)
        by_site = {r["site"]: r["replica"] for r in await serving(node, "echo", 2)}
        for site in ("beijing", "guangzhou"):
            status, answer = await steered(node, "echo", site=site)
            assert (status, answer["replica"]) == (200, by_site[site])
        status, body = await node.call("POST", "/api/v1/services/echo/scale", {"replicas": 1})
        assert status == 200, body

        async def one() -> bool:
            return len((await service(node, "echo"))["replica_list"]) == 1

        await eventually(one, 30, "the service scaled down to one replica")
