"""The local pool's sandbox beyond the conformance kit: mapped runtimes, input policy and faults,
what is kept and served, the log cap, stopping while inputs are fetched or the program launched."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from connectors.contract import InputFile, Instance, InstanceSpec, Program
from connectors.errors import InvalidRequest, InvalidState
from connectors.pools.local import LocalPool
from connectors.sandbox import InputPolicy, parse_runtimes
from connectors.serving import start_app
from tests.support.polling import eventually

BODY = b"0123456789" * 100


@pytest.fixture(name="served")
async def fixture_served() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A loopback server: /body (1000 bytes), /longer (1001 bytes), /slow (waits for the event)."""
    release = asyncio.Event()
    app = web.Application()

    async def body(_r: web.Request) -> web.Response:
        return web.Response(body=BODY)

    async def longer(_r: web.Request) -> web.Response:
        return web.Response(body=BODY + b"!")

    async def slow(_r: web.Request) -> web.Response:
        await release.wait()
        return web.Response(body=BODY)

    app.router.add_get("/body", body)
    app.router.add_get("/longer", longer)
    app.router.add_get("/slow", slow)
    runner, url = await start_app(app)
    yield url, release
    release.set()
    await runner.cleanup()


async def make_pool(tmp_path: Path, **kwargs: object) -> LocalPool:
    pool = LocalPool("runs", tmp_path / "pool", slots=4, **kwargs)  # type: ignore[arg-type]
    await pool.start()
    return pool


async def run(pool: LocalPool, program: Program) -> Instance:
    instance = await pool.create_instance(InstanceSpec(name="run", region_id="local", flavor_id="local-1"))
    await pool.deploy(instance.id, program)
    await pool.start_instance(instance.id)

    async def ended() -> bool:
        return (await pool.get_instance(instance.id)).state in ("stopped", "failed")

    await eventually(ended, timeout_s=20, what="run end")
    return await pool.get_instance(instance.id)


def declared(url: str, data: bytes = BODY, path: str = "in.bin") -> InputFile:
    return InputFile(url=url, path=path, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


async def test_an_image_runs_on_the_runtime_its_framework_maps_to(tmp_path: Path) -> None:
    """With `runtimes = {pytorch = [python]}` an image of framework pytorch runs as that runtime with the
    command as its arguments, and the pool says it maps images for pytorch only."""
    pool = await make_pool(tmp_path, runtimes=parse_runtimes({"pytorch": [sys.executable]}))
    try:
        info = await pool.info()
        assert (info.capabilities.images, info.capabilities.frameworks) == ("mapped", ["pytorch"])
        image = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"
        ended = await run(
            pool, Program(image=image, framework="pytorch", command=["-c", "print('via runtime')"])
        )
        assert (ended.state, ended.exit_code) == ("stopped", 0)
        assert b"via runtime" in (await pool.logs(ended.id)).data()
        other = await pool.create_instance(InstanceSpec(name="tf", region_id="local", flavor_id="local-1"))
        with pytest.raises(InvalidRequest, match="tensorflow"):
            await pool.deploy(other.id, Program(image="tensorflow/tensorflow:2.17.0", framework="tensorflow"))
    finally:
        await pool.close()


def test_runtimes_option_reads_tables_json_and_refuses_bad_ones() -> None:
    """`runtimes` is a table or its JSON (as `--option` passes it); bad names and argv are refused."""
    assert parse_runtimes({"pytorch": "python3 -u"}) == {"pytorch": ("python3", "-u")}
    assert parse_runtimes(json.dumps({"paddle": ["python3"]})) == {"paddle": ("python3",)}
    bad: object
    for bad in ({"Py Torch": ["python3"]}, {"pytorch": []}, {"pytorch": [1]}, "not json", ["pytorch"]):
        with pytest.raises(InvalidRequest):
            parse_runtimes(bad)
    pool = LocalPool.from_options("x", {"root": "/tmp/x", "runtimes": '{"pytorch": ["python3"]}'})
    assert pool.sandbox.runtimes == {"pytorch": ("python3",)}


async def test_file_inputs_come_only_from_configured_roots(tmp_path: Path) -> None:
    """A `file://` input is refused at deploy unless it lies under an `input_roots` directory; one that
    does is copied in and checked."""
    allowed, other = tmp_path / "allowed", tmp_path / "other"
    allowed.mkdir()
    other.mkdir()
    (allowed / "in.bin").write_bytes(BODY)
    (other / "in.bin").write_bytes(BODY)
    bare = await make_pool(tmp_path / "a")
    rooted = await make_pool(tmp_path / "b", inputs=InputPolicy(input_roots=(allowed,)))
    try:
        script = "import pathlib; print(len(pathlib.Path('in.bin').read_bytes()))"
        program = Program(
            command=[sys.executable, "-c", script], inputs=[declared((allowed / "in.bin").as_uri())]
        )
        instance = await bare.create_instance(InstanceSpec(name="f", region_id="local", flavor_id="local-1"))
        with pytest.raises(InvalidRequest, match="does not read local files"):
            await bare.deploy(instance.id, program)
        ended = await run(rooted, program)
        assert (ended.state, ended.exit_code) == ("stopped", 0)
        assert b"1000" in (await rooted.logs(ended.id)).data()
        escaped = await rooted.create_instance(InstanceSpec(name="g", region_id="local", flavor_id="local-1"))
        outside = Program(command=program.command, inputs=[declared((other / "in.bin").as_uri())])
        with pytest.raises(InvalidRequest, match="does not read local files"):
            await rooted.deploy(escaped.id, outside)
    finally:
        await bare.close()
        await rooted.close()


async def test_input_faults_end_the_run_before_the_program(
    tmp_path: Path, served: tuple[str, asyncio.Event]
) -> None:
    """A body longer than declared is `input_mismatch`; a missing URL `input_unavailable`; an input over
    the pool's size cap is refused at deploy."""
    url, _release = served
    pool = await make_pool(tmp_path, inputs=InputPolicy(max_input_bytes=5000))
    try:
        script = [sys.executable, "-c", "print('ran')"]
        longer = await run(pool, Program(command=script, inputs=[declared(f"{url}/longer")]))
        assert (longer.state, longer.reason, longer.started_ms) == ("failed", "input_mismatch", None)
        missing = await run(pool, Program(command=script, inputs=[declared(f"{url}/nothing-here")]))
        assert (missing.state, missing.reason) == ("failed", "input_unavailable")
        assert "404" in missing.detail
        assert b"ran" not in (await pool.logs(missing.id)).data()
        big = InputFile(url=f"{url}/body", path="big", size_bytes=5001, sha256="0" * 64)
        instance = await pool.create_instance(
            InstanceSpec(name="big", region_id="local", flavor_id="local-1")
        )
        with pytest.raises(InvalidRequest, match="over this pool's limit"):
            await pool.deploy(instance.id, Program(command=script, inputs=[big]))
    finally:
        await pool.close()


async def test_stop_while_fetching_inputs_never_starts_the_program(
    tmp_path: Path, served: tuple[str, asyncio.Event]
) -> None:
    """Stopping during the input fetch ends the run `stopped` without a start time; it never runs."""
    url, release = served
    pool = await make_pool(tmp_path)
    try:
        instance = await pool.create_instance(InstanceSpec(name="s", region_id="local", flavor_id="local-1"))
        script = "import pathlib; pathlib.Path('ran').write_text('yes')"
        await pool.deploy(
            instance.id, Program(command=[sys.executable, "-c", script], inputs=[declared(f"{url}/slow")])
        )
        assert (await pool.start_instance(instance.id)).state == "starting"
        stopped = await pool.stop_instance(instance.id)
        assert (stopped.state, stopped.reason, stopped.started_ms) == ("stopped", "stopped", None)
        release.set()
        assert not (pool.root / "instances" / instance.id / "work" / "ran").exists()
    finally:
        await pool.close()


async def test_symlinks_are_neither_kept_nor_served(tmp_path: Path) -> None:
    """An output that is a symlink is not kept, and a state file linking out of its bucket is not served."""
    pool = await make_pool(tmp_path)
    try:
        script = (
            "import os, pathlib; pathlib.Path('out').mkdir(); pathlib.Path('out/real.txt').write_text('r');"
            "os.symlink('/etc/hostname', 'out/link'); "
            "os.symlink('/etc/hostname', os.path.join(os.environ['CPNODE_STATE_DIR'], 'leak'))"
        )
        ended = await run(pool, Program(command=[sys.executable, "-c", script], outputs=["out"]))
        kept = await pool.outputs(ended.id)
        assert [f.path for f in kept.files] == ["out/real.txt"]
        storage = await pool.storage_endpoint(ended.id)
        auth = {"Authorization": f"Bearer {storage.token}"}
        async with aiohttp.ClientSession(headers=auth) as session:
            async with session.get(f"{storage.url}/storage/v1/{storage.bucket}/leak") as response:
                assert response.status == 404
            async with session.get(f"{storage.url}/storage/v1/{storage.bucket}") as response:
                assert (await response.json())["files"] == []
    finally:
        await pool.close()


async def test_the_log_is_capped(tmp_path: Path) -> None:
    """Output past `max_log_bytes` is dropped with a note, and the program still ends normally."""
    pool = await make_pool(tmp_path, max_log_bytes=1000)
    try:
        ended = await run(pool, Program(command=[sys.executable, "-c", "print('x' * 50000)"]))
        chunk = await pool.logs(ended.id, 0, 1 << 20)
        assert (ended.state, ended.exit_code) == ("stopped", 0)
        assert chunk.complete
        assert chunk.size_bytes < 1100
        assert b"[log truncated at 1000 bytes]" in chunk.data()
    finally:
        await pool.close()


POOL_HOLDER = """
import asyncio, sys, pathlib
from connectors.contract import InstanceSpec, Program
from connectors.pools.local import LocalPool

async def main():
    pool = LocalPool("held", pathlib.Path(sys.argv[1]), slots=1)
    await pool.start()
    instance = await pool.create_instance(InstanceSpec(name="held", region_id="local", flavor_id="local-1"))
    script = "import os, pathlib, time; pathlib.Path('pid').write_text(str(os.getpid())); time.sleep(300)"
    await pool.deploy(instance.id, Program(command=[sys.executable, "-c", script]))
    await pool.start_instance(instance.id)
    print(instance.id, flush=True)
    await asyncio.sleep(300)

asyncio.run(main())
"""


def start_holder(root: Path) -> subprocess.Popen[bytes]:
    """A process holding a local pool with one running program; it prints the instance id."""
    argv = [sys.executable, "-c", POOL_HOLDER, str(root)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


async def test_a_program_dies_with_its_pool_and_is_reported_lost(tmp_path: Path) -> None:
    """When the pool's process is killed, its running program dies with it (parent-death signal, no
    orphan), and the pool started again reports the run failed with reason `lost`."""
    root = tmp_path / "pool"
    holder = start_holder(root)
    try:
        assert holder.stdout is not None
        instance_id = (await asyncio.wait_for(asyncio.to_thread(holder.stdout.readline), 60)).decode().strip()
        pid_file = root / "instances" / instance_id / "work" / "pid"

        async def program_running() -> bool:
            return pid_file.exists() and pid_file.read_text().isdigit()

        await eventually(program_running, timeout_s=30, what="program started")
        pid = int(pid_file.read_text())
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)

        async def program_gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        await eventually(program_gone, timeout_s=10, what="program gone with its pool")
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()
    again = LocalPool("held", root, slots=1)
    await again.start()
    try:
        lost = await again.get_instance(instance_id)
        assert (lost.state, lost.reason) == ("failed", "lost")
        assert lost.started_ms is not None
        assert lost.ended_ms is not None
    finally:
        await again.close()


async def test_a_stop_while_the_program_is_being_launched_ends_it(tmp_path: Path) -> None:
    """A stop that arrives while the program's process is being launched (the pool closing as a start
    is under way) waits for the launch and ends the program: nothing runs on after the stop, and no
    process is left to the garbage collector."""
    pool = await make_pool(tmp_path)
    try:
        instance = await pool.create_instance(InstanceSpec(name="l", region_id="local", flavor_id="local-1"))
        await pool.deploy(instance.id, Program(command=[sys.executable, "-c", "import time; time.sleep(60)"]))
        starting = asyncio.create_task(pool.start_instance(instance.id))
        await asyncio.sleep(0)  # the start is now inside the launch: its process exists, no run yet
        stopped = await pool.stop_instance(instance.id)
        await starting
        assert (stopped.state, stopped.reason) == ("stopped", "stopped"), stopped
        assert stopped.started_ms is not None
        assert stopped.ended_ms is not None  # it ran, and its end was recorded by the time stop returned
        assert (await pool.get_instance(instance.id)).state == "stopped"
    finally:
        await pool.close()


async def test_a_closed_pool_starts_nothing(tmp_path: Path) -> None:
    """Once the pool is closed (its node shutting down), a start is refused instead of launching a
    program no one owns; a start under way when close begins finishes and is then stopped."""
    pool = await make_pool(tmp_path)
    spec = InstanceSpec(name="l", region_id="local", flavor_id="local-1")
    sleeper = Program(command=[sys.executable, "-c", "import time; time.sleep(60)"])
    first, second = await pool.create_instance(spec), await pool.create_instance(spec)
    for instance in (first, second):
        await pool.deploy(instance.id, sleeper)
    starting = asyncio.create_task(pool.start_instance(first.id))
    await asyncio.sleep(0)  # the start holds the pool's lock: close waits for it
    await pool.close()
    assert (await starting).id == first.id
    assert (await pool.get_instance(first.id)).state in ("stopped", "failed")
    with pytest.raises(InvalidState, match="closed"):
        await pool.start_instance(second.id)
    assert (await pool.get_instance(second.id)).state == "stopped"
