"""A real workload: the shipped training program checkpointed on one local pool, its state moved by
the express process to a second local pool, restored there, and its outputs bit-identical to a run
that never moved."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connectors.contract import InstanceSpec, Program
from connectors.express import ExpressClient, JobSpec
from connectors.pools.local import LocalPool
from connectors.storage import list_state_files
from tests.support.polling import eventually
from tests.tasks.test_training import TASKS, plain_run

pytestmark = pytest.mark.slow
ARGS = ("--steps", "240", "--hidden", "1024", "--features", "512", "--samples", "1024")  # 4 MiB of state


@pytest.fixture(name="pools")
async def fixture_pools(tmp_path: Path) -> AsyncIterator[tuple[LocalPool, LocalPool]]:
    """Two local pools on this host, each with its own storage endpoint."""
    pools = (LocalPool("pool-a", tmp_path / "a", slots=1), LocalPool("pool-b", tmp_path / "b", slots=1))
    for pool in pools:
        await pool.start()
    yield pools
    for pool in pools:
        await pool.close()


async def test_training_state_moved_between_pools_resumes_bit_identical(
    pools: tuple[LocalPool, LocalPool], client: ExpressClient, tmp_path: Path
) -> None:
    """Checkpointed mid-run on pool A and stopped, its state moved straight from A's storage endpoint
    to B's by the express, the program restored on B resumes at the checkpointed step and keeps
    out/model.npy and out/metrics.json byte-identical to an unmigrated run."""
    expected = plain_run(tmp_path / "plain", *ARGS)
    source_pool, destination_pool = pools
    program = Program(
        command=[sys.executable, str(TASKS / "train_numpy.py"), *ARGS, "--step-delay-ms", "10"],
        env={"OPENBLAS_NUM_THREADS": "1", "TRAIN_SEED": "7"},
        outputs=["out"],
    )
    spec = InstanceSpec(name="train", region_id="local", flavor_id="local-1")
    running = await source_pool.create_instance(spec)
    await source_pool.deploy(running.id, program)
    await source_pool.start_instance(running.id)

    async def trained_a_while() -> bool:
        return b"step 50 " in (await source_pool.logs(running.id, 0, 1 << 20)).data()

    await eventually(trained_a_while, timeout_s=60, what="50 steps on pool A")
    checkpoint = await source_pool.checkpoint(running.id, timeout_s=30)
    await source_pool.stop_instance(running.id)
    assert sum(f.size_bytes for f in checkpoint.files) > 4 << 20

    target = await destination_pool.create_instance(spec)
    await destination_pool.deploy(target.id, program)
    job = await client.create(
        JobSpec(
            source=checkpoint.storage,
            destination=await destination_pool.storage_endpoint(target.id),
            chunk_bytes=1 << 20,
        )
    )
    done = await client.wait(job.id, timeout_s=60)
    assert done.state == "completed", done.error
    moved = {f.path: f.sha256 for f in checkpoint.files}
    arrived = list_state_files(destination_pool.root / "instances" / target.id / "state")
    assert {f.path: f.sha256 for f in arrived} == moved

    await destination_pool.start_instance(target.id, restore=True)

    async def ended() -> bool:
        return (await destination_pool.get_instance(target.id)).state in ("stopped", "failed")

    await eventually(ended, timeout_s=120, what="the restored run's end on pool B")
    finished = await destination_pool.get_instance(target.id)
    assert (finished.state, finished.exit_code) == ("stopped", 0), finished.detail
    assert b"resumed at step" in (await destination_pool.logs(target.id, 0, 1 << 20)).data()
    kept = await destination_pool.outputs(target.id)
    assert {f.path.removeprefix("out/"): f.sha256 for f in kept.files} == expected
