"""The migration checklist's faults, each through real processes and bounded in time: a source that
dies mid-stream, a full destination disk, a corrupted byte, a failing network path, a cancel during
the deploy and during the transfer, and an undo that cannot finish."""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import pytest

from tests.support.migration import MIB, World
from tests.support.polling import eventually

pytestmark = pytest.mark.slow
ENDED = {"completed", "rolled_back", "cancelled", "needs_attention"}


async def transferring(
    world: World, migration_id: str, min_bytes: int = 1, timeout_s: float = 60
) -> dict[str, Any]:
    """Wait until the migration is transferring and at least `min_bytes` arrived."""
    seen: list[dict[str, Any]] = []

    async def reached() -> bool:
        seen.append(await world.api.migration(migration_id))
        progress = seen[-1]["progress"] or {}
        if seen[-1]["state"] in ENDED:
            raise AssertionError(f"the migration ended before the transfer was under way: {seen[-1]}")
        return bool(seen[-1]["state"] == "transferring" and progress.get("bytes_done", 0) >= min_bytes)

    await world.api_wait(reached, timeout_s, f"migration {migration_id} transferring")
    return seen[-1]


def left_at(world: World, pool: str, instance_id: str | None) -> list[str]:
    """Files left in the storage of an instance of a cloud (upload machinery included)."""
    if instance_id is None:
        return []
    root = world.clouds[pool].storage / instance_id
    return sorted(p.name for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def source_restored(world: World, instance_id: str) -> None:
    """The source runs again, started from its own checkpoint (its log polled: a program just started
    may not have written its first line yet on a loaded machine)."""
    source = await world.instance("bj", instance_id)
    assert source.state == "running", source

    async def started_twice() -> bool:
        return (await world.logs("bj", instance_id)).count("counter starting at") >= 2

    await eventually(started_twice, 30, "the source's second start in its log")
    assert (await world.logs("bj", instance_id)).count("counter starting at") == 2


async def test_source_dying_mid_stream_resumes_without_writing_a_chunk_twice(world: World) -> None:
    """The source's storage endpoint is cut off mid-transfer and comes back: the express retries and
    resumes from what the destination committed, every chunk is written once, the files verify, and
    the retries show in the migration's progress."""
    source = await world.run_source("bj", state_bytes=16 * MIB)
    proxy = world.clouds["bj"].proxy
    proxy.cut_after(5 * MIB, then_refuse=True)
    migration = await world.start({"source_pool": "bj", "instance_id": source.id, "to_pool": "sh"})

    async def cut() -> bool:
        return proxy.cuts == 1

    await world.api_wait(cut, 60, "the source cut off")
    await asyncio.sleep(1.0)
    await proxy.accept()
    done = await world.api.wait(migration["id"], ENDED, 90)
    assert done["state"] == "completed", done
    progress = done["progress"]
    assert progress["retries"] + done["transfer_resumes"] >= 1
    assert progress["chunk_writes"] == progress["chunks_total"]  # no chunk written twice
    assert any(
        "committed by the destination against its chunk hashes" in h["detail"] for h in done["history"]
    )


async def test_destination_disk_full_rolls_back_and_leaves_nothing(world: World) -> None:
    """The destination's disk fills up: the transfer fails at once (disk_full, fatal), the migration
    rolls back in reverse order: no files and no instance left at the destination, the source runs
    again from its checkpoint, the path is released."""
    source = await world.run_source("bj", state_bytes=8 * MIB)
    resource.prlimit(world.clouds["sh"].pid, resource.RLIMIT_FSIZE, (2 * MIB, 2 * MIB))
    migration = await world.start({"source_pool": "bj", "instance_id": source.id, "to_pool": "sh"})
    done = await world.api.wait(migration["id"], ENDED, 90)
    assert done["state"] == "rolled_back", done
    assert "disk_full" in done["reason"]
    assert done["undo"] == ["transfer", "source", "destination", "path"]
    assert left_at(world, "sh", done["destination_instance"]) == []
    assert await world.instances("sh") == []
    await source_restored(world, source.id)
    assert (await world.netsim_call("GET", f"/v1/paths/{done['path_id']}"))["state"] == "released"


@pytest.mark.parametrize(
    "world_options", [{"migration": {"rehash": True}, "op_delay_ms": {"bj": 150, "sh": 150}}]
)
async def test_a_corrupted_byte_resends_that_chunk_alone(world: World) -> None:
    """One byte of one chunk is flipped on its way to the destination: that chunk is refused and sent
    again alone, and the committed files verify (here re-read and hashed at the destination)."""
    source = await world.run_source("bj", state_bytes=8 * MIB)
    world.clouds["sh"].proxy.corrupt_request(3, 100)
    migration = await world.start({"source_pool": "bj", "instance_id": source.id, "to_pool": "sh"})
    done = await world.api.wait(migration["id"], ENDED, 90)
    assert done["state"] == "completed", done
    assert done["progress"]["rejected_chunks"] == 1
    assert done["progress"]["chunk_writes"] == done["progress"]["chunks_total"]
    assert world.clouds["sh"].proxy.corrupted is not None
    assert any("re-read and hashed at the destination" in h["detail"] for h in done["history"])


async def test_a_broken_path_is_reprovisioned_once_then_the_migration_rolls_back(world: World) -> None:
    """The link under the path fails mid-transfer: the node reserves another path (once) and the
    transfer goes on at its bandwidth; when that path breaks too, the migration rolls back with the
    error shown, and both paths are released."""
    source = await world.run_source("bj", state_bytes=32 * MIB)
    body = {"source_pool": "bj", "instance_id": source.id, "to_pool": "sh", "bandwidth_mbps": 40}
    migration = await world.start(body)
    first = await transferring(world, migration["id"], MIB)
    assert first["path"]["links"] == ["bj-sh"]
    await world.netsim_call("POST", "/_sim/links/bj-sh/fail")

    async def reprovisioned() -> bool:
        return bool((await world.api.migration(migration["id"]))["path_reprovisions"] == 1)

    await world.api_wait(reprovisioned, 30, "the path re-provisioned")
    second = await world.api.migration(migration["id"])
    assert second["state"] == "transferring"
    assert second["path"]["hops"] == ["beijing", "guangzhou", "shanghai"]
    assert second["last_error"].startswith("path_broken")
    assert (await world.netsim_call("GET", f"/v1/paths/{first['path_id']}"))["state"] == "released"
    await world.netsim_call("POST", "/_sim/links/bj-gz/fail")  # another route is still free: not taken
    done = await world.api.wait(migration["id"], ENDED, 60)
    assert done["state"] == "rolled_back", done
    assert "path_broken" in done["reason"]
    assert "re-provisioned once" in done["reason"]
    assert [h for h in done["history"] if "re-provisioning" in h["detail"]]
    await source_restored(world, source.id)
    assert await world.instances("sh") == []
    assert (await world.netsim_call("GET", f"/v1/paths/{second['path_id']}"))["state"] == "released"


@pytest.mark.parametrize("world_options", [{"migration": {}, "op_delay_ms": {"bj": 150, "sh": 2500}}])
async def test_cancel_during_deploy_leaves_nothing_and_a_second_cancel_is_harmless(world: World) -> None:
    """A cancel while the destination is being created: cancelled, no instance left at the destination,
    the source never stopped, the path released; cancelling again answers the cancelled migration."""
    source = await world.run_source("bj", state_bytes=MIB)
    migration = await world.start({"source_pool": "bj", "instance_id": source.id, "to_pool": "sh"})
    await world.api.wait(migration["id"], {"destination_deploying"}, 30)
    cancelling = await world.api.ok("POST", f"/api/v1/migrations/{migration['id']}/cancel", status=202)
    assert cancelling["state"] == "cancelling"
    done = await world.api.wait(migration["id"], ENDED, 60)
    assert done["state"] == "cancelled", done
    again = await world.api.ok("POST", f"/api/v1/migrations/{migration['id']}/cancel", status=200)
    assert again["state"] == "cancelled"
    assert await world.instances("sh") == []
    running = await world.instance("bj", source.id)
    assert running.state == "running"
    assert (await world.logs("bj", source.id)).count("counter starting at") == 1
    assert (await world.netsim_call("GET", f"/v1/paths/{done['path_id']}"))["state"] == "released"


async def test_cancel_during_transfer_removes_what_arrived_and_restarts_the_source(world: World) -> None:
    """A cancel mid-transfer: the express job is cancelled and what it wrote removed, the destination
    instance deleted, the source started again from its checkpoint, the path released; a second
    cancel changes nothing; a cancel once the cutover began is refused."""
    source = await world.run_source("bj", state_bytes=16 * MIB)
    body = {"source_pool": "bj", "instance_id": source.id, "to_pool": "sh", "bandwidth_mbps": 40}
    migration = await world.start(body)
    under_way = await transferring(world, migration["id"], MIB)
    await world.api.ok("POST", f"/api/v1/migrations/{migration['id']}/cancel", status=202)
    await world.api.ok("POST", f"/api/v1/migrations/{migration['id']}/cancel", status=200)
    done = await world.api.wait(migration["id"], ENDED, 60)
    assert done["state"] == "cancelled", done
    assert done["undo"] == ["transfer", "source", "destination", "path"]
    async with world.express.client() as express:
        assert (await express.job(under_way["express_job"])).state == "cancelled"
    assert left_at(world, "sh", done["destination_instance"]) == []
    assert await world.instances("sh") == []
    await source_restored(world, source.id)
    assert (await world.netsim_call("GET", f"/v1/paths/{done['path_id']}"))["state"] == "released"


async def test_an_undo_that_fails_needs_attention_until_retried(world: World) -> None:
    """The network controller goes away mid-transfer: the path cannot be looked at, the migration
    rolls back, and releasing the path fails: the migration needs attention, with the failure shown.
    Once the controller is back, a retry finishes the undo."""
    source = await world.run_source("bj", state_bytes=16 * MIB)
    body = {"source_pool": "bj", "instance_id": source.id, "to_pool": "sh", "bandwidth_mbps": 40}
    migration = await world.start(body)
    await transferring(world, migration["id"], MIB)
    port = int(world.netsim.url.rsplit(":", 1)[1])
    await asyncio.to_thread(world.netsim.stop)
    stuck = await world.api.wait(migration["id"], ENDED, 60)
    assert stuck["state"] == "needs_attention", stuck
    assert "undo failed: path" in stuck["reason"]
    assert stuck["undo"] == ["transfer", "source", "destination"]
    await source_restored(world, source.id)
    status, answer = await world.api.call("POST", f"/api/v1/migrations/{migration['id']}/cancel")
    assert (status, answer["error"]) == (409, "invalid_migration_state")
    world.netsim.argv += ["--port", str(port)]
    await asyncio.to_thread(world.netsim.start)

    async def network_online() -> bool:
        plugins = (await world.api.ok("GET", "/api/v1/plugins"))["plugins"]
        return any(p["name"] == "net" and p["state"] == "online" for p in plugins)

    await world.api_wait(network_online, 30, "the network plugin online again")
    await world.api.ok("POST", f"/api/v1/migrations/{migration['id']}/retry", status=202)
    done = await world.api.wait(migration["id"], ENDED, 60)
    assert done["state"] == "rolled_back", done
    assert done["undo"] == ["transfer", "source", "destination", "path"]
