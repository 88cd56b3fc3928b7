"""One chaos run from start to verdict: start the cluster, open the consumers, run the load and the
faults together for a window (a fixed time, held open within a bound until enough orders were
accepted when a loaded machine is slow), let every process come back and every operation get its
answer, drain the nodes' upkeep, then check everything `tests.chaos.checks` lists. Used by the
test and by `python -m bench chaos`."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from tests.chaos import checks
from tests.chaos.cluster import Cluster, schemas
from tests.chaos.faults import Faults
from tests.chaos.load import Load, offer_sources, open_consumers
from tests.support.polling import eventually

ANSWER_GRACE_S = 90.0  # after the faults stop, how long an operation may still take to get its answer
POOR_DEPOSIT = 5_000  # one consumer runs out of money, so refusals for funds happen too
DEPOSIT = 100_000_000


@dataclass(frozen=True)
class ChaosSettings:
    """How long, how many consumers, which seed, and whether faults are injected at all."""

    duration_s: float = 40.0
    consumers: int = 6
    seed: int = 1
    faults: bool = True
    fault_every_s: tuple[float, float] = (1.5, 4.0)  # the pause between two faults, drawn uniformly
    min_placed: int = 0  # the window stays open past duration_s until this many orders were accepted
    max_duration_s: float | None = None  # ... but closes at this bound (None: at duration_s)


@dataclass
class Window:
    """The time the load and the faults run together: at least `duration_s`, then on until
    `min_placed` orders were accepted, never past `max_duration_s`. Once closed it stays closed,
    so the load and the faults stop on one decision."""

    started: float
    duration_s: float
    max_duration_s: float
    min_placed: int
    placed: Callable[[], int]
    closed_at: float | None = None

    def over(self) -> bool:
        """Whether the window has closed (and close it when its time has come)."""
        if self.closed_at is None:
            elapsed_s = time.monotonic() - self.started
            if elapsed_s >= self.max_duration_s or (
                elapsed_s >= self.duration_s and self.placed() >= self.min_placed
            ):
                self.closed_at = time.monotonic()
        return self.closed_at is not None


@dataclass
class ChaosReport:
    """What a run did and found; `problems` is empty when everything held."""

    settings: ChaosSettings
    elapsed_s: float = 0.0
    load: dict[str, Any] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    fault_log: list[str] = field(default_factory=list)
    database_cuts: int = 0
    figures: dict[str, Any] = field(default_factory=dict)
    unfinished: list[str] = field(default_factory=list)
    slowest: list[str] = field(default_factory=list)  # the five slowest operations, for diagnosis
    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        """Requests lost: accepted without effect, or never answered."""
        return int(self.figures.get("lost", 0))

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {**asdict(self), "lost": self.lost}


async def run_chaos(base: Path, postgres_url: str, settings: ChaosSettings) -> ChaosReport:
    """Run the scenario in folder `base` against the PostgreSQL server of `postgres_url`."""
    report = ChaosReport(settings)
    with schemas(postgres_url, 2) as names:
        cluster = Cluster(base, postgres_url, schemas=names)
        buyer, seller = checks.engines(cluster)
        try:
            await cluster.start()
            from_ms = int(time.time() * 1000)
            load = await _exercise(cluster, settings, report)
            report.unfinished = await checks.drain(buyer, seller)
            report.problems += [f"left unfinished: {item}" for item in report.unfinished]
            await asyncio.to_thread(_check_state, cluster, load, (buyer, seller), from_ms, report)
        finally:
            codes = await cluster.stop()
            buyer.dispose()
            seller.dispose()
        report.problems += [f"{name} exited {code} on SIGTERM" for name, code in codes if code != 0]
        report.problems += checks.check_logs(cluster)
    return report


async def _exercise(cluster: Cluster, settings: ChaosSettings, report: ChaosReport) -> Load:
    """The load and the faults for `duration_s`, then every process up and every operation answered."""
    token = cluster.buyer_token()
    offers = await offer_sources(cluster.buyer_url, token)
    names = [f"c{index:02d}" for index in range(settings.consumers)]
    deposits = [POOR_DEPOSIT if index == 0 else DEPOSIT for index in range(settings.consumers)]
    load = Load(
        cluster.buyer_url,
        token,
        await open_consumers(cluster.buyer_url, token, names, deposits),
        offers,
        settings.seed,
    )
    faults = Faults(cluster, settings.seed, every_s=settings.fault_every_s)
    started = time.monotonic()
    window = Window(
        started,
        settings.duration_s,
        max(settings.duration_s, settings.max_duration_s or 0.0),
        settings.min_placed,
        lambda: load.placed,
    )
    running = asyncio.create_task(load.run(window.over))
    if settings.faults:
        await faults.run(window.over)
        await faults.recover()
    # Without faults nothing else waits for the window; it closes by `max_duration_s` at the latest.
    await eventually(window.over, window.max_duration_s + 5.0, "the load's window", interval_s=0.1)
    assert window.closed_at is not None
    until = window.closed_at
    load.give_up_at = max(until, time.monotonic()) + ANSWER_GRACE_S
    await running
    report.elapsed_s = round(time.monotonic() - started, 1)
    report.load = load.counts()
    report.faults = faults.counts()
    report.fault_log = [f"{f.at_s:6.2f} s {f.kind} {f.target} {f.detail}" for f in faults.log]
    report.database_cuts = cluster.db_proxy.counts.cut
    durations = sorted(op.finished - op.started for op in load.ops if op.status is not None)
    within = [op for op in load.ops if op.started < until]
    slowest = sorted(
        (op for op in load.ops if op.status is not None), key=lambda op: op.started - op.finished
    )
    report.slowest = [
        f"{op.finished - op.started:6.1f} s {op.kind} {op.order_id} -> {op.status} after {op.attempts} "
        f"attempt(s) {op.transient}"
        for op in slowest[:5]
    ]
    report.figures.update(
        load_s=round(until - started, 1),
        operations_per_s=round(len(within) / max(until - started, 1e-9), 1),
        median_operation_s=round(statistics.median(durations), 3) if durations else None,
        p99_operation_s=round(durations[int(0.99 * (len(durations) - 1))], 3) if durations else None,
        restart_failures=faults.restart_failures,
    )
    return load


def _check_state(
    cluster: Cluster, load: Load, engines: tuple[Engine, Engine], from_ms: int, report: ChaosReport
) -> None:
    """The checks that read the databases and the ledgers (blocking; run in a thread)."""
    buyer, seller = engines
    problems, figures = checks.check_operations(load, buyer, seller)
    report.problems += problems
    report.figures.update(figures)
    for engine, name in ((buyer, "beijing"), (seller, "shanghai")):
        report.problems += checks.check_holds_and_reservations(engine, name)
    to_ms = int(time.time() * 1000)
    report.problems += checks.check_reconciles(cluster, from_ms, to_ms)
    for config, engine in ((cluster.buyer_config, buyer), (cluster.seller_config, seller)):
        report.problems += checks.check_ledger_verifies(
            config, engine, cluster.base / f"audit-{config.parent.name}"
        )
