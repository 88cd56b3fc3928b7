"""The conformance checks of a program's run (contract 2): inputs, outputs, logs, times, end reasons.

Each check creates its own instance and deletes it. The programs are short Python scripts run by
`CheckContext.python` (default: this interpreter, so the pool must be on this host or have the same
path); their input is served by the kit itself on 127.0.0.1 (`InputServer`), which a pool on
another host cannot reach.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable

import aiohttp

from connectors.conformance_context import INPUT, CheckContext
from connectors.conformance_context import require as _require
from connectors.contract import Instance, InstanceSpec, Program

TASK = """
import hashlib, pathlib
data = pathlib.Path("data/in.bin").read_bytes()
print("read", len(data), "bytes", flush=True)
pathlib.Path("out").mkdir(exist_ok=True)
pathlib.Path("out/reversed.bin").write_bytes(data[::-1])
pathlib.Path("summary.txt").write_text(hashlib.sha256(data).hexdigest())
pathlib.Path("scratch.txt").write_text("not kept")
for i in range(20):
    print("line", i, flush=True)
"""
SLEEPER = "import time\nprint('ready', flush=True)\ntime.sleep(120)\n"
ENDED = ("stopped", "failed")


async def _fresh(ctx: CheckContext, name: str) -> Instance:
    assert ctx.data is not None, "data source check runs first"
    free = sorted((c for c in ctx.data.capacity if c.free > 0), key=lambda c: (c.flavor_id, c.region_id))
    _require(bool(free), "no free capacity to create a test instance")
    spec = InstanceSpec(name=name, region_id=free[0].region_id, flavor_id=free[0].flavor_id)
    ctx.instance = await ctx.plugin.create_instance(spec)
    return ctx.instance


async def _done(ctx: CheckContext) -> None:
    assert ctx.instance is not None
    await ctx.plugin.delete_instance(ctx.instance.id)
    ctx.instance = None


async def wait_for(ctx: CheckContext, instance_id: str, states: tuple[str, ...], what: str) -> Instance:
    """Poll the instance until its state is one of `states`, within the context's timeout."""
    deadline = time.monotonic() + ctx.timeout_s
    while True:
        instance = await ctx.plugin.get_instance(instance_id)
        if instance.state in states:
            return instance
        _require(time.monotonic() < deadline, f"{what}: still {instance.state} after {ctx.timeout_s} s")
        await asyncio.sleep(0.05)


async def _run(ctx: CheckContext, instance: Instance, program: Program) -> Instance:
    await ctx.plugin.deploy(instance.id, program)
    started = await ctx.plugin.start_instance(instance.id)
    _require(started.state in ("starting", "running", *ENDED), f"start answered state {started.state!r}")
    return await wait_for(ctx, instance.id, ENDED, "the run")


async def read_log(ctx: CheckContext, instance_id: str, limit: int) -> tuple[bytes, bool]:
    """The whole log read `limit` bytes at a time, following `next_offset`; and whether it is complete."""
    data, offset = b"", 0
    while True:
        chunk = await ctx.plugin.logs(instance_id, offset, limit)
        _require(chunk.offset == offset, f"a log read at {offset} answered offset {chunk.offset}")
        _require(len(chunk.data()) <= limit, f"a log read of {limit} bytes answered {len(chunk.data())}")
        data += chunk.data()
        if chunk.next_offset >= chunk.size_bytes:
            return data, chunk.complete
        _require(chunk.next_offset > offset, "a log read made no progress")
        offset = chunk.next_offset


def _times(instance: Instance, since_ms: int) -> None:
    _require(
        instance.started_ms is not None and instance.ended_ms is not None, "a run that ran has both times"
    )
    assert instance.started_ms is not None
    assert instance.ended_ms is not None
    _require(instance.started_ms <= instance.ended_ms, "started_ms is after ended_ms")
    _require(instance.started_ms >= since_ms - 2000, "started_ms is before the run was started")


async def check_task_run(ctx: CheckContext) -> str:
    """Inputs fetched and verified, output captured and readable in slices, outputs kept with hashes
    and served read-only with byte ranges; only the declared outputs are kept."""
    instance = await _fresh(ctx, "conformance-task")
    since = int(time.time() * 1000)
    program = Program(
        command=[*ctx.python, "-c", TASK],
        inputs=[await ctx.inputs.input_file()],
        outputs=["out", "summary.txt"],
    )
    ended = await _run(ctx, instance, program)
    _require(
        ended.state == "stopped" and ended.exit_code == 0,
        f"ended {ended.state} ({ended.exit_code}): {ended.detail}",
    )
    _require(ended.reason is None, f"a clean exit has no reason, got {ended.reason!r}")
    _times(ended, since)
    log, complete = await read_log(ctx, instance.id, 7)
    whole, _ = await read_log(ctx, instance.id, 1 << 20)
    _require(log == whole and b"line 19" in log and b"read 10246 bytes" in log, f"log is {whole[:200]!r}")
    _require(complete, "the log of an ended run must say complete")
    kept = await ctx.plugin.outputs(instance.id)
    expected = {
        "out/reversed.bin": hashlib.sha256(INPUT[::-1]).hexdigest(),
        "summary.txt": hashlib.sha256(hashlib.sha256(INPUT).hexdigest().encode()).hexdigest(),
    }
    _require(kept.complete, "outputs of an ended run must say complete")
    _require({f.path: f.sha256 for f in kept.files} == expected, f"outputs are {kept.files}")
    base = f"{kept.storage.url}/storage/v1/{kept.storage.bucket}"
    auth = {"Authorization": f"Bearer {kept.storage.token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ctx.timeout_s)) as session:
        async with session.get(
            f"{base}/out/reversed.bin", headers={**auth, "Range": "bytes=0-3"}
        ) as response:
            body = await response.read()
            _require(response.status == 206 and body == INPUT[::-1][:4], f"ranged read: {response.status}")
        async with session.get(f"{base}/out/reversed.bin", headers=auth) as response:
            _require(await response.read() == INPUT[::-1], "an output does not read back whole")
        async with session.put(f"{base}/out/reversed.bin", data=b"x", headers=auth) as response:
            _require(response.status == 403, f"writing into outputs answered {response.status}")
    await _done(ctx)
    return f"inputs verified, {len(kept.files)} outputs kept, {len(whole)} log bytes"


async def check_input_mismatch(ctx: CheckContext) -> str:
    """An input whose hash differs fails the run before the program starts."""
    instance = await _fresh(ctx, "conformance-input")
    wrong = hashlib.sha256(b"something else").hexdigest()
    program = Program(
        command=[*ctx.python, "-c", TASK], inputs=[await ctx.inputs.input_file(wrong)], outputs=["out"]
    )
    ended = await _run(ctx, instance, program)
    _require(
        (ended.state, ended.reason) == ("failed", "input_mismatch"), f"ended {ended.state}/{ended.reason}"
    )
    _require(ended.started_ms is None and ended.exit_code is None, "the program must not have started")
    log, _ = await read_log(ctx, instance.id, 1 << 16)
    _require(b"read" not in log, "the program ran although its input did not match")
    kept = await ctx.plugin.outputs(instance.id)
    _require(kept.complete and not kept.files, f"a run that never started kept {kept.files}")
    await _done(ctx)
    return f"failed before start: {ended.detail}"


async def check_failures(ctx: CheckContext) -> str:
    """A non-zero exit and a death by signal fail the run with exit code, reason and times; a failed
    instance takes a new deployment."""
    instance = await _fresh(ctx, "conformance-fail")
    since = int(time.time() * 1000)
    exited = await _run(
        ctx, instance, Program(command=[*ctx.python, "-c", "import sys; print('bye'); sys.exit(3)"])
    )
    _require(
        (exited.state, exited.reason, exited.exit_code) == ("failed", "exit_nonzero", 3),
        f"exit 3 ended {exited.state}/{exited.reason}/{exited.exit_code}",
    )
    _times(exited, since)
    script = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    killed = await _run(ctx, instance, Program(command=[*ctx.python, "-c", script]))
    _require(
        (killed.state, killed.reason) == ("failed", "killed"), f"SIGKILL ended {killed.state}/{killed.reason}"
    )
    _require(killed.exit_code is not None and killed.exit_code < 0, f"exit code {killed.exit_code}")
    _times(killed, since)
    await _done(ctx)
    return "exit_nonzero (3) and killed, with times"


async def check_time_limit(ctx: CheckContext) -> str:
    """A program past its `max_duration_s` is stopped, and its end time is the limit."""
    instance = await _fresh(ctx, "conformance-limit")
    ended = await _run(ctx, instance, Program(command=[*ctx.python, "-c", SLEEPER], max_duration_s=1))
    _require(
        (ended.state, ended.reason) == ("stopped", "max_duration"), f"ended {ended.state}/{ended.reason}"
    )
    assert ended.started_ms is not None
    assert ended.ended_ms is not None
    ran_ms = ended.ended_ms - ended.started_ms
    _require(1000 <= ran_ms <= 2500, f"a 1 s limit ended after {ran_ms} ms")
    await _done(ctx)
    return f"stopped at the limit after {ran_ms} ms"


async def check_stop_twice(ctx: CheckContext) -> str:
    """Logs are readable while the program runs; stopping twice is harmless."""
    instance = await _fresh(ctx, "conformance-stop")
    await ctx.plugin.deploy(instance.id, Program(command=[*ctx.python, "-c", SLEEPER]))
    await ctx.plugin.start_instance(instance.id)
    await wait_for(ctx, instance.id, ("running",), "start")
    deadline = time.monotonic() + ctx.timeout_s
    while b"ready" not in (await ctx.plugin.logs(instance.id, 0, 100)).data():
        _require(time.monotonic() < deadline, "the running program's output never appeared in its log")
        await asyncio.sleep(0.05)
    _require((await ctx.plugin.get_instance(instance.id)).state == "running", "it should still run")
    await ctx.plugin.stop_instance(instance.id)
    first = await wait_for(ctx, instance.id, ENDED, "stop")
    _require(
        (first.state, first.reason) == ("stopped", "stopped"), f"stop ended {first.state}/{first.reason}"
    )
    second = await ctx.plugin.stop_instance(instance.id)
    _require(
        (second.state, second.reason, second.ended_ms) == (first.state, first.reason, first.ended_ms),
        "a second stop changed the instance",
    )
    await _done(ctx)
    return "logs while running; stop, stop again"


TASK_CHECKS: tuple[tuple[str, Callable[[CheckContext], Awaitable[str]]], ...] = (
    ("task run", check_task_run),
    ("input mismatch", check_input_mismatch),
    ("failures", check_failures),
    ("time limit", check_time_limit),
    ("stop twice", check_stop_twice),
)
