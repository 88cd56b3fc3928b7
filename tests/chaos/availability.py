"""The availability model checked on a real node: deploy the node's plan as role-split `cpnode run`
processes, inject failures at the rates the architecture assumes, and measure the fraction of
requests the platform serves.

Deployment: the plan of configs/architecture/node.toml groups the node's roles into microservices;
each runs as k processes (`cpnode run --roles api,ledger`, ...) of one node over one database.

Time is scaled away: the model is about independent snapshots (a sub-module is up with probability
a_j at a random moment), so each round draws one snapshot exactly as the planner's Monte Carlo
simulation does (node.availability.montecarlo.draw_snapshot), freezes the processes of the
instances drawn down (SIGSTOP: a hung process, which answers nothing, instantly undone by SIGCONT)
and thaws the others, then sends one request to every microservice. Like a load balancer in front
of a Service, the request goes to all k instances at once and counts as served by the first 200
within the probe timeout, asked once more when none answered (a balancer's retry). The round
succeeds when every microservice served it.

What can differ from the draw is the node's doing: a live instance that does not answer (stuck
behind a frozen one's database lock, too slow, or failing), or one microservice's failure taking
another down (`misses`). The measured fraction and its 99 % Wilson interval are compared with the
planner's analytic availability and its Monte Carlo interval: they agree when the intervals meet.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from node.availability import Architecture, Plan, load_architecture, make_plan, simulate, with_availability
from node.availability.model import build_plan
from node.availability.montecarlo import MonteCarloResult, draw_snapshot, plan_services, wilson_interval
from node.config import load_settings
from node.ports import free_port
from node.resources import config_file
from node.runfile import read_admin_token
from tests.support.nodes import NodeProcess, make_node_dir

PROBE_TIMEOUT_S = 0.75  # per try
# A load balancer's retry (Envoy's default is one): a live instance stalled for a moment on a
# loaded machine (a request queued behind a garbage collection, a thawed process catching up on
# its timers) gets a second chance, a frozen one answers neither.
PROBE_TRIES = 2
START_TIMEOUT_S = 120.0  # several processes start at once on a shared machine
MC_TRIALS = 200_000
# The request each role answers; an instance of a microservice must answer those of all its roles.
# Reads only: a write sent to both instances at once leaves the slower one writing, and freezing
# it then holds its database locks against the other (see docs/availability.md).
ROLE_PROBES = {
    "api": "/api/v1/consumers",
    "federation": "/fed/v1/keys",
    "connectors": "/api/v1/plugins",
    "ledger": "/readyz",
    "scheduler": "/readyz",
}
NODE_TOML = """
[scheduler]
lease_ttl_s = 5

[logging]
level = "warning"
"""


@dataclass
class Instance:
    """One process of a microservice, and whether it is frozen."""

    name: str
    process: NodeProcess
    port: int
    frozen: bool = False

    def freeze(self, frozen: bool) -> None:
        """SIGSTOP (frozen) or SIGCONT the process, if that changes anything."""
        proc = self.process.proc
        if proc is None or frozen == self.frozen:
            return
        proc.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)
        self.frozen = frozen


@dataclass
class Deployment:
    """The node's microservices (role tuples) and their running instances."""

    config: Path
    services: list[tuple[str, ...]]
    instances: list[list[Instance]]
    token: str = ""

    @classmethod
    def for_plan(cls, base: Path, plan: Plan, db_url: str | None) -> Deployment:
        """Write the node's folder and the processes' settings for `plan` (nothing started yet)."""
        config = make_node_dir(base, "alpha", db_url=db_url, extra_toml=NODE_TOML)
        services = [service for module in plan.modules for service in module.services]
        instances = []
        for number, roles in enumerate(services):
            group = []
            for index in range(plan.instances):
                port = free_port()
                process = NodeProcess(config, roles=",".join(roles), env={"CPNODE_HTTP_PORT": str(port)})
                name = f"s{number}-{'+'.join(roles)}-{index}"
                process.log_path = config.parent / f"{name}.stderr.log"
                group.append(Instance(name, process, port))
            instances.append(group)
        return cls(config, services, instances)

    @property
    def all(self) -> list[Instance]:
        """Every instance."""
        return [instance for group in self.instances for instance in group]

    async def start(self) -> None:
        """Start every process (the first alone: it migrates the database)."""
        first, *rest = self.all
        await asyncio.to_thread(first.process.start, START_TIMEOUT_S)
        await asyncio.gather(*(asyncio.to_thread(i.process.start, START_TIMEOUT_S) for i in rest))
        self.token = read_admin_token(load_settings(self.config, environ={}))

    async def stop(self) -> list[tuple[str, int]]:
        """Thaw and stop every process; (name, exit code) of each."""
        codes = []
        for instance in self.all:
            instance.freeze(False)
            if instance.process.running:
                codes.append((instance.name, await asyncio.to_thread(instance.process.stop)))
        return codes

    def logs(self) -> dict[str, str]:
        """What each process wrote to stderr."""
        return {instance.name: instance.process.log() for instance in self.all}


@dataclass
class CheckResult:
    """One scenario's prediction and measurement."""

    name: str
    backups: int
    rounds: int
    predicted: float  # the planner's analytic availability
    monte_carlo: MonteCarloResult
    drawn_up: int  # rounds whose snapshot had every microservice up
    measured_up: int  # rounds every microservice served
    misses: int  # microservices drawn up that did not serve (the node's doing)
    missed: dict[str, int] = field(default_factory=dict)  # those misses by microservice
    interval: tuple[float, float] = (0.0, 1.0)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def measured(self) -> float:
        """The fraction of rounds served."""
        return self.measured_up / self.rounds

    @property
    def agrees(self) -> bool:
        """Whether the measured 99 % interval meets the Monte Carlo one (each is wrong one time in a
        hundred: asking the prediction to lie inside the measured interval fails that often on a
        correct node, and the rare platform failures of a short run are lumpy)."""
        low, high = self.interval
        mc = self.monte_carlo
        return low <= mc.high and mc.low <= high

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        mc = self.monte_carlo
        return {
            "name": self.name,
            "backups": self.backups,
            "rounds": self.rounds,
            "predicted": self.predicted,
            "monte_carlo": {"trials": mc.trials, "estimate": mc.estimate, "interval": [mc.low, mc.high]},
            "drawn": self.drawn_up / self.rounds,
            "measured": self.measured,
            "interval": list(self.interval),
            "misses": self.misses,
            "missed": self.missed,
            "agrees": self.agrees,
            "notes": self.notes[:20],
            "seconds": round(self.seconds, 1),
        }


def regroup(architecture: Architecture, deployed: Plan, backups: int) -> Plan:
    """The deployed grouping evaluated for `architecture` with `backups` (one grouping, several
    availabilities and instance counts)."""
    groups = []
    for module, planned in zip(architecture.modules, deployed.modules, strict=True):
        index = {sub.name: j for j, sub in enumerate(module.submodules)}
        groups.append([[index[name] for name in service] for service in planned.services])
    return build_plan(architecture, "deployed", backups, deployed.target, groups)


def node_plan(architecture: Architecture) -> Plan:
    """The planner's plan for the node's architecture with the file's backups and target."""
    return make_plan(architecture, "optimal", architecture.backups or 0, architecture.target or 0.9999)


async def _answers(http: aiohttp.ClientSession, instance: Instance, paths: Sequence[str]) -> str | None:
    """None when the instance answers 200 to every path within the probe timeout, else why not."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            for path in paths:
                async with http.get(f"http://127.0.0.1:{instance.port}{path}") as response:
                    await response.read()
                    if response.status != 200:
                        return f"{instance.name}: {path} answered {response.status}"
    except TimeoutError:
        return f"{instance.name}: no answer within {PROBE_TIMEOUT_S} s"
    except aiohttp.ClientError as error:
        elapsed = time.monotonic() - started
        return f"{instance.name}: {type(error).__name__} after {elapsed:.2f} s"
    return None


async def serves(
    http: aiohttp.ClientSession, instances: Sequence[Instance], roles: Sequence[str]
) -> tuple[bool, list[str]]:
    """Whether any instance serves the microservice's requests, as a load balancer with one retry
    would: all instances asked at once, the first 200 wins, and all asked once more when none
    answered within the probe timeout. Also why each instance that answered first did not serve."""
    paths = sorted({ROLE_PROBES[role] for role in roles})
    reasons: list[str] = []
    for _ in range(PROBE_TRIES):
        tasks = [asyncio.create_task(_answers(http, instance, paths)) for instance in instances]
        try:
            for done in asyncio.as_completed(tasks):
                reason = await done
                if reason is None:
                    return True, reasons
                reasons.append(reason)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return False, reasons


async def run_scenario(
    deployment: Deployment,
    name: str,
    architecture: Architecture,
    plan: Plan,
    rounds: int,
    seed: int,
    trials: int = MC_TRIALS,
) -> CheckResult:
    """`rounds` snapshots of `plan` on the deployment (instances beyond the plan's k stay frozen),
    against `trials` Monte Carlo draws of the planner."""
    services = plan_services(architecture, plan)
    k = plan.instances
    draw = random.Random(seed).random
    for group in deployment.instances:
        for instance in group[k:]:
            instance.freeze(True)
    result = CheckResult(
        name, plan.backups, rounds, plan.availability, simulate(architecture, plan, trials, seed), 0, 0, 0
    )
    started = time.monotonic()
    connector = aiohttp.TCPConnector(force_close=True)
    headers = {"Authorization": f"Bearer {deployment.token}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        for number in range(rounds):
            snapshot = draw_snapshot(services, k, draw)
            for group, ups in zip(deployment.instances, snapshot, strict=True):
                for instance, up in zip(group, ups, strict=False):
                    instance.freeze(not up)
            drawn = [any(ups) for ups in snapshot]
            answers = await asyncio.gather(
                *(
                    serves(http, group[:k], roles)
                    for group, roles in zip(deployment.instances, deployment.services, strict=True)
                )
            )
            served = [ok for ok, _ in answers]
            result.drawn_up += all(drawn)
            result.measured_up += all(served)
            for roles, d, (ok, reasons) in zip(deployment.services, drawn, answers, strict=True):
                if d and not ok:
                    result.misses += 1
                    label = "+".join(roles)
                    result.missed[label] = result.missed.get(label, 0) + 1
                    result.notes.append(f"round {number}: " + "; ".join(reasons))
    for instance in deployment.all:
        instance.freeze(False)
    result.seconds = time.monotonic() - started
    result.interval = wilson_interval(result.measured_up, rounds)
    return result


@dataclass(frozen=True)
class Scenario:
    """A scenario on the deployment: sub-module availabilities (None: the file's), backups, and
    how many times the base number of rounds it runs."""

    name: str
    availability: float | None
    backups: int
    rounds_factor: int = 1


SCENARIOS = (
    # Failures of the whole platform are rare here (about 1 in 5,000 rounds): three times the rounds
    # (they are fast, nothing waits for a timeout) for a narrower interval.
    Scenario("node.toml rates, the planned instances", None, 1, 3),
    Scenario("node.toml rates, one instance each", None, 0),
    Scenario("every role at 0.9, the planned instances", 0.9, 1),
)


@dataclass
class AvailabilityReport:
    """Every scenario's result, the deployed plan and what the processes logged."""

    plan: Plan
    results: list[CheckResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        services = [list(service) for module in self.plan.modules for service in module.services]
        return {
            "microservices": services,
            "instances": self.plan.instances,
            "scenarios": [result.to_dict() for result in self.results],
            "problems": self.problems,
        }


async def run_check(
    base: Path, db_url: str | None, rounds: int, seed: int, trials: int = MC_TRIALS
) -> AvailabilityReport:
    """Deploy the node's plan in `base` (database `db_url`, else a SQLite file) and run SCENARIOS,
    each against `trials` Monte Carlo draws."""
    architecture = load_architecture(config_file("architecture", "node.toml"))
    deployed = node_plan(architecture)
    report = AvailabilityReport(deployed)
    deployment = Deployment.for_plan(base, deployed, db_url)
    try:
        await deployment.start()
        for number, scenario in enumerate(SCENARIOS):
            arch = (
                architecture
                if scenario.availability is None
                else with_availability(architecture, scenario.availability)
            )
            plan = regroup(arch, deployed, scenario.backups)
            count = rounds * scenario.rounds_factor
            result = await run_scenario(deployment, scenario.name, arch, plan, count, seed + number, trials)
            report.results.append(result)
    finally:
        codes = await deployment.stop()
    report.problems += [f"{name} exited {code} on SIGTERM" for name, code in codes if code != 0]
    report.problems += [
        f"{name} logged a traceback" for name, text in deployment.logs().items() if "Traceback" in text
    ]
    return report
