"""The simulated cloud's state, shared by both dialects: instances, asynchronous operations, storage.

The simulator stands in for a provider's control plane, not for the computation: an instance's
program runs for real in `connectors.sandbox`, the same sandbox as the `local` pool's, under
`<storage dir>/_runs/<instance id>/`, with its state files in its storage bucket
`<storage dir>/<instance id>/`. Operations complete when the clock passes their due time (and, for a
checkpoint, when the program has written it); `settle()` applies every due completion, and each API
request awaits it first, so no background task races with a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from connectors.cloudsim.inventory import Inventory, SimFlavor
from connectors.contract import Program
from connectors.errors import ConnectorError, InvalidState, NoCapacity, NotFound
from connectors.sandbox import RunStatus, Sandbox, check_program
from connectors.storage import list_state_files

SimState = Literal["creating", "stopped", "starting", "running", "failed", "deleted"]
OpKind = Literal["create", "delete", "start", "stop", "checkpoint"]
Clock = Callable[[], float]
RUNS = "_runs"


@dataclass
class SimInstance:
    """One simulated instance, owned by one account; `run` is its program's latest run."""

    id: str
    account: str
    name: str
    region: str
    flavor: str
    lifecycle: Literal["creating", "ready", "deleted"]
    created_s: float
    program: Program | None = None
    run: RunStatus | None = None
    box: Sandbox | None = None

    @property
    def last_run(self) -> RunStatus:
        """Its program's latest run, or one that never started (no times, no exit code, no reason)."""
        return self.run or _NO_RUN

    @property
    def state(self) -> SimState:
        """What the API reports: creating and deleted, else its run's state (`stopped` before any run)."""
        if self.lifecycle != "ready":
            return self.lifecycle
        return "stopped" if self.run is None else self.run.state


_NO_RUN = RunStatus("stopped")


@dataclass
class Operation:
    """An asynchronous operation: done once the clock passes `due_s` (and `pending` has finished)."""

    id: str
    account: str
    kind: OpKind
    instance_id: str
    due_s: float
    done: bool = False
    completing: bool = False
    error: str | None = None
    result: dict[str, int] = field(default_factory=dict)
    restore: bool = False
    pending: asyncio.Task[int] | None = None


class CloudState:
    """Instances and operations of one simulated cloud."""

    def __init__(self, inventory: Inventory, storage_dir: Path, clock: Clock = time.monotonic) -> None:
        self.inventory = inventory
        self.storage_dir = storage_dir
        self.clock = clock
        self.instances: dict[str, SimInstance] = {}
        self.operations: dict[str, Operation] = {}
        self.sandbox = inventory.sandbox_settings()
        self._ids = itertools.count(1)
        self._flavors = {f.id: f for f in inventory.flavors}
        self._stock = {(s.region, s.flavor): s for s in inventory.stock}
        self._quotas = {q.region: q.vcpus for q in inventory.quotas}
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
        """How many instances of `flavor` in `region` hold capacity (every one not deleted)."""
        return sum(
            1
            for i in self.instances.values()
            if i.region == region and i.flavor == flavor and i.lifecycle != "deleted"
        )

    def vcpus_used(self, region: str) -> int:
        """vCPUs of the instances in `region` that hold capacity (what its quota counts)."""
        return sum(
            self._flavors[i.flavor].cpus
            for i in self.instances.values()
            if i.region == region and i.state not in ("deleted", "failed")
        )

    def quotas(self) -> list[tuple[str, int, int]]:
        """(region, vCPU limit, vCPUs used) for every region with a quota."""
        return [(region, limit, self.vcpus_used(region)) for region, limit in self._quotas.items()]

    def capacity(self) -> list[tuple[str, str, int, int]]:
        """(region, flavor, free, total) for every stocked pair; a region's quota bounds what is free."""
        rows = []
        for (r, f), s in self._stock.items():
            free = max(0, s.total - self.used(r, f))
            if r in self._quotas:
                free = min(free, max(0, self._quotas[r] - self.vcpus_used(r)) // self._flavors[f].cpus)
            rows.append((r, f, free, s.total))
        return rows

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

    async def operation(self, account: str, op_id: str) -> Operation:
        """An operation of `account` (settled first), or NotFound."""
        await self.settle()
        found = self.operations.get(op_id)
        if found is None or found.account != account:
            raise NotFound(f"no operation {op_id!r}")
        return found

    def listing(self, account: str) -> list[SimInstance]:
        """The account's instances that are not deleted, oldest first."""
        return [i for i in self.instances.values() if i.account == account and i.lifecycle != "deleted"]

    def box(self, instance: SimInstance) -> Sandbox:
        """The instance's sandbox (its program's runs)."""
        if instance.box is None:

            def record(run: RunStatus) -> None:
                instance.run = run

            base = self.storage_dir / RUNS / instance.id
            instance.box = Sandbox(base, self.storage_dir / instance.id, self.sandbox, record, instance.id)
        return instance.box

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
        if (
            region in self._quotas
            and self.vcpus_used(region) + self._flavors[flavor].cpus > self._quotas[region]
        ):
            raise NoCapacity(f"the vCPU quota of {region} ({self._quotas[region]}) is reached")
        instance = SimInstance(
            id=f"i-{next(self._ids):06d}",
            account=account,
            name=name,
            region=region,
            flavor=flavor,
            lifecycle="creating",
            created_s=time.time(),
        )
        self.instances[instance.id] = instance
        (self.storage_dir / instance.id).mkdir(parents=True, exist_ok=True)
        return instance, self._operation(account, "create", instance.id)

    def delete(self, account: str, instance_id: str) -> Operation:
        """Start deleting an instance."""
        instance = self.instance(account, instance_id)
        if instance.lifecycle == "creating":
            raise InvalidState(f"instance {instance_id} is still being created")
        return self._operation(account, "delete", instance_id)

    def deploy(self, account: str, instance_id: str, program: Program) -> SimInstance:
        """Record the program of an instance whose program is not running (synchronous in both dialects)."""
        instance = self.instance(account, instance_id)
        if instance.state not in ("stopped", "failed"):
            raise InvalidState(f"instance {instance_id} is {instance.state}; deploy needs its program ended")
        check_program(program, self.sandbox)
        instance.program, instance.run = program, None
        return instance

    def power(self, account: str, instance_id: str, on: bool, *, restore: bool = False) -> Operation:
        """Start or stop the instance's program (stopping an ended run changes nothing)."""
        instance = self.instance(account, instance_id)
        if on and (instance.state not in ("stopped", "failed") or instance.program is None):
            raise InvalidState(f"instance {instance_id} is {instance.state} and needs a deployed program")
        if not on and instance.lifecycle != "ready":
            raise InvalidState(f"instance {instance_id} is {instance.state}")
        return self._operation(account, "start" if on else "stop", instance_id, restore=restore)

    def checkpoint(self, account: str, instance_id: str) -> Operation:
        """Ask a running program to checkpoint; the operation completes once it has."""
        instance = self.instance(account, instance_id)
        if instance.state != "running":
            raise InvalidState(
                f"instance {instance_id} is {instance.state}; only running instances checkpoint"
            )
        op = self._operation(account, "checkpoint", instance_id)
        op.pending = asyncio.create_task(self.box(instance).checkpoint(self.inventory.checkpoint_timeout_s))
        return op

    def bucket(self, name: str) -> Path | None:
        """The storage directory of a live instance (for the storage endpoint): its state files, or
        with the outputs suffix what its run kept."""
        instance_id, _, kind = name.partition(".")
        found = self.instances.get(instance_id)
        if found is None or found.lifecycle == "deleted" or kind not in ("", "outputs"):
            return None
        return self.box(found).outputs_dir if kind else self.storage_dir / instance_id

    async def settle(self) -> None:
        """Complete every operation whose time has come."""
        now = self.clock()
        for op in list(self.operations.values()):
            due = op.due_s <= now and (op.pending is None or op.pending.done())
            if op.done or op.completing or not due:
                continue
            # Done only once its effect is in place: completing a start awaits the program's launch,
            # and a poll answered meanwhile must not see the operation done with the program unlaunched.
            op.completing = True
            try:
                await self._complete(op)
            except ConnectorError as exc:
                op.error = str(exc)
            finally:
                op.done, op.completing = True, False

    async def _complete(self, op: Operation) -> None:
        instance = self.instances[op.instance_id]
        if op.kind == "create":
            instance.lifecycle = "ready"
        elif op.kind == "delete":
            if instance.box is not None:
                await instance.box.stop()
            instance.lifecycle = "deleted"
            shutil.rmtree(self.storage_dir / RUNS / instance.id, ignore_errors=True)
            shutil.rmtree(self.storage_dir / instance.id, ignore_errors=True)  # its disk goes with it
        elif op.kind == "stop":
            if instance.box is not None:
                await instance.box.stop()
        elif op.kind == "start":
            if op.restore and not list_state_files(self.storage_dir / instance.id):
                raise InvalidState("restore requested but the instance's storage holds no state files")
            if instance.program is None or instance.state not in ("stopped", "failed"):
                raise InvalidState(f"instance {instance.id} is {instance.state}; it cannot start")
            await self.box(instance).start(instance.program, restore=op.restore)
        elif op.kind == "checkpoint":
            assert op.pending is not None
            try:
                op.result = {"seq": op.pending.result()}
            except ConnectorError as exc:
                op.error = f"the checkpoint failed: {exc}"

    async def close(self) -> None:
        """Stop every program (the simulator is going away)."""
        for instance in self.instances.values():
            if instance.box is not None:
                with contextlib.suppress(ConnectorError):
                    await instance.box.stop("lost")
