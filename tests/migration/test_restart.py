"""The node killed mid-migration and started again: the migration goes on from its stored state (the
express job it had started, the destination instance it had begun to create), or rolls back when
what happened meanwhile makes it fail."""

from __future__ import annotations

import asyncio
import resource

import pytest

from tests.migration.test_faults import ENDED, source_restored, transferring
from tests.support.migration import MIB, STATES_OF_FIGURE_6, World

pytestmark = pytest.mark.slow


async def test_node_killed_mid_transfer_goes_on_with_the_same_job(world: World) -> None:
    """SIGKILL during the transfer: the restarted node follows the express job it had started (no new
    attempt, nothing sent twice) and finishes the migration through every state of figure 6."""
    source = await world.run_source("bj", state_bytes=16 * MIB)
    body = {"source_pool": "bj", "instance_id": source.id, "to_pool": "sh", "bandwidth_mbps": 40}
    migration = await world.start(body)
    await transferring(world, migration["id"], 2 * MIB)
    world.node.kill()
    await asyncio.sleep(1.0)  # the transfer goes on without the node
    await asyncio.to_thread(world.start_node)
    done = await world.api.wait(migration["id"], ENDED, 90)
    assert done["state"] == "completed", done
    assert [h["to"] for h in done["history"] if h["event"] != "note"] == STATES_OF_FIGURE_6
    assert (done["express_job"], done["transfer_attempts"]) == (f"{migration['id']}.t0", 0)
    assert done["progress"]["chunk_writes"] == done["progress"]["chunks_total"]
    assert (await world.instance("sh", done["destination_instance"])).state == "running"


@pytest.mark.parametrize("world_options", [{"migration": {}, "op_delay_ms": {"bj": 150, "sh": 3000}}])
async def test_node_killed_while_creating_the_destination_creates_it_once(world: World) -> None:
    """SIGKILL while the destination instance is being created: the restarted node finds it by its
    name instead of creating a second one, and the migration completes."""
    source = await world.run_source("bj", state_bytes=MIB)
    migration = await world.start({"source_pool": "bj", "instance_id": source.id, "to_pool": "sh"})
    await world.api.wait(migration["id"], {"destination_deploying"}, 30)
    await asyncio.sleep(0.5)  # the create call is on its way
    world.node.kill()
    await asyncio.to_thread(world.start_node)
    done = await world.api.wait(migration["id"], ENDED, 120)
    assert done["state"] == "completed", done
    assert [i.id for i in await world.instances("sh")] == [done["destination_instance"]]


async def test_node_down_while_the_transfer_fails_rolls_back_on_restart(world: World) -> None:
    """The node is killed mid-transfer and, while it is down, the destination's disk fills up and the
    transfer fails: the restarted node finds the failed job and rolls the migration back."""
    source = await world.run_source("bj", state_bytes=16 * MIB)
    body = {"source_pool": "bj", "instance_id": source.id, "to_pool": "sh", "bandwidth_mbps": 40}
    migration = await world.start(body)
    under_way = await transferring(world, migration["id"], MIB)
    world.node.kill()
    resource.prlimit(world.clouds["sh"].pid, resource.RLIMIT_FSIZE, (MIB, MIB))
    async with world.express.client() as express:
        failed = await express.wait(under_way["express_job"], 60)
    assert (failed.state, failed.error and failed.error.code) == ("failed", "disk_full")
    await asyncio.to_thread(world.start_node)
    done = await world.api.wait(migration["id"], ENDED, 90)
    assert done["state"] == "rolled_back", done
    assert "disk_full" in done["reason"]
    await source_restored(world, source.id)
    assert await world.instances("sh") == []
