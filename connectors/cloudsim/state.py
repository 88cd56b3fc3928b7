"""The simulated cloud's state, shared by both dialects: instances, asynchronous operations, storage.

No I/O except the checkpoint files written into the storage directory. Operations complete when
the clock passes their due time; `settle()` applies every due completion, and each API request
calls it first, so there is no background task to race with.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from connectors.cloudsim.inventory import Inventory, SimFlavor
from connectors.errors import InvalidState, NoCapacity, NotFound

SimState = Literal["creating", "stopped", "running", "failed", "deleted"]
OpKind = Literal["create", "delete", "start", "stop", "checkpoint"]
Clock = Callable[[], float]


@dataclass
class SimInstance:
    """One simulated instance, owned by one account."""

    id: str
    account: str
    name: str
    region: str
    flavor: str
    state: SimState
    created_s: float
    program: dict[str, Any] | None = None
    checkpoints: int = 0


@dataclass
class Operation:
    """An asynchronous operation: done once the clock passes `due_s`; `result` or `error` then."""

    id: str
    account: str
    kind: OpKind
    instance_id: str
    due_s: float
    done: bool = False
    error: str | None = None
    result: dict[str, Any] = field(default_factory=dict)
    restore: bool = False


class CloudState:
    """Instances and operations of one simulated cloud."""

    def __init__(self, inventory: Inventory, storage_dir: Path, clock: Clock = time.monotonic) -> None:
        self.inventory = inventory
        self.storage_dir = storage_dir
        self.clock = clock
        self.instances: dict[str, SimInstance] = {}
        self.operations: dict[str, Operation] = {}
        self._ids = itertools.count(1)
        self._flavors = {f.id: f for f in inventory.flavors}
        self._stock = {(s.region, s.flavor): s for s in inventory.stock}
        self.storage_url = ""  # set by the server once its storage endpoint listens
        self.storage_token = ""

    # -- reads ------------------------------------------------------------------------------------

    def flavor(self, flavor_id: str) -> SimFlavor:
        """A flavor by id, or NotFound."""
        try:
            return self._flavors[flavor_id]
        except KeyError:
            raise NotFound(f"no flavor {flavor_id!r}") from None

    def used(self, region: str, flavor: str) -> int:
        """How many instances of `flavor` in `region` hold capacity."""
        return sum(
            1
            for i in self.instances.values()
            if i.region == region and i.flavor == flavor and i.state not in ("deleted", "failed")
        )

    def capacity(self) -> list[tuple[str, str, int, int]]:
        """(region, flavor, free, total) for every stocked pair."""
        return [(r, f, max(0, s.total - self.used(r, f)), s.total) for (r, f), s in self._stock.items()]

    def utilisation_permille(self, region: str) -> int:
        """Share of the region's stock in use, in thousandths."""
        total = sum(s.total for (r, _), s in self._stock.items() if r == region)
        used = sum(self.used(r, f) for (r, f) in self._stock if r == region)
        return round(used / total * 1000) if total else 0

    def instance(self, account: str, instance_id: str) -> SimInstance:
        """An instance of `account`, or NotFound (another account's instances do not exist for it)."""
        found = self.instances.get(instance_id)
        if found is None or found.account != account:
            raise NotFound(f"no instance {instance_id!r}")
        return found

    def operation(self, account: str, op_id: str) -> Operation:
        """An operation of `account` (settled first), or NotFound."""
        self.settle()
        found = self.operations.get(op_id)
        if found is None or found.account != account:
            raise NotFound(f"no operation {op_id!r}")
        return found

    def listing(self, account: str) -> list[SimInstance]:
        """The account's instances that are not deleted, oldest first."""
        return [i for i in self.instances.values() if i.account == account and i.state != "deleted"]

    # -- writes -----------------------------------------------------------------------------------

    def _operation(self, account: str, kind: OpKind, instance_id: str, *, restore: bool = False) -> Operation:
        op = Operation(
            id=f"op-{next(self._ids)}",
            account=account,
            kind=kind,
            instance_id=instance_id,
            due_s=self.clock() + self.inventory.op_delay_ms / 1000,
            restore=restore,
        )
        self.operations[op.id] = op
        return op

    def create(self, account: str, name: str, region: str, flavor: str) -> tuple[SimInstance, Operation]:
        """Start creating an instance; capacity is taken at once."""
        self.flavor(flavor)
        stock = self._stock.get((region, flavor))
        if stock is None:
            raise NotFound(f"flavor {flavor!r} is not sold in region {region!r}")
        if self.used(region, flavor) >= stock.total:
            raise NoCapacity(f"no capacity left for {flavor} in {region}")
        instance = SimInstance(
            id=f"i-{next(self._ids):06d}",
            account=account,
            name=name,
            region=region,
            flavor=flavor,
            state="creating",
            created_s=time.time(),
        )
        self.instances[instance.id] = instance
        (self.storage_dir / instance.id).mkdir(parents=True, exist_ok=True)
        return instance, self._operation(account, "create", instance.id)

    def delete(self, account: str, instance_id: str) -> Operation:
        """Start deleting an instance."""
        instance = self.instance(account, instance_id)
        if instance.state == "creating":
            raise InvalidState(f"instance {instance_id} is still being created")
        return self._operation(account, "delete", instance_id)

    def deploy(self, account: str, instance_id: str, program: dict[str, Any]) -> SimInstance:
        """Record the program of a stopped instance (synchronous in both dialects)."""
        instance = self.instance(account, instance_id)
        if instance.state != "stopped":
            raise InvalidState(f"instance {instance_id} is {instance.state}; deploy needs it stopped")
        instance.program = program
        return instance

    def power(self, account: str, instance_id: str, on: bool, *, restore: bool = False) -> Operation:
        """Start or stop the instance's program."""
        instance = self.instance(account, instance_id)
        if on and (instance.state != "stopped" or instance.program is None):
            raise InvalidState(f"instance {instance_id} is {instance.state} and needs a deployed program")
        if not on and instance.state not in ("running", "stopped"):
            raise InvalidState(f"instance {instance_id} is {instance.state}")
        return self._operation(account, "start" if on else "stop", instance_id, restore=restore)

    def checkpoint(self, account: str, instance_id: str) -> Operation:
        """Start a checkpoint of a running instance."""
        instance = self.instance(account, instance_id)
        if instance.state != "running":
            raise InvalidState(
                f"instance {instance_id} is {instance.state}; only running instances checkpoint"
            )
        return self._operation(account, "checkpoint", instance_id)

    def bucket(self, name: str) -> Path | None:
        """The storage directory of a live instance (for the storage endpoint)."""
        found = self.instances.get(name)
        return None if found is None or found.state == "deleted" else self.storage_dir / name

    def settle(self) -> None:
        """Complete every operation whose time has come."""
        now = self.clock()
        for op in self.operations.values():
            if not op.done and op.due_s <= now:
                self._complete(op)

    def _complete(self, op: Operation) -> None:
        op.done = True
        instance = self.instances[op.instance_id]
        if op.kind == "create":
            instance.state = "stopped"
        elif op.kind == "delete":
            instance.state = "deleted"
        elif op.kind == "stop":
            instance.state = "stopped"
        elif op.kind == "start":
            state_file = self.storage_dir / instance.id / "checkpoint.json"
            if op.restore and not state_file.exists():
                op.error = "restore requested but the instance's storage holds no checkpoint.json"
                return
            instance.state = "running"
        elif op.kind == "checkpoint":
            if instance.state != "running":
                op.error = f"instance stopped ({instance.state}) before the checkpoint completed"
                return
            instance.checkpoints += 1
            body = {"instance": instance.id, "seq": instance.checkpoints, "program": instance.program}
            target = self.storage_dir / instance.id / "checkpoint.json"
            target.write_text(json.dumps(body, sort_keys=True), encoding="utf-8")
            op.result = {"seq": instance.checkpoints}
