"""Scheduled jobs: leases keep each job on one replica; failures are counted, never fatal."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from sqlalchemy.engine import Engine

from node import leases
from node.metrics import Metrics
from node.scheduler import JobScheduler
from tests.support.polling import eventually


def _now_ms() -> int:
    return int(time.time() * 1000)


def test_lease_is_exclusive_until_it_expires(engine: Engine) -> None:
    """One holder gets the lease; another cannot until it expires; the holder can renew."""
    now = _now_ms()
    assert leases.try_acquire(engine, "sync", "a", now, 1000)
    assert not leases.try_acquire(engine, "sync", "b", now + 10, 1000)
    assert leases.try_acquire(engine, "sync", "a", now + 20, 1000)
    assert leases.holder_of(engine, "sync", now + 30) == "a"
    assert leases.try_acquire(engine, "sync", "b", now + 2000, 1000)
    assert leases.holder_of(engine, "sync", now + 2001) == "b"


def test_release_all_frees_only_own_leases(engine: Engine) -> None:
    """Releasing on shutdown frees this holder's leases and nobody else's."""
    now = _now_ms()
    assert leases.try_acquire(engine, "j1", "a", now, 60_000)
    assert leases.try_acquire(engine, "j2", "b", now, 60_000)
    assert leases.release_all(engine, "a") == 1
    assert leases.try_acquire(engine, "j1", "c", now, 60_000)
    assert not leases.try_acquire(engine, "j2", "c", now, 60_000)


async def test_two_replicas_run_a_job_once_per_tick(engine: Engine) -> None:
    """With two schedulers on one database, each tick of a leased job runs on exactly one."""
    runs: list[str] = []

    def make(name: str) -> JobScheduler:
        scheduler = JobScheduler(engine, name, 60, Metrics())

        async def job() -> None:
            runs.append(name)

        scheduler.add_interval_job("sync", job, 30)
        return scheduler

    first, second = make("r1"), make("r2")
    outcomes = [await first.run_job("sync"), await second.run_job("sync")]
    outcomes += [await second.run_job("sync"), await first.run_job("sync")]
    assert outcomes == ["ok", "skipped", "skipped", "ok"]
    assert runs == ["r1", "r1"]


async def test_failing_job_is_counted_and_scheduler_survives(engine: Engine) -> None:
    """A job that raises records an error outcome and its message; the next tick still runs."""
    metrics = Metrics()
    scheduler = JobScheduler(engine, "r1", 60, metrics)
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("upstream down")

    scheduler.add_interval_job("flaky", flaky, 10)
    assert await scheduler.run_job("flaky") == "error"
    assert scheduler.jobs()[0].last_error == "ValueError: upstream down"
    assert await scheduler.run_job("flaky") == "ok"
    assert (
        metrics.registry.get_sample_value(
            "cpnode_scheduler_job_runs_total", {"job": "flaky", "outcome": "error"}
        )
        == 1.0
    )


async def test_started_scheduler_runs_jobs_and_stop_releases(engine: Engine) -> None:
    """A started scheduler runs an interval job by itself; stop releases its lease for others."""
    scheduler = JobScheduler(engine, "r1", 60, Metrics())
    ran = asyncio.Event()

    async def job() -> None:
        ran.set()

    scheduler.add_interval_job("tick", job, 0.05)
    scheduler.start()
    started = scheduler.running
    assert started
    await asyncio.wait_for(ran.wait(), timeout=10)
    await scheduler.stop()
    assert not scheduler.running
    assert leases.holder_of(engine, "tick", _now_ms()) is None


async def test_stop_waits_for_a_lease_being_written_before_releasing(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job cancelled at shutdown while its lease is being written (a busy database): the write
    goes on in its thread, and stop releases only after it, so no lease outlives the scheduler."""
    scheduler = JobScheduler(engine, "r1", 60, Metrics())
    real, writing, written = leases.try_acquire, asyncio.Event(), threading.Event()
    loop = asyncio.get_running_loop()

    def slow_acquire(*args: object) -> bool:
        loop.call_soon_threadsafe(writing.set)
        time.sleep(0.5)
        try:
            return real(*args)  # type: ignore[arg-type]
        finally:
            written.set()

    monkeypatch.setattr(leases, "try_acquire", slow_acquire)

    async def job() -> None:
        pass

    scheduler.add_interval_job("tick", job, 0.05)
    scheduler.start()
    await asyncio.wait_for(writing.wait(), timeout=10)
    await scheduler.stop(timeout_s=0.01)  # gives up on the job at once: it is cancelled
    assert await asyncio.to_thread(written.wait, 30)  # the lease's write has ended, either way
    assert leases.holder_of(engine, "tick", _now_ms()) is None


async def test_a_tick_the_loop_reaches_late_still_runs(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """A tick due while the event loop was busy for longer than a second runs when the loop is
    free again, instead of being skipped as missed (what a loaded machine does to 1 s intervals)."""
    scheduler = JobScheduler(engine, "r1", 60, Metrics())
    runs: list[float] = []

    async def job() -> None:
        runs.append(time.monotonic())

    scheduler.add_interval_job("late", job, 1.5)
    scheduler.start()
    try:
        # Blocking the loop on purpose: the tick due at 1.5 s is reached 1.4 s late or more.
        time.sleep(2.9)  # noqa: ASYNC251
        with caplog.at_level(logging.WARNING, logger="apscheduler"):
            await eventually(lambda: len(runs) >= 1, 20, "the late tick running")
    finally:
        await scheduler.stop()
    assert not [r for r in caplog.records if "was missed by" in r.getMessage()]


def test_duplicate_and_invalid_jobs_rejected(engine: Engine) -> None:
    """Registering a job id twice, or a non-positive interval, is an error."""
    scheduler = JobScheduler(engine, "r1", 60, Metrics())

    async def job() -> None:
        return None

    scheduler.add_interval_job("a", job, 1)
    for job_id, every in (("a", 1.0), ("b", 0.0)):
        try:
            scheduler.add_interval_job(job_id, job, every)
        except ValueError:
            continue
        raise AssertionError(f"{job_id} accepted")


async def test_stop_lets_a_running_job_finish(engine: Engine) -> None:
    """A job running when the scheduler stops completes (within the grace) instead of being cancelled."""
    scheduler = JobScheduler(engine, "r1", 60, Metrics())
    started, finished = asyncio.Event(), asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(0.2)
        finished.set()

    scheduler.add_interval_job("slow", slow, 0.05)
    scheduler.start()
    await asyncio.wait_for(started.wait(), timeout=10)
    await scheduler.stop(timeout_s=5)
    assert finished.is_set()
    assert scheduler.jobs()[0].last_outcome == "ok"


async def test_job_cancelled_after_the_grace_is_recorded(engine: Engine) -> None:
    """A job still running when the grace runs out is cancelled and recorded as such, not raised."""
    metrics = Metrics()
    scheduler = JobScheduler(engine, "r1", 60, metrics)
    started = asyncio.Event()

    async def endless() -> None:
        started.set()
        await asyncio.sleep(3600)

    scheduler.add_interval_job("endless", endless, 10)
    task = asyncio.create_task(scheduler.run_job("endless"))
    await asyncio.wait_for(started.wait(), timeout=10)
    task.cancel()
    assert await task == "cancelled"
    assert (
        metrics.registry.get_sample_value(
            "cpnode_scheduler_job_runs_total", {"job": "endless", "outcome": "cancelled"}
        )
        == 1.0
    )
