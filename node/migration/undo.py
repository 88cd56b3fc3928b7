"""The undo of a migration (`rolling_back`, `cancelling`): the forward steps taken back in reverse
order (node.migration.machine.UNDO_ORDER), each idempotent and judged by what exists now, not by
what the record says was done:

- transfer: every express job of the migration still going is cancelled (the express removes what
  it wrote at the destination) and followed until it ends;
- source: a source the migration stopped (stopped on request, with a checkpoint taken) is started
  again from its own state, unless the cutover committed; a source that ended by itself stays so;
- destination: the destination instance (by id, or by its name) is deleted; a partner's is
  released by the partner and its order cancelled (node.migration.partner);
- path: the path is released.

Each undo is tried `step_attempts` times; those done are written down (`undo`), so a restarted
node goes on with the rest. An undo that keeps failing is not dropped: the migration moves to
`needs_attention` with what failed, and `retry` runs the undo again.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from connectors.errors import NotFound
from connectors.express import ExpressRefused
from connectors.express.jobs import TERMINAL
from node.migration import partner
from node.migration.errors import describe
from node.migration.machine import UNDO_ORDER, UndoStep, undo_event
from node.migration.records import Migration

if TYPE_CHECKING:
    from node.migration.steps import Steps

CANCEL_WAIT_S = 60.0


async def _transfer(steps: Steps, m: Migration) -> str:
    if m.express_job is None:
        return "no transfer to cancel"
    express = steps.core.express()
    cancelled = []
    for attempt in range(m.transfer_attempts + 1):
        job_id = f"{m.id}.t{attempt}"
        try:
            view = await express.job(job_id)
        except ExpressRefused as exc:
            if exc.status == 404:
                continue
            raise
        if view.state in ("queued", "running") or (
            view.state == "failed" and not (view.error and view.error.fatal)
        ):
            view = await express.cancel(job_id)
        deadline = asyncio.get_running_loop().time() + CANCEL_WAIT_S
        while view.state not in TERMINAL:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"express job {job_id} is still {view.state}")
            await asyncio.sleep(steps.core.settings.poll_interval_s)
            view = await express.job(job_id)
        cancelled.append(f"{job_id} {view.state}")
    return "jobs: " + (", ".join(cancelled) or "none at the express")


async def _source(steps: Steps, m: Migration) -> str:
    core = steps.core
    if m.committed_ms is not None:
        return "the cutover committed: the destination is authoritative"
    pool, instance_id = m.source_pool, m.source_instance
    source = await core.instance(pool, instance_id)
    if source.state in ("running", "starting"):
        return f"source {instance_id} runs"
    if source.state == "stopped" and source.reason == "stopped" and m.checkpoint is not None:
        await core.compute(pool, lambda p: p.start_instance(instance_id, restore=True))
        started = await core.wait_instance(
            pool, instance_id, lambda i: i.state != "starting", core.settings.start_timeout_s, "restarting"
        )
        if started.state == "failed":
            raise RuntimeError(
                f"source {instance_id} failed when started again: {started.reason} {started.detail}"
            )
        return f"source {instance_id} started again from its checkpoint ({started.state})"
    return f"source {instance_id} is {source.state} ({source.reason}); left as it is"


async def _destination(steps: Steps, m: Migration) -> str:
    if m.partner is not None:
        return await partner.release(steps.core, m)
    if m.destination_pool is None:
        return "no destination"
    destination = await steps.find_destination(m)
    if destination is None or destination.state == "deleted":
        return "no destination instance"
    pool, instance_id = m.destination_pool, destination.id
    with contextlib.suppress(NotFound):
        await steps.core.compute(pool, lambda p: p.delete_instance(instance_id))
    return f"instance {instance_id} on {pool} deleted"


async def _path(steps: Steps, m: Migration) -> str:
    if m.network is None or m.path_id is None:
        return "no path"
    await steps.release_path(m.network, m.path_id)
    return f"path {m.path_id} released"


UNDO = {"transfer": _transfer, "source": _source, "destination": _destination, "path": _path}


async def run(steps: Steps, m: Migration) -> Migration | None:
    """Undo what the migration did, in reverse order; then rolled back / cancelled, or needs attention."""
    settings = steps.core.settings
    done: list[UndoStep] = list(m.undo)
    failures: list[str] = []
    for name in UNDO_ORDER:
        if name in done:
            continue
        for attempt in range(1, settings.step_attempts + 1):
            try:
                outcome = await UNDO[name](steps, m)
            except Exception as exc:  # every failure is kept: after the last try it needs attention
                error = describe(exc)
                await steps.note(m, f"undo {name}, try {attempt}: {error}")
                if attempt == settings.step_attempts:
                    failures.append(f"{name}: {error}")
                else:
                    await asyncio.sleep(settings.retry_delay_s * min(8, 1 << (attempt - 1)))
                continue
            done.append(name)
            m = await steps.record(m, undo=done)
            await steps.note(m, f"undo {name}: {outcome}")
            break
    if failures:
        reason = f"{m.reason or m.state}; undo failed: {'; '.join(failures)}"
        return await steps.move(m, "undo_failed", reason, reason=reason)
    return await steps.move(m, undo_event(m.state), "undone: " + ", ".join(done))
