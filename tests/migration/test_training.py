"""A real workload: the shipped NumPy training program, running on a local pool, migrated mid-run by
a node process to a second local pool; it resumes from its checkpoint there and its outputs are
bit-identical to a run that never moved. The pools run beside the node as out-of-process plugins
(as `cpnode gateway` runs them), and no network plugin is configured: no path is reserved."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from connectors.contract import InstanceSpec, Program
from connectors.pools.local import LocalPool
from connectors.remote.server import PluginService
from node.config import load_settings
from node.runfile import read_admin_token
from tests.support.express import ExpressProcess
from tests.support.migration import Api
from tests.support.nodes import NodeProcess, make_node_dir
from tests.support.polling import eventually
from tests.tasks.test_training import TASKS, plain_run

pytestmark = pytest.mark.slow
ARGS = ("--steps", "300", "--hidden", "1024", "--features", "512", "--samples", "1024")  # 4 MiB of state


@pytest.fixture(name="setting")
async def fixture_setting(tmp_path: Path) -> AsyncIterator[tuple[Api, LocalPool, LocalPool]]:
    """An express, a node process, and two local pools registered with it as remote plugins."""
    express = ExpressProcess(tmp_path / "express")
    await asyncio.to_thread(express.start)
    config = make_node_dir(
        tmp_path,
        "node-a",
        extra_toml=f"""
[connectors]
heartbeat_interval_s = 0.5
call_timeout_s = 30

[migration]
express_url = "{express.url}"
express_token_path = "{express.token_file}"
sites = {{ pool-a = "beijing", pool-b = "shanghai" }}
chunk_mib = 1
retry_delay_s = 0.2
poll_interval_s = 0.1
supervise_every_s = 0.2
""",
    )
    node = NodeProcess(config)
    url = await asyncio.to_thread(node.start)
    token = read_admin_token(load_settings(config, environ={}))
    pools = (LocalPool("pool-a", tmp_path / "a", slots=1), LocalPool("pool-b", tmp_path / "b", slots=1))
    services = [PluginService(pool, url, token) for pool in pools]
    session = aiohttp.ClientSession()
    try:
        for service in services:
            await service.start(register_first=True)
        api = Api(session, url, token)

        async def online() -> bool:
            plugins = (await api.ok("GET", "/api/v1/plugins"))["plugins"]
            return {p["name"] for p in plugins if p["state"] == "online"} >= {"pool-a", "pool-b"}

        await eventually(online, 60, "both pools online")
        yield api, *pools
    finally:
        await session.close()
        await asyncio.to_thread(node.stop)
        for service in services:
            await service.close()
        await asyncio.to_thread(express.stop)


async def test_training_migrated_mid_run_gives_bit_identical_outputs(
    setting: tuple[Api, LocalPool, LocalPool], tmp_path: Path
) -> None:
    """The program trains 300 steps; after 50 on pool A the node moves it to pool B: B resumes at the
    checkpointed step and writes out/model.npy and out/metrics.json byte-identical to an unmigrated
    run; the source instance is gone from A."""
    api, pool_a, pool_b = setting
    expected = plain_run(tmp_path / "plain", *ARGS)
    program = Program(
        command=[sys.executable, str(TASKS / "train_numpy.py"), *ARGS, "--step-delay-ms", "20"],
        env={"OPENBLAS_NUM_THREADS": "1", "TRAIN_SEED": "7"},
        outputs=["out"],
    )
    source = await pool_a.create_instance(InstanceSpec(name="train", region_id="local", flavor_id="local-1"))
    await pool_a.deploy(source.id, program)
    await pool_a.start_instance(source.id)

    async def trained_a_while() -> bool:
        return b"step 50 " in (await pool_a.logs(source.id, 0, 1 << 20)).data()

    await eventually(trained_a_while, 60, "50 steps on pool A")
    body = {"source_pool": "pool-a", "instance_id": source.id, "to_pool": "pool-b", "task_id": "train-1"}
    migration = await api.ok("POST", "/api/v1/migrations", body, 201)
    done = await api.wait(migration["id"], {"completed", "rolled_back", "needs_attention"}, 120)
    assert done["state"] == "completed", done
    assert done["path"] is None  # no network plugin: nothing to reserve
    assert done["task_id"] == "train-1"
    print(f"training state {done['state_bytes']} bytes; downtime {done['downtime_ms']} ms")
    moved = done["destination_instance"]

    async def ended() -> bool:
        return (await pool_b.get_instance(moved)).state in ("stopped", "failed")

    await eventually(ended, 120, "the resumed run's end on pool B")
    finished = await pool_b.get_instance(moved)
    assert (finished.state, finished.exit_code) == ("stopped", 0), finished.detail
    log = (await pool_b.logs(moved, 0, 1 << 20)).data().decode()
    assert "resumed at step" in log
    assert int(log.split("resumed at step ")[1].split()[0]) >= 50
    kept = await pool_b.outputs(moved)
    assert {f.path.removeprefix("out/"): f.sha256 for f in kept.files} == expected
    assert (await pool_a.get_instance(source.id)).state == "deleted"
