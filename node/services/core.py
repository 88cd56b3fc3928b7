"""What the services API does, apart from HTTP: create, list, show, scale, pin, delete, and keep
every service's replicas as many as wanted (`reconcile`).

A replica is a task (node.tasks) of the service's consumer, submitted through the tasks path like
any other: matched over this node's and its partners' offers, ordered, delivered on a pool here or
by a partner. Its task id is stored first, then the task submitted under it, so a crash between the
two is mended by the next reconcile. The replica's program gets `CPNODE_SERVICE` and
`CPNODE_REPLICA` in its environment.

Reconciling (one process at a time, under the `services.reconcile` lease): a replica whose task has
ended leaves the service; while fewer replicas live than wanted, new ones are submitted (so a
killed replica is replaced); while more live, the newest are stopped.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt

import ledger
from node.accounts import store as accounts
from node.db.threads import in_thread
from node.http.auth import ADMIN, Principal
from node.services import store
from node.services.errors import (
    ForbiddenError,
    ServiceExistsError,
    ServiceInputError,
    UnknownReplicaError,
    UnknownServiceError,
)
from node.services.records import (
    MAX_REPLICAS,
    Replica,
    Service,
    check_health_path,
    check_name,
    check_replicas,
    check_weight,
    check_weights,
)
from node.tasks.errors import TaskError
from node.tasks.records import Task
from node.tasks.service import TaskService, spec_document
from node.tasks.spec import TaskSpecError
from node.trading import rules
from node.trading.errors import OrderRequestError

log = logging.getLogger(__name__)


def now_ms() -> int:
    """Wall-clock time in UTC epoch milliseconds."""
    return int(time.time() * 1000)


class NewService(BaseModel):
    """A service to create (`POST /api/v1/services`)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    spec: Any
    replicas: StrictInt = 1
    consumer: str | None = Field(default=None, min_length=1, max_length=63)
    max_replicas: StrictInt | None = None
    scale_in_flight: StrictInt | StrictFloat = Field(default=0, ge=0, le=100_000)
    scale_window_s: StrictInt | StrictFloat = Field(default=30, gt=0, le=86_400)
    health_path: str = "/healthz"


def replica_spec(service: Service, replica_id: str) -> dict[str, Any]:
    """The task spec of one replica: the service's, with the replica named in its environment."""
    data = copy.deepcopy(service.spec_data())
    program = data.setdefault("program", {})
    env = dict(program.get("env") or {})
    env.update({"CPNODE_SERVICE": service.name, "CPNODE_REPLICA": replica_id})
    program["env"] = env
    return data


@dataclass
class Services:
    """One node's services: storage, the tasks path that runs replicas, and the clock."""

    name: str
    tasks: TaskService
    clock_ms: Callable[[], int] = field(default=now_ms)

    async def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking database call `fn(engine, ...)` on the engine's threads."""
        return await in_thread(self.tasks.tasks.engine, fn, *args)

    async def create(self, caller: Principal, body: NewService) -> tuple[bool, Service]:
        """Store a service and submit its replicas (True), or find the same one again (False)."""
        consumer = body.consumer if body.consumer is not None else caller.consumer
        if consumer is None:
            raise ServiceInputError("consumer", "needed with the admin token")
        if not caller.is_admin and consumer != caller.consumer:
            raise ForbiddenError("a consumer token creates services of its own consumer only")
        name = check_name(body.name)
        replicas = check_replicas(body.replicas)
        wanted_max = body.max_replicas if body.max_replicas is not None else replicas
        max_replicas = check_replicas(wanted_max, MAX_REPLICAS, "max_replicas")
        replicas = check_replicas(replicas, max_replicas)
        try:
            rules.check_consumer_id(consumer)
            _spec, text = spec_document(body.spec)
        except OrderRequestError as exc:
            raise ServiceInputError("consumer", str(exc)) from None
        except TaskSpecError as exc:
            raise ServiceInputError(f"spec.{exc.field}", exc.reason, exc.code) from None
        try:
            await self.db(ledger.get_account, rules.consumer_account(consumer))
        except ledger.NotFoundError:
            raise UnknownServiceError(
                f"no consumer {consumer!r} (create it first)", "unknown_consumer"
            ) from None
        await self.db(accounts.require_active, "consumer", consumer)  # as orders and tasks do
        now = self.clock_ms()
        values = {
            "name": name,
            "consumer": consumer,
            "spec": text,
            "replicas": replicas,
            "max_replicas": max_replicas,
            "scale_in_flight": float(body.scale_in_flight),
            "scale_window_s": float(body.scale_window_s),
            "health_path": check_health_path(body.health_path),
            "created_ms": now,
            "updated_ms": now,
        }
        ids = [rules.new_trade_id(self.name) for _ in range(replicas)]
        created, service = await self.db(store.insert_service, values, ids)
        if not created:
            same = {k: v for k, v in values.items() if k not in ("created_ms", "updated_ms")}
            if any(getattr(service, k) != v for k, v in same.items()):
                raise ServiceExistsError(f"a service {name!r} exists with other settings")
            return False, service
        for replica_id in ids:
            await self._submit(service, replica_id)
        return True, service

    async def _submit(self, service: Service, replica_id: str) -> None:
        """Submit a replica's task under its stored id; a task already stored under it (submitted
        meanwhile by a reconcile, of this process or another) is the same one: the insert is atomic."""
        await self.tasks.submit(service.consumer, replica_spec(service, replica_id), replica_id)

    async def get(self, caller: Principal, name: str) -> Service:
        """A service the caller may see (UnknownServiceError otherwise, alike for missing and foreign)."""
        service = await self.db(store.get_service, name) if len(name) <= 63 else None
        if service is None or (not caller.is_admin and service.consumer != caller.consumer):
            raise UnknownServiceError(f"no service {name!r}")
        assert isinstance(service, Service)
        return service

    async def list_for(self, caller: Principal) -> list[Service]:
        """The caller's services (the admin's: every one), by name."""
        found: list[Service] = await self.db(store.list_services, caller.consumer)
        return found

    async def replicas(self, name: str) -> list[Replica]:
        """A service's replicas, oldest first."""
        found: list[Replica] = await self.db(store.replicas_of, name)
        return found

    async def scale(self, caller: Principal, name: str, replicas: object) -> Service:
        """Set the wanted replica count (up to the service's `max_replicas`); reconciling follows."""
        service = await self.get(caller, name)
        count = check_replicas(replicas, service.max_replicas)
        await self.db(store.set_replicas, name, count, self.clock_ms())
        return await self.get(caller, name)

    async def grow(self, service: Service) -> bool:
        """Scale-out: one more wanted replica (False at `max_replicas`)."""
        if service.replicas >= service.max_replicas:
            return False
        done: bool = await self.db(store.set_replicas, service.name, service.replicas + 1, self.clock_ms())
        return done

    async def pin(self, caller: Principal, name: str, weights: dict[str, object]) -> list[Replica]:
        """Pin replicas' weights (0 drains, None unpins); refused whole if one is bad or all would be 0."""
        await self.get(caller, name)
        replicas = await self.replicas(name)
        known = {r.id for r in replicas}
        if not weights:
            raise ServiceInputError("weights", "name at least one replica", "bad_weight")
        checked: dict[str, int | None] = {}
        for replica_id, weight in weights.items():
            if replica_id not in known:
                raise UnknownReplicaError(f"service {name!r} has no replica {replica_id!r}")
            checked[replica_id] = check_weight(weight)
        check_weights(checked, replicas)
        await self.db(store.pin, name, checked, self.clock_ms())
        return await self.replicas(name)

    async def delete(self, caller: Principal, name: str) -> Service:
        """Stop every replica and forget the service."""
        service = await self.get(caller, name)
        for replica in await self.replicas(name):
            await self._stop(replica.id)
        await self.db(store.delete_service, name)
        return service

    async def _stop(self, replica_id: str) -> None:
        try:
            await self.tasks.stop(ADMIN, replica_id)
        except TaskError as exc:  # ended already (or never stored): nothing runs
            log.debug("replica %s not stopped: %s", replica_id, exc)

    async def reconcile(self) -> None:
        """Make every service's live replicas as many as wanted (see the module docstring)."""
        services: list[Service] = await self.db(store.list_services, None)
        for service in services:
            await self._reconcile(service)

    async def _reconcile(self, service: Service) -> None:
        live: list[Replica] = []
        for replica in await self.replicas(service.name):
            task: Task | None = await self.tasks.tasks.get(replica.id)
            if task is None:
                await self._submit(service, replica.id)  # stored, not yet submitted (a crash)
                live.append(replica)
            elif task.ended or task.state == "stopping":
                log.info(
                    "service %s: replica %s left (%s)", service.name, replica.id, task.outcome or task.state
                )
                await self.db(store.remove_replica, replica.id)
            else:
                live.append(replica)
        for _ in range(service.replicas - len(live)):
            replica_id = rules.new_trade_id(self.name)
            if not await self.db(store.add_replica, service.name, replica_id, self.clock_ms()):
                return
            await self._submit(service, replica_id)
        for replica in sorted(live, key=lambda r: (r.created_ms, r.id))[service.replicas :]:
            await self._stop(replica.id)
            await self.db(store.remove_replica, replica.id)
