"""A migration through real processes, end to end: a program running on one simulated cloud moves
to another across a reserved network path, its state streamed by the data express; the plan, the
refusals that change nothing, and idempotent requests."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
import sqlalchemy as sa

from tests.migration.sockets import SocketMeter
from tests.support.databases import POSTGRES_URL
from tests.support.migration import MIB, STATES_OF_FIGURE_6, World

FINISHED = {"completed", "rolled_back", "cancelled", "needs_attention"}


async def follow(world: World, migration_id: str, into: list[tuple[float, dict[str, Any]]]) -> None:
    """Collect the migration's events until its stream ends."""
    async for arrived, event in world.api.events(migration_id):
        into.append((arrived, event))


@pytest.mark.parametrize(
    "world_options",
    [
        {"migration": {}, "op_delay_ms": {"bj": 150, "sh": 150}},
        pytest.param(
            {"migration": {}, "op_delay_ms": {"bj": 150, "sh": 150}, "postgres": True},
            marks=pytest.mark.postgres,
            id="postgresql",
        ),
    ],
)
async def test_migration_across_sites_follows_figure_6(world: World) -> None:
    """The counter program on `bj` moves to `sh`: every state of figure 6 in order; the path is reserved
    before any byte moves and released at the end; the destination resumes from the checkpointed
    count; the source is released; events stream at least every second with the transfer's progress;
    and the node process carries none of the state bytes (the express carries them all)."""
    state_bytes = 32 * MIB
    source = await world.run_source("bj", state_bytes=state_bytes)
    assert world.node.proc is not None
    on_postgres = "postgresql" in world.node.config.read_text(encoding="utf-8")
    database = frozenset({sa.make_url(POSTGRES_URL).port or 5432}) if on_postgres else frozenset()
    meter = SocketMeter({"node": world.node.proc.pid, "express": world.express.pid}, ignore_ports=database)
    await meter.start()
    body = {"source_pool": "bj", "instance_id": source.id, "to_pool": "sh", "bandwidth_mbps": 160}
    migration = await world.start(body)
    events: list[tuple[float, dict[str, Any]]] = []
    await asyncio.wait_for(follow(world, migration["id"], events), 90)  # the stream ends when it rests
    moved = await meter.stop()
    done = await world.api.migration(migration["id"])
    assert done["state"] == "completed", done
    assert [h["to"] for h in done["history"] if h["event"] != "note"] == STATES_OF_FIGURE_6

    # The path: reserved before the transfer, at the asked bandwidth, released at the end.
    assert done["path"]["hops"] == ["beijing", "shanghai"]
    path = await world.netsim_call("GET", f"/v1/paths/{done['path_id']}")
    assert path["state"] == "released"
    assert done["progress"]["rate_cap_bytes_per_s"] == 160 * 125_000

    # The state: every byte moved and verified; the destination resumed from it; the source is gone.
    assert done["progress"]["bytes_done"] == done["progress"]["bytes_total"] == done["state_bytes"]
    assert done["state_bytes"] > state_bytes
    assert done["downtime_ms"] > 0
    checkpointed = await world.instance("sh", done["destination_instance"])
    assert checkpointed.state == "running"
    log = await world.logs("sh", done["destination_instance"])
    assert "counter starting at " in log
    assert int(log.split("counter starting at ")[1].split()[0]) > 0
    assert source.id not in {i.id for i in await world.instances("bj")}

    # Events: every line of the history as it happened, and progress at least every second.
    transitions = [e["to"] for _, e in events if e["kind"] == "transition" and e["event"] != "note"]
    assert transitions == STATES_OF_FIGURE_6
    progress = [e for _, e in events if e["kind"] == "progress"]
    assert progress[-1]["state"] == "completed"
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(events)]
    assert max(gaps) < 1.5, gaps
    moving = [e["progress"]["bytes_done"] for e in progress if e["state"] == "transferring" and e["progress"]]
    assert any(0 < count < done["state_bytes"] for count in moving), moving  # seen part way

    # Direct pool-to-pool: the express read and wrote the state (the meter misses what moved after its
    # last sample of a connection, so it sees less than twice the state); the node carried only JSON
    # (its PostgreSQL connections, where it has them, are its database, not counted).
    print(f"state {done['state_bytes']} B over TCP: node {moved['node']} B, express {moved['express']} B")
    assert moved["express"] > state_bytes
    assert moved["node"] < state_bytes // 100


async def test_plan_ranks_destinations_and_says_why_others_are_left_out(world: World) -> None:
    """The plan ranks the destinations that fit by cost (transfer + run) or time, each with its route,
    and names the reason for every offer left out; naming a pool or an offer narrows it."""
    source = await world.run_source("bj", state_bytes=MIB)
    ask = {"source_pool": "bj", "instance_id": source.id}
    plan = await world.api.ok("POST", "/api/v1/migrations/plan", ask)
    assert plan["state_bytes"] == 0  # the counter writes its state only when asked to checkpoint
    ranked = [c["offer_id"] for c in plan["candidates"]]
    # Same site, no transfer cost: the other region of bj first; sh's cheaper A100 before its dearer one.
    assert ranked == ["bj/cn-east-2/gpu-a100-8", "sh/cn-east-2/gpu-a100-8", "sh/cn-north-1/gpu-a100-8"]
    assert plan["chosen"]["route"] is None
    assert plan["candidates"][1]["route"]["hops"] == ["beijing", "shanghai"]
    reasons = {e["offer_id"]: e["reason"] for e in plan["excluded"]}
    assert reasons["bj/cn-north-1/gpu-a100-8"] == "same_place"
    assert reasons["sh/cn-east-2/gpu-l40s-4"] == "chip_mismatch"
    sized = await world.api.ok("POST", "/api/v1/migrations/plan", {**ask, "state_bytes": 10**10, "hours": 2})
    costs = {
        c["offer_id"]: (c["transfer_cost"], c["run_cost"], c["transfer_ms"]) for c in sized["candidates"]
    }
    assert costs["sh/cn-east-2/gpu-a100-8"] == (50, 2 * 21800, 12 + 80_000)  # 10 GB at 5/GB; at 1000 Mbit/s
    assert costs["bj/cn-east-2/gpu-a100-8"] == (0, 2 * 21800, 80_000)
    by_offer = await world.api.ok(
        "POST", "/api/v1/migrations/plan", {**ask, "offer_id": "sh/cn-north-1/gpu-a100-8"}
    )
    assert [c["offer_id"] for c in by_offer["candidates"]] == ["sh/cn-north-1/gpu-a100-8"]


async def test_bad_requests_are_refused_and_change_nothing(world: World) -> None:
    """Malformed bodies (400 naming the field), unknown pools and instances, a source that does not
    run and a destination that cannot take it (422 saying why) store nothing; a repeated request with
    the same id answers the same migration, a different one under that id is a conflict."""
    source = await world.run_source("bj", state_bytes=MIB)
    ask = {"source_pool": "bj", "instance_id": source.id}
    for body, status, code in [
        ({**ask, "to_pool": "sh", "offer_id": "sh/cn-east-2/gpu-a100-8"}, 400, "bad_request"),
        ({**ask, "hours": 0}, 400, "bad_request"),
        ({**ask, "bandwidth_mbps": "fast"}, 400, "bad_request"),
        ({**ask, "surprise": 1}, 400, "bad_request"),
        ({**ask, "id": "Not An Id"}, 400, "bad_request"),
        ({**ask, "source_pool": "nowhere"}, 422, "unknown_pool"),
        ({**ask, "instance_id": "i-999999"}, 422, "unknown_instance"),
        ({**ask, "to_pool": "nowhere"}, 422, "no_destination"),
        ({**ask, "offer_id": "sh/cn-east-2/gpu-l40s-4"}, 422, "no_destination"),
    ]:
        status_got, answer = await world.api.call("POST", "/api/v1/migrations", body)
        assert (status_got, answer["error"]) == (status, code), (body, answer)
    offer = "sh/cn-east-2/gpu-l40s-4"
    _status, answer = await world.api.call("POST", "/api/v1/migrations", {**ask, "offer_id": offer})
    why = "nvidia-l40s, the source runs on nvidia-a100"
    assert answer["excluded"] == [{"offer_id": offer, "reason": "chip_mismatch", "message": why}]
    assert (await world.api.ok("GET", "/api/v1/migrations"))["migrations"] == []
    status_got, answer = await world.api.call("GET", "/api/v1/migrations/nothing")
    assert (status_got, answer["error"]) == (404, "unknown_migration")
    status_got, _ = await world.api.call("POST", "/api/v1/migrations/nothing/cancel")
    assert status_got == 404
    headers = {"Authorization": "Bearer wrong"}
    async with world.api.session.get(world.api.url + "/api/v1/migrations", headers=headers) as response:
        assert response.status == 401

    first = await world.start({**ask, "id": "move-1", "to_pool": "sh"})
    again = await world.start({**ask, "id": "move-1", "to_pool": "sh"}, status=200)
    assert again["id"] == first["id"] == "move-1"
    status_got, answer = await world.api.call(
        "POST", "/api/v1/migrations", {**ask, "id": "move-1", "instance_id": "i-000002"}
    )
    assert (status_got, answer["error"]) == (409, "migration_exists")
    status_got, answer = await world.api.call(
        "POST", "/api/v1/migrations", {**ask, "id": "move-1", "to_pool": "bj"}
    )
    assert (status_got, answer["error"]) == (409, "migration_exists")  # the same instance, elsewhere
    done = await world.api.wait("move-1", FINISHED, 90)
    assert done["state"] == "completed"
    assert len((await world.api.ok("GET", "/api/v1/migrations"))["migrations"]) == 1
