"""The live state of services in one process: each replica's endpoint, site, health and in-flight
requests, and the round that keeps them fresh.

Every `health_interval_s` a round reads the services and replicas from the database (so changes
made through any process show) and, every 5 s, the stored network view, finds the endpoint each new replica announced on its log (the line
`cpnode-endpoint URL`, read through the tasks path: from the pool here, or from the partner that
runs it), asks every replica's health path, and feeds scale-out. A replica is healthy after a good
check (2xx) and unhealthy after a failed one; the proxy also marks it unhealthy at once when a
connection to it fails (passive check), so a dead replica stops taking requests at the first
failure, and at the latest one health interval after it died.

With several API processes over one database, each runs its own health round but they share one
view (table `service_health`): each round first takes the observations other processes stored
since its own (a check, or a failed connection through their proxy — stored at once), then checks
and stores what it saw where that differs from what is stored (health, problem, endpoint or site):
a steady round writes nothing. The latest observation of a replica wins. So a replica one process
found dead is avoided by every other by its next round, and a process started anew steers at once
by the stored health and endpoints (no endpoint discovery from the log). The passive marking stays
the fast path within a process. In-flight counts are this process's; each steers by its own.

A stored observation is not refreshed while nothing changes: its time only orders it against
other observations of the replica (a newer one wins), no reader judges it by its age, and every
process keeps checking every replica itself. An observation whose write was lost (a database
hiccup) still differs from what is stored, so the next round writes it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import aiohttp

from node.market.scheduled import site_for
from node.market.view import market_offers
from node.network.store import load_view
from node.network.view import NetworkView
from node.services import store
from node.services.errors import NoReplicaError, ServiceInputError, UnknownServiceError, UnknownSiteError
from node.services.network import ViewLatencies
from node.services.records import DEFAULT_WEIGHT, Replica, Service, endpoint_in
from node.services.scaling import ScaleWatch, load_per_replica
from node.services.settings import ServicesSection
from node.services.steering import Candidate, Latencies, Ranked, SteeringParams, near_set, pick, rank
from node.tasks.records import Task
from node.tasks.service import TaskService

log = logging.getLogger(__name__)
LOG_PEEK = 8192  # bytes of a replica's log read for its endpoint line
VIEW_EVERY_S = 5.0  # how often the stored network view is read again (its job refreshes it less often)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class ReplicaState:
    """One replica as this process sees it."""

    id: str
    weight: int = DEFAULT_WEIGHT
    pinned: bool = False
    site: str | None = None
    endpoint: str | None = None
    healthy: bool = False
    problem: str | None = "starting"
    in_flight: int = 0
    served: int = 0
    failed: int = 0
    down_since_round: int | None = None  # the health round during which it was last taken out
    observed_ms: int = 0  # when the observation its health comes from was made (0: none yet)
    observer: str | None = None  # the API process that made it

    def candidate(self) -> Candidate:
        """What steering sees of it."""
        return Candidate(
            self.id,
            self.endpoint,
            self.site,
            self.healthy,
            self.in_flight,
            self.weight,
            self.pinned,
            self.problem,
        )

    def view(self) -> dict[str, object]:
        """What the API shows of it."""
        return {
            "replica": self.id,
            "endpoint": self.endpoint,
            "site": self.site,
            "healthy": self.healthy,
            "problem": self.problem,
            "in_flight": self.in_flight,
            "weight": self.weight,
            "pinned": self.pinned,
            "served": self.served,
            "failed": self.failed,
            "down_since_round": self.down_since_round,
            "observed_by": self.observer,
        }

    def set_health(
        self,
        healthy: bool,
        problem: str | None,
        round_: int,
        observed_ms: int = 0,
        observer: str | None = None,
    ) -> None:
        """Record a check's outcome (or a failed connection's), noting the round it went down in."""
        if self.healthy and not healthy:
            self.down_since_round = round_
        self.healthy, self.problem = healthy, problem
        self.observed_ms, self.observer = observed_ms, observer

    def adopt(self, seen: store.Health, round_: int) -> bool:
        """Take a stored observation newer than this one's (another process's); True if taken. Its
        endpoint and site are taken too while this process has found none."""
        if seen.observed_ms <= self.observed_ms:
            return False
        if self.endpoint is None and seen.endpoint is not None:
            self.endpoint, self.site = seen.endpoint, seen.site
        self.set_health(seen.healthy, seen.problem, round_, seen.observed_ms, seen.observer)
        return True

    def observation(self, service: str) -> store.Health:
        """What this process saw of it last, to share through the database."""
        return store.Health(
            self.id,
            service,
            self.healthy,
            self.problem,
            self.endpoint,
            self.site,
            self.observed_ms,
            self.observer or "",
        )


@dataclass
class ServiceState:
    """One service as this process sees it: its replicas, round-robin counters, scale-out watch."""

    service: Service
    replicas: dict[str, ReplicaState] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    watch: ScaleWatch = field(default_factory=lambda: ScaleWatch(0, 1))


@dataclass
class Runtime:
    """Every service's live state in this process, and how it is kept fresh."""

    engine_call: Callable[..., Awaitable[object]]
    tasks: TaskService
    settings: ServicesSection
    latencies: Latencies
    known_sites: Callable[[], frozenset[str]]
    pool_sites: Mapping[str, str]
    network: ViewLatencies = field(default_factory=ViewLatencies)
    home_site: str | None = None  # the node's own site when `[services] site` names none
    grow: Callable[[Service], Awaitable[bool]] | None = None
    services: dict[str, ServiceState] = field(default_factory=dict)
    http: aiohttp.ClientSession | None = None
    rounds: int = 0  # health rounds done by this process (a killed replica is out by the next one)
    observer: str = ""  # this process's replica id, as its health observations are stored
    _writes: set[asyncio.Task[None]] = field(default_factory=set)

    @cached_property
    def proxy_timeout(self) -> aiohttp.ClientTimeout:
        """The proxy's timeout towards a replica: connecting, and each wait for its next bytes (a
        stream may last long, a silence may not); no bound on the whole."""
        s = self.settings
        return aiohttp.ClientTimeout(total=None, sock_connect=s.connect_timeout_s, sock_read=s.read_timeout_s)

    @cached_property
    def params(self) -> SteeringParams:
        """The steering terms from the config."""
        s = self.settings
        return SteeringParams(s.load_ms_per_request, s.unknown_latency_ms, s.tolerance_ms)

    def state(self, name: str) -> ServiceState:
        """A service's live state (UnknownServiceError when this process knows no such service)."""
        found = self.services.get(name)
        if found is None:
            raise UnknownServiceError(f"no service {name!r}")
        return found

    def user_site(self, site: str | None) -> str | None:
        """The site a request comes from: the one named (checked), else the node's own."""
        if site is None or site == "":
            return self.settings.site or self.home_site
        if site not in self.known_sites() and not self.network.knows(site):
            raise UnknownSiteError(f"unknown site {site!r}", site=site)
        return site

    def ranked(self, name: str, site: str | None, explain: bool = True) -> list[Ranked]:
        """Every replica of a service ranked for a user at `site` (see node.services.steering)."""
        state = self.state(name)
        candidates = [r.candidate() for r in state.replicas.values()]
        return rank(candidates, site, self.latencies, self.params, explain)

    def choose(self, name: str, site: str | None, tried: set[str]) -> ReplicaState:
        """The replica to take a request now (none of `tried`); NoReplicaError if none can."""
        state = self.state(name)
        ranked = [r for r in self.ranked(name, site, explain=False) if r.candidate.id not in tried]
        chosen = pick(near_set(ranked, self.params), state.counters)
        if chosen is None:
            raise NoReplicaError(f"no replica of service {name!r} can take requests now", service=name)
        return state.replicas[chosen.id]

    def mark_failed(self, replica: ReplicaState, why: str) -> None:
        """Passive health: a connection to the replica failed; it takes no request until a good check
        (here at once; the other processes by their next round, as it is stored now)."""
        replica.set_health(False, why, self.rounds, _now_ms(), self.observer)
        replica.failed += 1
        service = next((n for n, s in self.services.items() if s.replicas.get(replica.id) is replica), None)
        if service is not None:
            write = asyncio.get_running_loop().create_task(self._share([replica.observation(service)]))
            self._writes.add(write)
            write.add_done_callback(self._writes.discard)

    async def _share(self, observations: list[store.Health]) -> None:
        """Store observations (a database hiccup loses them: the next round's are stored)."""
        if not observations:
            return
        try:
            await self.engine_call(store.save_health, observations)
        except Exception as exc:
            log.warning("could not store the replicas' health: %s", exc)

    async def flush(self) -> None:
        """Wait for the passive marks being stored (tests, shutdown)."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)

    def adopt(self, stored: Mapping[str, store.Health]) -> None:
        """Take the stored observations newer than this process's (see ReplicaState.adopt)."""
        for state in self.services.values():
            for replica in state.replicas.values():
                seen = stored.get(replica.id)
                if seen is not None:
                    replica.adopt(seen, self.rounds)

    async def refresh(self) -> None:
        """One round: services and replicas from the database, endpoints, health, scale-out."""
        if self.rounds % max(1, round(VIEW_EVERY_S / self.settings.health_interval_s)) == 0:
            view = await self.engine_call(load_view)
            if isinstance(view, NetworkView):
                self.network.view = view
        services: list[Service] = await self.engine_call(store.list_services, None)  # type: ignore[assignment]
        replicas: list[Replica] = await self.engine_call(store.all_replicas)  # type: ignore[assignment]
        stored: dict[str, store.Health] = await self.engine_call(store.load_health)  # type: ignore[assignment]
        by_service: dict[str, list[Replica]] = {}
        for replica in replicas:
            by_service.setdefault(replica.service, []).append(replica)
        fresh: dict[str, ServiceState] = {}
        for service in services:
            state = self.services.get(service.name) or ServiceState(service)
            state.service = service
            state.watch.threshold, state.watch.window_s = service.scale_in_flight, service.scale_window_s
            kept: dict[str, ReplicaState] = {}
            for replica in by_service.get(service.name, []):
                live = state.replicas.get(replica.id) or ReplicaState(replica.id)
                live.weight, live.pinned = replica.effective_weight, replica.weight is not None
                kept[replica.id] = live
            state.replicas = kept
            state.counters = {k: v for k, v in state.counters.items() if k in kept}
            fresh[service.name] = state
        self.services = fresh
        self.adopt(stored)  # what other processes saw since this one last looked: used while checking
        checks = [self._check(s, r) for s in fresh.values() for r in s.replicas.values()]
        await asyncio.gather(*checks)
        mine = [
            r.observation(s.service.name)
            for s in fresh.values()
            for r in s.replicas.values()
            if r.observer == self.observer and r.observed_ms
        ]
        await self._share([seen for seen in mine if store.changed(stored.get(seen.replica), seen)])
        if self.grow is not None:
            await self._scale(time.monotonic())
        self.rounds += 1

    async def _check(self, state: ServiceState, replica: ReplicaState) -> None:
        if replica.endpoint is None:
            await self._discover(replica)
            if replica.endpoint is None:
                return
        assert self.http is not None
        url = replica.endpoint + state.service.health_path
        try:
            timeout = aiohttp.ClientTimeout(total=self.settings.health_timeout_s)
            async with self.http.get(url, timeout=timeout) as response:
                await response.read()
                good = 200 <= response.status < 300
                problem = None if good else f"health check answered {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            good, problem = False, f"health check failed: {type(exc).__name__}"
        replica.set_health(good, problem, self.rounds, _now_ms(), self.observer)

    async def _discover(self, replica: ReplicaState) -> None:
        """Find the replica's endpoint and site from its task (its log and where it runs)."""
        task: Task | None = await self.tasks.tasks.get(replica.id)
        if task is None:
            replica.problem = "its task is not submitted yet"
            return
        replica.site = await self._site_of(task)
        if task.state != "running":
            replica.problem = f"its task is {task.state}" + (f" ({task.detail})" if task.detail else "")
            return
        try:
            chunk = await self.tasks.logs(task, 0, LOG_PEEK)
        except Exception as exc:  # a pool or partner that does not answer now: asked again next round
            replica.problem = f"its log cannot be read now: {exc}"
            return
        try:
            endpoint = endpoint_in(
                chunk.data().decode("utf-8", errors="replace"), self.settings.endpoint_hosts
            )
        except ServiceInputError as exc:
            replica.problem = f"it announced a bad endpoint: {exc}"
            return
        if endpoint is None:
            replica.problem = "running, no endpoint announced yet"
            return
        replica.endpoint = endpoint
        replica.problem = "not checked yet"

    async def _site_of(self, task: Task) -> str | None:
        """Where a replica runs: its pool's configured site, or the partner's, else the site its
        offer declares (or the partner's measured pseudo-site) in the network view."""
        configured = (
            self.settings.partner_sites.get(task.partner)
            if task.partner is not None
            else self.pool_sites.get(task.pool or "")
        )
        if configured is not None:
            return configured
        t = self.tasks.tasks
        rows = await market_offers(t.offer_sources, t.engine, int(time.time()))
        row = next((r for r in rows if r["id"] == task.offer_id and r["source"] == task.source), None)
        if row is not None:
            return site_for(self.network.view)(row)
        return self.network.partner_site(task.partner) if task.partner is not None else None

    async def _scale(self, now_s: float) -> None:
        assert self.grow is not None
        for state in self.services.values():
            healthy = [r.in_flight for r in state.replicas.values() if r.healthy and r.endpoint]
            service = state.service
            load = load_per_replica(healthy)
            if state.watch.observe(now_s, load, service.replicas, service.max_replicas):
                log.info("service %s: %.1f in flight per replica; adding a replica", service.name, load)
                await self.grow(service)

    def track(self, service: Service, replicas: list[Replica]) -> None:
        """Know a service created through this process at once (not at the next round): its entry
        answers 503 until a replica serves, not 404."""
        state = self.services.setdefault(service.name, ServiceState(service))
        for replica in replicas:
            state.replicas.setdefault(replica.id, ReplicaState(replica.id))

    async def refresh_weights(self, name: str, replicas: list[Replica]) -> None:
        """Take pinned weights at once (not at the next round) after they changed through this process."""
        state = self.services.get(name)
        if state is None:
            return
        for replica in replicas:
            live = state.replicas.get(replica.id)
            if live is not None:
                live.weight, live.pinned = replica.effective_weight, replica.weight is not None
        state.counters.clear()
