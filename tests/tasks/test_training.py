"""The shipped training program as a task: the example specs run on a real local pool and give the
same bytes as a plain run; checkpointed mid-run and restored, it still gives the same bytes."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from connectors.contract import Instance, InstanceSpec, Program
from connectors.frameworks import Image, resolve
from connectors.pools.local import LocalPool
from connectors.serving import start_app
from node.tasks.spec import TaskSpec, parse_task_spec, read_task_spec
from tests.support.polling import eventually

TASKS = Path(__file__).resolve().parents[2] / "configs" / "tasks"


@pytest.fixture(name="served")
async def fixture_served() -> AsyncIterator[str]:
    """configs/tasks served on 127.0.0.1 (where the examples' input comes from)."""
    app = web.Application()
    app.router.add_static("/", TASKS)
    runner, url = await start_app(app)
    yield url
    await runner.cleanup()


@pytest.fixture(name="pool")
async def fixture_pool(tmp_path: Path) -> AsyncIterator[LocalPool]:
    """A local pool whose `pytorch` runtime is this interpreter (which has NumPy)."""
    pool = LocalPool("train", tmp_path / "pool", slots=2, runtimes={"pytorch": (sys.executable,)})
    await pool.start()
    yield pool
    await pool.close()


def plain_run(directory: Path, *args: str) -> dict[str, str]:
    """Run the program as a plain subprocess in `directory`; SHA-256 of its outputs by name."""
    directory.mkdir()
    subprocess.run(
        [sys.executable, str(TASKS / "train_numpy.py"), *args],
        cwd=directory,
        check=True,
        capture_output=True,
        timeout=120,
        env={"OPENBLAS_NUM_THREADS": "1", "TRAIN_SEED": "7", "PATH": "/usr/bin:/bin"},
    )
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((directory / "out").iterdir())}


def served_spec(name: str, url: str) -> TaskSpec:
    """An example spec with its input URL pointed at the loopback server."""
    data = read_task_spec(TASKS / name).model_dump(mode="json")
    for item in data["inputs"]:
        item["url"] = f"{url}/{item['path']}"
    resources = data.pop("demand") or data.pop("offer")
    data.pop("offer", None)
    return parse_task_spec({**data, "resources": {k: v for k, v in resources.items() if v is not None}})


async def run_to_end(pool: LocalPool, program: Program) -> Instance:
    instance = await pool.create_instance(InstanceSpec(name="train", region_id="local", flavor_id="local-1"))
    await pool.deploy(instance.id, program)
    await pool.start_instance(instance.id)

    async def ended() -> bool:
        return (await pool.get_instance(instance.id)).state in ("stopped", "failed")

    await eventually(ended, timeout_s=120, what="training run end")
    return await pool.get_instance(instance.id)


async def test_the_examples_run_as_tasks_and_match_a_plain_run(
    pool: LocalPool, served: str, tmp_path: Path
) -> None:
    """The command example (python3 swapped for this interpreter) and the framework example (pytorch
    resolved for a CPU chip, run on the pool's pytorch runtime) both fetch the program, check it, and
    keep out/model.npy and out/metrics.json with the same SHA-256 as a plain run."""
    expected = plain_run(tmp_path / "plain", "--steps", "300")
    command = served_spec("train-numpy.toml", served).to_program()
    assert command.command is not None
    command = command.model_copy(update={"command": [sys.executable, *command.command[1:]]})
    framework_spec = served_spec("train-numpy-framework.json", served)
    image = resolve(str(framework_spec.framework), "cpu")
    assert isinstance(image, Image)
    for program in (command, framework_spec.to_program(image)):
        ended = await run_to_end(pool, program)
        assert (ended.state, ended.exit_code) == ("stopped", 0), ended.detail
        kept = await pool.outputs(ended.id)
        assert {f.path.removeprefix("out/"): f.sha256 for f in kept.files} == expected
        assert b"done: final loss" in (await pool.logs(ended.id, 0, 1 << 20)).data()
        await pool.delete_instance(ended.id)


async def test_checkpointed_and_restored_it_ends_bit_identical(
    pool: LocalPool, served: str, tmp_path: Path
) -> None:
    """Stopped after a checkpoint mid-run and started again from its state, the program resumes at the
    checkpointed step and its outputs are byte-identical to an uninterrupted run's."""
    expected = plain_run(tmp_path / "plain", "--steps", "400")
    spec = served_spec("train-numpy.toml", served)
    program = spec.to_program()
    program = program.model_copy(
        update={
            "command": [sys.executable, "train_numpy.py", "--steps", "400", "--step-delay-ms", "5"],
            "max_duration_s": None,
        }
    )
    instance = await pool.create_instance(InstanceSpec(name="resume", region_id="local", flavor_id="local-1"))
    await pool.deploy(instance.id, program)
    await pool.start_instance(instance.id)

    async def trained_a_while() -> bool:
        return b"step 100 " in (await pool.logs(instance.id, 0, 1 << 20)).data()

    await eventually(trained_a_while, timeout_s=60, what="100 steps")
    checkpoint = await pool.checkpoint(instance.id, timeout_s=30)
    assert {f.path for f in checkpoint.files} == {"checkpoint.json", "checkpoint.npy"}
    stopped = await pool.stop_instance(instance.id)
    assert (stopped.state, stopped.reason) == ("stopped", "stopped")
    await pool.start_instance(instance.id, restore=True)

    async def ended() -> bool:
        return (await pool.get_instance(instance.id)).state in ("stopped", "failed")

    await eventually(ended, timeout_s=120, what="resumed run end")
    log = (await pool.logs(instance.id, 0, 1 << 20)).data()
    assert b"resumed at step" in log
    assert b"resumed at step 400" not in log  # it was stopped mid-run, not after the end
    kept = await pool.outputs(instance.id)
    assert {f.path.removeprefix("out/"): f.sha256 for f in kept.files} == expected
