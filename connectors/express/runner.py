"""The express's jobs at run time: creating, running, cancelling and resuming them, every state
change stored first (`JobStore`), and the relay memory they hold kept within a budget.

A job holds workers × chunk bytes of the budget while it runs; a job that does not fit waits
`queued` (in creation order). At most `max_open_jobs` jobs are unfinished at once. Stopping the express (`close`) leaves every job's stored state as it
is, so the next start runs `queued`/`running` jobs again from the destination's committed-chunk
maps and finishes the clean-up of `failing`/`cancelling` ones. Clean-up removes every path of the
manifest at the destination (open uploads and committed files), each tried `CLEANUP_ATTEMPTS`
times; once the destination does not answer (connection refused, timeout) the remaining paths are
not tried: the job ends with the paths left behind in its error, promptly, so an undo waiting for
it is not held up by a destination that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from typing import Any

import aiohttp

from connectors.express.endpoints import StorageClient
from connectors.express.errors import JobConflict, JobNotFound, Stalled, TransferError, UploadLost
from connectors.express.jobs import TERMINAL, JobError, JobEvent, JobRecord, JobSpec, JobView, same_request
from connectors.express.progress import Progress
from connectors.express.ratelimit import TokenBucket
from connectors.express.relay import Backoff, Transfer, with_retries
from connectors.express.store import JobStore
from connectors.stopping import stop_tasks

log = logging.getLogger(__name__)
CLEANUP_ATTEMPTS = 3
_UNREACHABLE = frozenset({"connection_failed", "timeout"})


def now_ms() -> int:
    """UTC epoch milliseconds."""
    return int(time.time() * 1000)


class Job:
    """One job in the running express: record, progress, rate bucket, task and change signal."""

    def __init__(self, record: JobRecord) -> None:
        self.record = record
        self.progress = Progress(changed=self.touch)
        self.bucket = TokenBucket(record.rate_cap_bytes_per_s)
        self.task: asyncio.Task[None] | None = None
        self.holds_bytes = 0
        self.version = 0
        self._changed = asyncio.Event()

    def touch(self) -> None:
        """Signal a change to whoever waits in `wait_change`."""
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_change(self, seen: int, timeout_s: float) -> None:
        """Return once the version differs from `seen`, or after `timeout_s`."""
        if self.version != seen:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._changed.wait()

    def view(self) -> JobView:
        """The job as the control API shows it."""
        return self.record.view(self.progress.snapshot())


def _session(spec: JobSpec) -> aiohttp.ClientSession:
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=min(10, spec.request_timeout_s), sock_read=spec.request_timeout_s
    )
    connector = aiohttp.TCPConnector(limit=2 * spec.workers + 2)
    return aiohttp.ClientSession(timeout=timeout, connector=connector, read_bufsize=1 << 20)


class Express:
    """Every job of one express process."""

    def __init__(self, store: JobStore, max_buffer_bytes: int = 1 << 30, max_open_jobs: int = 256) -> None:
        self.store = store
        self.max_buffer_bytes = max_buffer_bytes
        self.max_open_jobs = max_open_jobs
        self.jobs: dict[str, Job] = {}
        self.buffer_bytes_used = 0
        self.closing = False

    async def start(self) -> None:
        """Load the stored jobs; run the active ones and finish pending clean-ups."""
        for record in self.store.load():
            self.jobs[record.id] = Job(record)
        for job in self.ordered():
            if job.record.state in ("failing", "cancelling"):
                job.task = asyncio.create_task(self._clean(job))
        self._schedule()

    async def close(self) -> None:
        """Stop every task without changing stored states (they resume at the next start)."""
        self.closing = True
        tasks = [job.task for job in self.jobs.values() if job.task is not None]
        await stop_tasks(tasks, "an express job")

    def get(self, job_id: str) -> Job:
        """The job `job_id`, or JobNotFound."""
        job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r}")
        return job

    def ordered(self) -> list[Job]:
        """Every job, oldest first."""
        return sorted(self.jobs.values(), key=lambda job: (job.record.created_ms, job.record.id))

    def create(self, spec: JobSpec) -> tuple[Job, bool]:
        """Store and queue a job: (job, created). The same id with the same request is the same job."""
        job_id = spec.id or f"xj-{secrets.token_hex(6)}"
        existing = self.jobs.get(job_id)
        if existing is not None:
            if same_request(existing.record.spec, spec.model_copy(update={"id": job_id})):
                return existing, False
            raise JobConflict(f"job {job_id!r} exists with a different request")
        if sum(job.record.state not in TERMINAL for job in self.jobs.values()) >= self.max_open_jobs:
            raise JobConflict(f"{self.max_open_jobs} jobs are not finished yet; finish or cancel some first")
        if spec.buffer_bytes > self.max_buffer_bytes:
            raise JobConflict(
                f"workers × chunk_bytes = {spec.buffer_bytes} bytes exceeds this express's buffer budget "
                f"of {self.max_buffer_bytes} bytes"
            )
        stamp = now_ms()
        record = JobRecord(
            id=job_id,
            spec=spec.model_copy(update={"id": job_id}),
            state="queued",
            rate_cap_bytes_per_s=spec.rate_cap_bytes_per_s,
            created_ms=stamp,
            updated_ms=stamp,
        )
        job = self.jobs[job_id] = Job(record)
        self._save()
        self._schedule()
        return job, True

    def set_rate(self, job_id: str, rate_bytes_per_s: int) -> Job:
        """Change a job's bandwidth cap (0: none); applies to the next slice each worker sends."""
        job = self.get(job_id)
        job.record = job.record.model_copy(
            update={"rate_cap_bytes_per_s": rate_bytes_per_s, "updated_ms": now_ms()}
        )
        self._save()
        job.bucket.set_rate(rate_bytes_per_s)
        job.touch()
        return job

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job: stop its transfer and remove its files at the destination (in the background).
        Cancelling a job being cancelled or cancelled changes nothing."""
        job = self.get(job_id)
        before = job.record.state
        self._move(job, "cancel")
        if before in ("cancelling", "cancelled"):
            return job
        if job.task is not None:
            await stop_tasks([job.task], f"express job {job_id}")
        job.task = asyncio.create_task(self._clean(job))
        return job

    def resume(self, job_id: str) -> Job:
        """Queue a job that stalled (its partial uploads kept) to run again."""
        job = self.get(job_id)
        self._move(job, "resume", error=None)
        self._schedule()
        return job

    def _move(self, job: Job, event: JobEvent, **changes: Any) -> None:
        job.record = job.record.moved(event, now_ms(), **changes)
        self._save()
        job.touch()

    def _save(self) -> None:
        kept = {record.id for record in self.store.save(job.record for job in self.jobs.values())}
        for job_id in set(self.jobs) - kept:
            del self.jobs[job_id]

    def _schedule(self) -> None:
        """Start waiting jobs, oldest first, while the buffer budget allows."""
        if self.closing:
            return
        for job in self.ordered():
            if job.record.state not in ("queued", "running") or job.task is not None:
                continue
            need = job.record.spec.buffer_bytes
            if self.buffer_bytes_used + need > self.max_buffer_bytes:
                break
            self.buffer_bytes_used += need
            job.holds_bytes = need
            job.task = asyncio.create_task(self._run(job))

    async def _run(self, job: Job) -> None:
        try:
            if job.record.state == "queued":
                self._move(job, "start")
            await self._transfer(job)
            self._move(job, "complete")
        except Stalled as exc:
            self._move(job, "stall", error=JobError(code=exc.code, message=str(exc), fatal=False))
        except TransferError as exc:
            if not exc.fatal:  # a transient error with no retry left to it: keep what arrived
                self._move(job, "stall", error=JobError.model_validate(exc.as_json()))
                return
            self._move(job, "fatal", error=JobError.model_validate(exc.as_json()))
            await self._clean(job, own_task=False)
        except Exception as exc:  # a fault of the express itself: stop, keep what arrived, say why
            log.exception("job %s stopped by an unexpected error", job.record.id)
            error = JobError(code="internal_error", message=f"{type(exc).__name__}: {exc}", fatal=False)
            self._move(job, "stall", error=error)
        finally:
            self.buffer_bytes_used -= job.holds_bytes
            job.holds_bytes = 0
            if job.task is asyncio.current_task():
                job.task = None
            self._schedule()

    async def _transfer(self, job: Job) -> None:
        spec = job.record.spec
        backoff = Backoff(spec)
        async with _session(spec) as session:
            source = StorageClient(session, spec.source, "source")
            destination = StorageClient(session, spec.destination, "destination")
            try:
                await self._run_transfer(job, spec, backoff, source, destination)
            finally:
                source.close()
                destination.close()

    async def _run_transfer(
        self, job: Job, spec: JobSpec, backoff: Backoff, source: StorageClient, destination: StorageClient
    ) -> None:
        """Fetch the manifest if the job has none, then run the transfer until every file is committed."""
        manifest = spec.manifest
        if manifest is None:
            manifest = await with_retries(lambda: source.manifest(spec.chunk_bytes), backoff, job.progress)
            job.record = job.record.model_copy(
                update={"spec": spec.model_copy(update={"manifest": manifest})}
            )
            self._save()
        runs = 0
        while True:  # a destination that lost an upload gets a fresh run, which opens every file again
            try:
                await Transfer(spec, manifest, source, destination, job.bucket, job.progress).run()
                return
            except UploadLost as exc:
                runs += 1
                if runs >= spec.max_attempts:
                    raise Stalled(exc, runs) from None
                job.progress.retry(exc.as_json())

    async def _clean(self, job: Job, own_task: bool = True) -> None:
        """Remove the manifest's paths at the destination, then move the job on (`cleaned`)."""
        spec = job.record.spec
        leftovers: list[str] = []
        backoff = Backoff(spec.model_copy(update={"max_attempts": min(spec.max_attempts, CLEANUP_ATTEMPTS)}))
        try:
            if spec.manifest is not None:
                async with _session(spec) as session:
                    destination = StorageClient(session, spec.destination, "destination")
                    unreachable: str | None = None
                    for item in spec.manifest.files:
                        if unreachable is not None:
                            leftovers.append(f"{item.path} (not tried: {unreachable})")
                            continue
                        try:
                            remove = functools.partial(destination.remove, item.path)
                            await with_retries(remove, backoff, job.progress)
                        except (TransferError, Stalled) as exc:
                            leftovers.append(f"{item.path} ({exc})")
                            if exc.code in _UNREACHABLE:
                                unreachable = f"the destination does not answer: {exc.code}"
            changes: dict[str, Any] = {}
            if leftovers:
                note = f"could not remove at the destination: {'; '.join(leftovers)}"
                error = job.record.error
                message = f"{error.message}; {note}" if error else note
                changes["error"] = JobError(
                    code=error.code if error else "cleanup_failed", message=message, fatal=True
                )
            self._move(job, "cleaned", **changes)
        finally:
            if own_task and job.task is asyncio.current_task():
                job.task = None
