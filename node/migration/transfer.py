"""The `transferring` step: the data express moves the state files straight from the source pool's
storage endpoint to the destination's, within the path's bandwidth, while the node follows it.

The node creates one express job per attempt (`ID.tN`); creating it again is idempotent, so a
restarted node follows the job it had started. A pool that restarted meanwhile answers with a
new endpoint (another port or token): the node then starts the next attempt, which goes on from
what the destination already committed. While the job runs the node writes its progress (only
while the migration is still `transferring`, which is how a cancel stops the step), resumes a job
that stalled on transient errors (`transfer_resumes` times), and looks at the path about once a
second: a path that broke is re-provisioned once (the job's rate follows the new path), a second
break fails the migration into its rollback. A transfer that made no progress for `stall_s` while
the destination's storage endpoint refuses connections (or lets them time out) twice in a row,
a second apart (a partner or pool that died), fails at once into its rollback, rather than after
the express's retries. Only JSON crosses the node's
connections.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from connectors.contract import StorageEndpoint
from connectors.errors import NoPath
from connectors.express import ExpressRefused, JobSpec, JobView
from connectors.manifest import Manifest
from node.migration import partner, store
from node.migration.errors import StepFailed
from node.migration.records import Migration

if TYPE_CHECKING:
    from node.migration.steps import Steps

PATH_CHECK_S = 1.0
PROBE_EVERY_S = 1.0  # a stalled transfer's destination is looked at this often
PROBE_TIMEOUT_S = 3.0
PROBES_TO_FAIL = 2  # unreachable this many times in a row (and no progress): the step fails
BYTES_PER_S_PER_MBPS = 125_000


class StallWatch:
    """When a transfer last moved: its bytes, chunks or files done changed (`now` is monotonic)."""

    def __init__(self, stall_s: float, now: float) -> None:
        self.stall_s = stall_s
        self._seen: tuple[int, int, int] | None = None
        self._since = now

    def idle_s(self, view: JobView, now: float) -> float:
        """Seconds since the job's progress last changed (0 when it just did)."""
        done = view.progress
        mark = (done.bytes_done, done.chunks_done, done.files_done)
        if mark != self._seen:
            self._seen, self._since = mark, now
        return now - self._since

    def stalled(self, view: JobView, now: float) -> bool:
        """Whether the job has not moved for `stall_s` seconds."""
        return self.idle_s(view, now) >= self.stall_s


def rate_cap(m: Migration) -> int:
    """The job's bandwidth cap in bytes/s: the reserved path's bandwidth (0, no cap, without a path);
    to a partner's pool (no path of ours reaches it) the bandwidth the migration asked for."""
    if m.partner is not None:
        return m.bandwidth_mbps * BYTES_PER_S_PER_MBPS
    if m.path is None:
        return 0
    return int(m.path["bandwidth_mbps"]) * BYTES_PER_S_PER_MBPS


def job_id(m: Migration) -> str:
    """The express job of the migration's current transfer attempt."""
    return f"{m.id}.t{m.transfer_attempts}"


def progress_of(view: JobView) -> dict[str, Any]:
    """What a migration shows of its transfer: the job's progress, its state and its last error."""
    progress = view.progress.model_dump(mode="json")
    error = view.error or view.progress.last_error
    progress["last_error"] = None if error is None else f"{error.code}: {error.message}"
    progress["job"] = view.id
    progress["express_state"] = view.state
    progress["rate_cap_bytes_per_s"] = view.rate_cap_bytes_per_s
    return progress


async def _start(
    steps: Steps, m: Migration, source: StorageEndpoint, destination: StorageEndpoint
) -> Migration:
    """Create (or find again) the express job of this attempt; the next attempt if the endpoints changed."""
    core = steps.core
    express = core.express()
    settings = core.settings
    for _ in range(2):
        manifest = m.checkpoint.get("manifest") if m.checkpoint else None
        spec = JobSpec(
            id=job_id(m),
            source=source,
            destination=destination,
            manifest=None if manifest is None else Manifest.model_validate(manifest),
            chunk_bytes=settings.chunk_bytes,
            workers=settings.workers,
            rate_cap_bytes_per_s=rate_cap(m),
        )
        try:
            await express.create(spec)
        except ExpressRefused as exc:
            if exc.status != 409:
                raise StepFailed(
                    f"the data express refused the transfer: {exc}", code="express_refused"
                ) from None
            try:
                await express.job(job_id(m))
            except ExpressRefused:
                raise StepFailed(
                    f"the data express refused the transfer: {exc}", code="express_refused"
                ) from None
            # The job of this attempt exists with other endpoints (a pool restarted): a new attempt.
            await steps.note(
                m, f"job {job_id(m)} has other endpoints; a new attempt goes on from the destination"
            )
            m = await steps.record(m, transfer_attempts=m.transfer_attempts + 1)
            continue
        if m.express_job != job_id(m):
            m = await steps.record(m, express_job=job_id(m))
        return m
    raise StepFailed("the data express keeps refusing the transfer's endpoints", code="express_refused")


async def _check_path(steps: Steps, m: Migration) -> Migration:
    """Look at the path; re-provision it once if it broke (StepFailed the second time)."""
    if m.network is None or m.path_id is None:
        return m
    network, path_id = m.network, m.path_id
    current = await steps.core.network(network, lambda n: n.status(path_id))
    if current.state == "active":
        return m
    broken = f"path_broken: path {path_id} is {current.state}"
    if m.path_reprovisions >= 1:
        raise StepFailed(f"{broken} after it was re-provisioned once", code="path_broken")
    await steps.note(m, f"{broken}: re-provisioning it once")
    await steps.release_path(network, path_id)
    try:
        path = await steps.provision(m)
    except NoPath as exc:
        raise StepFailed(f"{broken} and no other path is free: {exc}", code="path_broken") from None
    m = await steps.record(
        m,
        path_id=path.id,
        path=path.model_dump(mode="json"),
        path_reprovisions=m.path_reprovisions + 1,
        last_error=broken,
    )
    await steps.core.express().set_rate(job_id(m), rate_cap(m))
    await steps.note(
        m, f"path {path.id}: {' → '.join(path.hops)}, {path.bandwidth_mbps} Mbit/s (re-provisioned)"
    )
    return m


async def run(steps: Steps, m: Migration) -> Migration | None:
    """Move the state files and follow the job to its end (see the module's docstring)."""
    core = steps.core
    source_pool, source_id = m.source_pool, m.source_instance
    pool, instance_id = m.destination_pool or "", m.destination_instance or ""
    source = await core.compute(source_pool, lambda p: p.storage_endpoint(source_id))
    if m.partner is not None:  # the partner pool's endpoint, with a credential for these files only
        destination = await partner.credential(core, m)
    else:
        destination = await core.compute(pool, lambda p: p.storage_endpoint(instance_id))
    m = await _start(steps, m, source, destination)
    express = core.express()
    next_path_check = next_probe = 0.0
    watch = StallWatch(core.settings.stall_s, time.monotonic())
    unreachable = 0  # probes in a row that found the destination's storage endpoint unreachable
    while True:
        view = await express.job(job_id(m))
        # A transfer that answers again starts its tries afresh: hiccups hours apart do not add up.
        fresh = {"attempts": 0} if m.attempts else {}
        written = await core.db(
            store.update_migration, m.id, core.clock(), "transferring", progress=progress_of(view), **fresh
        )
        if written is None:
            return None  # cancelled meanwhile: the undo cancels the job
        m = written
        if view.state == "completed":
            done = view.progress
            detail = f"{done.bytes_done} bytes in {done.chunks_done} chunks, {done.retries} retries"
            return await steps.move(m, "transferred", detail)
        if view.state == "failed":
            error = view.error
            if error is not None and not error.fatal and m.transfer_resumes < core.settings.transfer_resumes:
                await express.resume(view.id)
                m = await steps.record(m, transfer_resumes=m.transfer_resumes + 1)
                await steps.note(m, f"transfer stalled ({error.code}: {error.message}); resumed")
                continue
            what = f"{error.code}: {error.message}" if error is not None else "no reason given"
            raise StepFailed(f"the transfer failed: {what}", code="transfer_failed")
        if view.state in ("cancelling", "cancelled"):
            raise StepFailed("the transfer was cancelled at the data express", code="transfer_failed")
        if time.monotonic() >= next_path_check:
            m = await _check_path(steps, m)
            next_path_check = time.monotonic() + PATH_CHECK_S
        if not watch.stalled(view, time.monotonic()):
            unreachable = 0
        elif time.monotonic() >= next_probe:
            next_probe = time.monotonic() + PROBE_EVERY_S
            reachable = await core.storage_reachable(destination, PROBE_TIMEOUT_S)
            unreachable = 0 if reachable else unreachable + 1
            if unreachable >= PROBES_TO_FAIL:
                idle = watch.idle_s(view, time.monotonic())
                raise StepFailed(
                    f"transfer_stalled: no progress for {idle:.1f} s and the destination's storage "
                    f"endpoint at {destination.url} does not answer",
                    code="transfer_stalled",
                )
        await asyncio.sleep(core.settings.poll_interval_s)
