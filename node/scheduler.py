"""Scheduled jobs on APScheduler's asyncio scheduler, each guarded by a database lease.

Components register jobs with `add_interval_job`. Each tick first takes (or renews) the job's lease
in the shared database, so with several replicas exactly one runs each job; the others record a
`skipped` run. The lease lasts at least two intervals, so the holder keeps it while it is alive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.engine import Engine

from node import leases
from node.db import in_thread, log_failure
from node.metrics import Metrics

log = logging.getLogger("cpnode.scheduler")
JobFn = Callable[[], Awaitable[object]]


class JobError(KeyError):
    """No job has this id."""


@dataclass
class JobState:
    """What the scheduler knows about one job, for status pages and tests."""

    job_id: str
    every_s: float
    func: JobFn
    lease: bool
    runs: int = 0
    last_outcome: str | None = None
    last_error: str | None = None
    last_run_ms: int | None = None


class JobScheduler:
    """Runs registered coroutine jobs at intervals, one replica per job via database leases."""

    def __init__(self, engine: Engine, holder: str, lease_ttl_s: int, metrics: Metrics) -> None:
        self._engine = engine
        self._holder = holder
        self._lease_ttl_s = lease_ttl_s
        self._metrics = metrics
        self._jobs: dict[str, JobState] = {}
        self._scheduler: AsyncIOScheduler | None = None
        self._inflight: set[asyncio.Task[object]] = set()
        self._lease_calls: set[asyncio.Future[bool]] = set()

    @property
    def running(self) -> bool:
        """Whether the scheduler has been started and not stopped."""
        return self._scheduler is not None and bool(self._scheduler.running)

    def jobs(self) -> list[JobState]:
        """Every registered job, in registration order."""
        return list(self._jobs.values())

    def add_interval_job(self, job_id: str, func: JobFn, every_s: float, *, lease: bool = True) -> None:
        """Run `func` every `every_s` seconds (first run one interval after start)."""
        if job_id in self._jobs:
            raise ValueError(f"job {job_id!r} is already registered")
        if every_s <= 0:
            raise ValueError(f"job {job_id!r}: interval must be positive, got {every_s}")
        self._jobs[job_id] = JobState(job_id, every_s, func, lease)
        if self._scheduler is not None:
            self._schedule(self._jobs[job_id])

    def _schedule(self, job: JobState) -> None:
        assert self._scheduler is not None
        self._scheduler.add_job(
            self.run_job,
            "interval",
            seconds=job.every_s,
            args=[job.job_id],
            id=job.job_id,
            max_instances=1,
            # A tick the event loop reaches late (a busy machine, a long job) still runs, once:
            # APScheduler would otherwise skip a tick later than its grace time and wait a whole
            # interval more; coalesce folds the ticks missed meanwhile into that one run.
            coalesce=True,
            misfire_grace_time=None,
        )

    async def run_job(self, job_id: str) -> str:
        """Run one tick of a job now (taking its lease first); return ok, error, skipped or cancelled."""
        job = self._jobs.get(job_id)
        if job is None:
            raise JobError(job_id)
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        started = time.monotonic()
        try:
            outcome = await self._run(job)
        except asyncio.CancelledError:
            # Only a shutdown that ran out of grace cancels a job; say so instead of a traceback.
            log.warning("job %s was cancelled at shutdown", job_id)
            outcome = "cancelled"
        finally:
            if task is not None:
                self._inflight.discard(task)
        job.runs += 1
        job.last_outcome = outcome
        job.last_run_ms = int(time.time() * 1000)
        self._metrics.job_runs.labels(job_id, outcome).inc()
        if outcome != "skipped":
            self._metrics.job_duration.labels(job_id).observe(time.monotonic() - started)
        return outcome

    async def _run(self, job: JobState) -> str:
        if job.lease:
            ttl_ms = int(max(self._lease_ttl_s, 2 * job.every_s) * 1000)
            now_ms = int(time.time() * 1000)
            try:
                # A shutdown may cancel the job while its lease is being written: the thread goes on,
                # so `stop` waits for it before releasing (else the lease is taken after the release).
                call = asyncio.ensure_future(
                    in_thread(self._engine, leases.try_acquire, job.job_id, self._holder, now_ms, ttl_ms)
                )
                self._lease_calls.add(call)
                call.add_done_callback(self._lease_calls.discard)
                acquired = await asyncio.shield(call)
            except Exception as exc:  # the database may be briefly unavailable; try next tick
                job.last_error = f"lease: {exc}"
                log_failure(log, exc, "job %s: could not take its lease", job.job_id)
                return "error"
            if not acquired:
                return "skipped"
        try:
            await job.func()
        except Exception as exc:  # a failing job must not stop the scheduler
            job.last_error = f"{type(exc).__name__}: {exc}"
            log_failure(log, exc, "job %s failed", job.job_id)
            return "error"
        job.last_error = None
        return "ok"

    def start(self) -> None:
        """Start running jobs on the current event loop."""
        if self._scheduler is not None:
            return
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        for job in self._jobs.values():
            self._schedule(job)
        self._scheduler.start()

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Stop scheduling, wait up to `timeout_s` for running jobs, and release this replica's leases."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is None:
            return
        # Pause first: shutting APScheduler down cancels the jobs still running, so let them finish.
        scheduler.pause()
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=timeout_s)
        scheduler.shutdown(wait=False)
        if self._lease_calls:  # a lease write is short: wait for it even when the jobs were given up
            await asyncio.wait(list(self._lease_calls), timeout=max(timeout_s, 10.0))
        try:
            await in_thread(self._engine, leases.release_all, self._holder)
        except Exception as exc:  # leases expire on their own; shutting down matters more
            log.warning("could not release scheduler leases: %s", exc)
