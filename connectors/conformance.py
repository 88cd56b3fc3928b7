"""The compute plugin contract as executable checks, shared by the test kit and `cpnode plugins check`.

`run_checks(plugin, program)` runs every check in order against a started plugin and returns one
result per check. The lifecycle checks create one instance, deploy `program` (which must follow
the checkpoint protocol of its pool), start, checkpoint, exercise the storage endpoint (listing,
a byte range, a two-chunk resumable write), stop and delete it; the run checks
(`connectors.conformance_tasks`) each use an instance of their own. A live pool is left as found.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp

from connectors.conformance_context import CheckContext, CheckResult, ContractViolation
from connectors.conformance_context import require as _require
from connectors.conformance_tasks import TASK_CHECKS, wait_for
from connectors.contract import ComputePlugin, InstanceSpec, Program
from connectors.errors import ConnectorError, InvalidRequest, NotFound
from connectors.metric import CPU_CHIP, load_chips

__all__ = ["CHECKS", "CheckContext", "CheckResult", "ContractViolation", "run_checks"]


async def check_info(ctx: CheckContext) -> str:
    info = await ctx.plugin.info()
    _require(
        info.name == ctx.plugin.name, f"info.name {info.name!r} is not the plugin's name {ctx.plugin.name!r}"
    )
    _require(info.kind == "compute", "a compute plugin must say kind 'compute'")
    _require(
        info.contract == "2", f"the plugin speaks contract {info.contract!r}; this kit checks contract 2"
    )
    images = info.capabilities.images
    _require(
        images != "mapped" or bool(info.capabilities.frameworks), "images 'mapped' must list the frameworks"
    )
    return f"{info.name} {info.version} ({info.platform}), contract {info.contract}, images {images}"


async def check_health(ctx: CheckContext) -> str:
    health = await ctx.plugin.health()
    _require(health.ok, f"health is not ok: {health.detail}")
    return "ok"


async def check_account(ctx: CheckContext) -> str:
    account = await ctx.plugin.ensure_account()
    _require(account.authenticated, "account is not authenticated")
    return account.account_id


async def check_data_source(ctx: CheckContext) -> str:
    data = ctx.data = await ctx.plugin.data_source()
    regions, flavors = {r.id for r in data.regions}, {f.id for f in data.flavors}
    _require(bool(regions) and bool(flavors), "data source has no regions or no flavors")
    chips = load_chips()
    for flavor in data.flavors:
        _require(
            flavor.chip_model == CPU_CHIP or flavor.chip_model in chips,
            f"flavor {flavor.id} names chip {flavor.chip_model!r}, not in the chip catalogue",
        )
    pairs = [(p.region_id, p.flavor_id) for p in data.prices] + [
        (c.region_id, c.flavor_id) for c in data.capacity
    ]
    for region, flavor_id in pairs:
        _require(
            region in regions and flavor_id in flavors, f"prices/capacity name unknown {region}/{flavor_id}"
        )
    for cap in data.capacity:
        _require(cap.free <= cap.total, f"capacity of {cap.flavor_id} has free > total")
    shared = {s.region_id: s for s in data.shared}
    for pool in data.shared:
        _require(
            pool.region_id in regions and pool.free <= pool.total, f"shared capacity of {pool.region_id}"
        )
    for cap in data.capacity:
        room = shared.get(cap.region_id)
        _require(
            not cap.cost or (room is not None and cap.free * cap.cost <= room.free),
            f"{cap.flavor_id} costs {cap.cost} of {cap.region_id}'s shared capacity, which must be declared "
            "with room for its free instances",
        )
    if any(f.chip_model == CPU_CHIP for f in data.flavors):
        _require(data.measurement is not None, "CPU-only flavors need the pool's measurement")
    return f"{len(regions)} regions, {len(flavors)} flavors, {len(data.prices)} prices"


async def check_lifecycle(ctx: CheckContext) -> str:
    assert ctx.data is not None, "data source check runs first"
    free = sorted((c for c in ctx.data.capacity if c.free > 0), key=lambda c: (c.flavor_id, c.region_id))
    _require(bool(free), "no free capacity to create a test instance")
    spec = InstanceSpec(name="conformance", region_id=free[0].region_id, flavor_id=free[0].flavor_id)
    created = ctx.instance = await ctx.plugin.create_instance(spec)
    _require(created.state == "stopped", f"a new instance must be 'stopped', got {created.state!r}")
    _require(created.id in {i.id for i in await ctx.plugin.list_instances()}, "new instance is not listed")
    deployed = await ctx.plugin.deploy(created.id, ctx.program)
    _require(deployed.program is not None, "deploy did not record the program")
    started = await ctx.plugin.start_instance(created.id)
    _require(started.state in ("starting", "running"), f"start must make it 'running', got {started.state!r}")
    running = await wait_for(ctx, created.id, ("running", "stopped", "failed"), "start")
    _require(running.state == "running", f"the program ended at once: {running.reason} {running.detail}")
    _require(
        running.started_ms is not None and running.ended_ms is None, "a running program has started_ms only"
    )
    return f"{created.id} created, deployed, running"


async def check_checkpoint(ctx: CheckContext) -> str:
    assert ctx.instance is not None
    checkpoint = await ctx.plugin.checkpoint(ctx.instance.id, ctx.timeout_s)
    _require(bool(checkpoint.files), "a checkpoint must name at least one state file")
    second = await ctx.plugin.checkpoint(ctx.instance.id, ctx.timeout_s)
    _require(second.seq > checkpoint.seq, "checkpoint sequence numbers must increase")
    ctx.notes["checkpoint"] = second
    return f"seq {second.seq}, {len(second.files)} file(s)"


async def check_storage(ctx: CheckContext) -> str:
    assert ctx.instance is not None
    storage = await ctx.plugin.storage_endpoint(ctx.instance.id)
    base = f"{storage.url}/storage/v1/{storage.bucket}"
    auth = {"Authorization": f"Bearer {storage.token}"}
    payload = bytes(range(256)) * 64
    digest = hashlib.sha256(payload).hexdigest()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ctx.timeout_s)) as session:
        async with session.get(base, headers=auth) as response:
            _require(response.status == 200, f"listing answered {response.status}")
            listed = {f["path"] for f in (await response.json())["files"]}
        first = ctx.notes["checkpoint"].files[0]
        _require(first.path in listed, f"checkpoint file {first.path} is not in the storage listing")
        async with session.get(f"{base}/{first.path}", headers={**auth, "Range": "bytes=0-0"}) as response:
            _require(
                response.status == 206 and len(await response.read()) == min(1, first.size_bytes),
                f"a byte range read answered {response.status}",
            )
        half = len(payload) // 2
        for start, chunk in ((0, payload[:half]), (half, payload[half:])):
            headers = {
                **auth,
                "Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{len(payload)}",
                "X-Content-SHA256": digest,
            }
            async with session.put(f"{base}/conformance.bin", data=chunk, headers=headers) as response:
                expected = 202 if start == 0 else 201
                _require(response.status == expected, f"chunk at {start} answered {response.status}")
        async with session.get(f"{base}/conformance.bin", headers=auth) as response:
            _require(await response.read() == payload, "the chunked write did not read back intact")
        async with session.delete(f"{base}/conformance.bin", headers=auth) as response:
            _require(response.status == 204, f"delete answered {response.status}")
        async with session.get(base, headers={"Authorization": "Bearer wrong"}) as response:
            _require(response.status == 401, "storage accepted a wrong token")
    return f"{storage.url} bucket {storage.bucket}: list, range, chunked write"


async def check_stop_delete(ctx: CheckContext) -> str:
    assert ctx.instance is not None
    stopped = await ctx.plugin.stop_instance(ctx.instance.id)
    _require(stopped.state == "stopped", f"stop must make it 'stopped', got {stopped.state!r}")
    deleted = await ctx.plugin.delete_instance(ctx.instance.id)
    _require(deleted.state == "deleted", f"delete must make it 'deleted', got {deleted.state!r}")
    again = await ctx.plugin.delete_instance(ctx.instance.id)
    _require(again.state == "deleted", "deleting twice must not fail")
    _require(
        ctx.instance.id not in {i.id for i in await ctx.plugin.list_instances()}, "deleted instance is listed"
    )
    ctx.instance = None
    return "stopped and deleted"


async def check_errors(ctx: CheckContext) -> str:
    try:
        await ctx.plugin.get_instance("no-such-instance-0")
    except NotFound:
        pass
    else:
        raise ContractViolation("an unknown instance must raise NotFound")
    assert ctx.data is not None
    region = ctx.data.regions[0].id
    try:
        await ctx.plugin.create_instance(
            InstanceSpec(name="bad", region_id=region, flavor_id="no-such-flavor")
        )
    except (NotFound, InvalidRequest):
        pass
    else:
        raise ContractViolation("an unknown flavor must raise NotFound or InvalidRequest")
    return "NotFound for unknown ids and flavors"


CHECKS: tuple[tuple[str, Callable[[CheckContext], Awaitable[str]]], ...] = (
    ("info", check_info),
    ("health", check_health),
    ("account", check_account),
    ("data source", check_data_source),
    ("lifecycle", check_lifecycle),
    ("checkpoint", check_checkpoint),
    ("storage endpoint", check_storage),
    ("stop and delete", check_stop_delete),
    ("errors", check_errors),
    *TASK_CHECKS,
)
_NEEDS_LIFECYCLE = ("checkpoint", "storage endpoint", "stop and delete")
_OWN_INSTANCE = {name for name, _check in TASK_CHECKS}


async def run_checks(
    plugin: ComputePlugin, program: Program, timeout_s: float = 30.0, python: list[str] | None = None
) -> list[CheckResult]:
    """Run every check in order; a failed check is recorded and the dependent ones are skipped.
    `python` runs the run checks' scripts on the pool (default: this interpreter)."""
    ctx = CheckContext(plugin=plugin, program=program, timeout_s=timeout_s, python=python or [sys.executable])
    results: list[CheckResult] = []
    broken = False
    for name, check in CHECKS:
        if broken and (name in _NEEDS_LIFECYCLE or ctx.data is None):
            results.append(CheckResult(name, False, "skipped: an earlier check failed", 0))
            continue
        if ctx.instance is not None and name in _OWN_INSTANCE:  # an earlier check left its instance
            with contextlib.suppress(ConnectorError):
                await plugin.delete_instance(ctx.instance.id)
            ctx.instance = None
        started = time.perf_counter()
        try:
            detail, passed = await check(ctx), True
        except (ContractViolation, ConnectorError, AssertionError, aiohttp.ClientError, TimeoutError) as exc:
            detail, passed = f"{type(exc).__name__}: {exc}", False
            broken = broken or name in ("data source", "lifecycle", "checkpoint")
        results.append(CheckResult(name, passed, detail, round((time.perf_counter() - started) * 1000)))
    if ctx.instance is not None:  # leave the pool as found
        with contextlib.suppress(ConnectorError):
            await plugin.delete_instance(ctx.instance.id)
    await ctx.inputs.close()
    return results
