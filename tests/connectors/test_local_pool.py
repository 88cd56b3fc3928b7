"""The `local` pool: the conformance kit, the sandbox, slots, and the checkpoint protocol with real processes."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connectors.contract import InstanceSpec, Program
from connectors.errors import InvalidRequest, InvalidState, NoCapacity, PluginTimeout
from connectors.pools.local import COUNTER_PROGRAM, LocalPool
from connectors.testing import ComputePluginConformance

COUNTER = Program(command=[sys.executable, str(COUNTER_PROGRAM)])


@pytest.fixture(name="program")
def fixture_program() -> Program:
    """The counter program, which follows the checkpoint protocol."""
    return COUNTER


@pytest.fixture(name="plugin")
async def fixture_plugin(tmp_path: Path) -> AsyncIterator[LocalPool]:
    """A started local pool with two slots in a temporary directory."""
    pool = LocalPool("local-test", tmp_path / "pool", slots=2)
    await pool.start()
    yield pool
    await pool.close()


class TestLocalPoolConformance(ComputePluginConformance):
    """The local pool passes the compute plugin contract."""


async def test_program_runs_sandboxed(plugin: LocalPool) -> None:
    """The program runs in its work directory with only the pool's and the deployment's environment."""
    instance = await plugin.create_instance(InstanceSpec(name="env", region_id="local", flavor_id="local-1"))
    script = "import json,os,pathlib; pathlib.Path('env.json').write_text(json.dumps(dict(os.environ)))"
    await plugin.deploy(instance.id, Program(command=[sys.executable, "-c", script], env={"GREETING": "hi"}))
    await plugin.start_instance(instance.id)
    work = plugin.root / "instances" / instance.id / "work"

    async def exited() -> bool:
        return (await plugin.get_instance(instance.id)).state == "stopped"

    from tests.support.polling import eventually

    await eventually(exited, what="program exit")
    env = json.loads((work / "env.json").read_text())
    assert env["GREETING"] == "hi"
    assert env["HOME"] == str(work)
    assert env["CPNODE_STATE_DIR"].endswith("/state")
    assert not {"CPNODE_TEST_POSTGRES_URL", "VIRTUAL_ENV"} & set(env)
    assert (await plugin.get_instance(instance.id)).exit_code == 0


async def test_slots_bound_capacity(plugin: LocalPool) -> None:
    """Two slots hold two one-slot instances; a third is refused and capacity shows zero free."""
    for name in ("a", "b"):
        await plugin.create_instance(InstanceSpec(name=name, region_id="local", flavor_id="local-1"))
    with pytest.raises(NoCapacity):
        await plugin.create_instance(InstanceSpec(name="c", region_id="local", flavor_id="local-1"))
    data = await plugin.data_source()
    assert {c.flavor_id: c.free for c in data.capacity} == {"local-1": 0, "local-2": 0}
    assert data.measurement is not None
    assert data.measurement.matmul_gflops > 0


async def test_checkpoint_then_restore_continues_the_count(plugin: LocalPool) -> None:
    """State written at a checkpoint is what a program started with restore continues from."""
    instance = await plugin.create_instance(
        InstanceSpec(name="count", region_id="local", flavor_id="local-1")
    )
    await plugin.deploy(instance.id, COUNTER)
    await plugin.start_instance(instance.id)
    checkpoint = await plugin.checkpoint(instance.id, timeout_s=10)
    state = plugin.root / "instances" / instance.id / "state" / "counter.json"
    saved = json.loads(state.read_text())["count"]
    assert saved > 0
    assert [f.path for f in checkpoint.files] == ["counter.json"]
    await plugin.stop_instance(instance.id)
    await plugin.start_instance(instance.id, restore=True)

    from tests.support.polling import eventually

    async def restarted() -> bool:
        return f"counter starting at {saved}".encode() in (await plugin.logs(instance.id, 0, 1 << 20)).data()

    await eventually(restarted, what="restored start")
    await plugin.delete_instance(instance.id)


async def test_program_ignoring_the_protocol_times_out(plugin: LocalPool) -> None:
    """A program that never answers a checkpoint request makes checkpoint time out, not hang."""
    instance = await plugin.create_instance(InstanceSpec(name="deaf", region_id="local", flavor_id="local-1"))
    script = "import signal,time; signal.signal(signal.SIGUSR1, signal.SIG_IGN); time.sleep(60)"
    await plugin.deploy(instance.id, Program(command=[sys.executable, "-c", script]))
    await plugin.start_instance(instance.id)
    with pytest.raises(PluginTimeout):
        await plugin.checkpoint(instance.id, timeout_s=0.3)
    await plugin.delete_instance(instance.id)
    with pytest.raises(InvalidState):
        await plugin.start_instance(instance.id)


async def test_bad_deployments_are_refused(plugin: LocalPool) -> None:
    """An image the pool maps no runtime to is refused at deploy; a missing executable fails the run
    (`start_failed`) and the instance takes a new deployment."""
    instance = await plugin.create_instance(InstanceSpec(name="bad", region_id="local", flavor_id="local-1"))
    with pytest.raises(InvalidRequest, match="maps no local runtime"):
        await plugin.deploy(instance.id, Program(image="registry.example/x:1", framework="pytorch"))
    assert (await plugin.get_instance(instance.id)).program is None
    await plugin.deploy(instance.id, Program(command=["/nonexistent/binary"]))
    failed = await plugin.start_instance(instance.id)
    assert (failed.state, failed.reason, failed.started_ms) == ("failed", "start_failed", None)
    assert "cannot start '/nonexistent/binary'" in failed.detail
    await plugin.deploy(instance.id, Program(command=[sys.executable, "-c", "pass"]))
    assert (await plugin.start_instance(instance.id)).state in ("running", "stopped")


async def test_restarted_pool_finds_its_instances(tmp_path: Path) -> None:
    """Instances survive a plugin restart; a program that was running is reported failed (`lost`)."""
    pool = LocalPool("p", tmp_path / "pool", slots=1)
    await pool.start()
    instance = await pool.create_instance(InstanceSpec(name="keep", region_id="local", flavor_id="local-1"))
    await pool.deploy(instance.id, COUNTER)
    await pool.start_instance(instance.id)
    await pool.close()
    again = LocalPool("p", tmp_path / "pool", slots=1)
    await again.start()
    try:
        lost = await again.get_instance(instance.id)
        assert (lost.state, lost.reason) == ("failed", "lost")
        assert lost.started_ms is not None
        assert lost.ended_ms is not None
        assert [i.id for i in await again.list_instances()] == [instance.id]
    finally:
        await again.close()
