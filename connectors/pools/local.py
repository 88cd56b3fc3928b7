"""The `local` pool: instances are sandboxed working directories running real subprocesses.

Capacity: the host's CPUs and memory are split into `slots` (default: one per CPU); flavor
`local-<k>` takes k slots of the same slots (declared as the region's shared capacity, cost k), held
from creation to deletion (a run that ended still holds them: its outputs and log stay readable).
Each instance lives in `<root>/instances/<id>/`: the sandbox's `work/`, `control/`, `outputs/` and
`program.log` (see `connectors.sandbox`), `state/` (its state files, served by the storage
endpoint) and `instance.json` (so a restarted plugin finds it; a run that was going when the
plugin stopped is reported `failed` with reason `lost`).

Sandbox (`connectors.sandbox`): own session, clean environment, address space = its slots' memory,
no core files, inputs fetched and verified, output captured, `max_duration_s` enforced, outputs
kept. Images: this pool runs no containers. The `runtimes` option maps a framework to a local
runtime, e.g. `runtimes = { pytorch = ["python3"] }`: a program with an image of framework
`pytorch` runs as `python3 <command...>` in the sandbox, on the host's own Python (which must have
what the program imports). An image whose framework is not mapped is refused at deploy.

Checkpoint protocol (what a program must do to be migratable):
- the program reads `CPNODE_STATE_DIR` (where its state lives) and `CPNODE_CONTROL_DIR`;
- started with `CPNODE_RESTORE=1`, it loads its state from `CPNODE_STATE_DIR` instead of starting fresh;
- once its SIGUSR1 handler is installed, the program creates `$CPNODE_CONTROL_DIR/ready` (signals
  before that would kill it, so the pool sends none until the file exists);
- to checkpoint, the pool writes the next sequence number n to `$CPNODE_CONTROL_DIR/checkpoint.request`
  and, if `ready` exists, sends SIGUSR1; the program writes its state files into `CPNODE_STATE_DIR`
  (complete files, fsynced), then writes n to `$CPNODE_CONTROL_DIR/checkpoint.done` (write a temp
  file and rename it). Programs that cannot take signals may poll `checkpoint.request` instead;
- the pool waits for `checkpoint.done` to hold n (or times out), then lists the state files with
  their sizes and SHA-256. The program keeps running; stopping it is a separate call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from connectors.contract import (
    Account,
    Capabilities,
    Capacity,
    Checkpoint,
    ComputePlugin,
    DataSource,
    Flavor,
    Health,
    Instance,
    InstanceSpec,
    LogChunk,
    Outputs,
    PluginInfo,
    Price,
    Program,
    Region,
    SharedCapacity,
    StorageEndpoint,
    Usage,
)
from connectors.errors import InvalidRequest, InvalidState, NoCapacity, NotFound
from connectors.grants import Grant
from connectors.microbench import (
    available_memory_permille,
    cached_measurement,
    host_memory_mib,
    load_permille,
)
from connectors.sandbox import (
    InputPolicy,
    RunStatus,
    Sandbox,
    SandboxSettings,
    check_program,
    now_ms,
    parse_runtimes,
)
from connectors.storage import OUTPUTS_SUFFIX, StorageServer, StorageService, list_state_files, outputs_bucket

MIB = 1 << 20
COUNTER_PROGRAM = Path(__file__).with_name("counter_program.py")  # runs with any python3, stdlib only
_HOLDS_SLOTS = ("creating", "stopped", "starting", "running", "failed")


class LocalPool(ComputePlugin):
    """A real pool on this host (reference implementation of the compute contract)."""

    version: ClassVar[str] = "1.0"
    platform: ClassVar[str] = "this host (local subprocess pool)"

    def __init__(
        self,
        name: str,
        root: Path,
        *,
        slots: int | None = None,
        region: str = "local",
        city: str = "110000",
        price_minor_per_slot_hour: int = 100,
        storage_host: str = "127.0.0.1",
        storage_port: int = 0,
        runtimes: Mapping[str, tuple[str, ...]] | None = None,
        inputs: InputPolicy | None = None,
        max_log_bytes: int = 64 << 20,
    ) -> None:
        super().__init__(name)
        self.root = root
        self.cpus = os.cpu_count() or 1
        self.slots = slots or self.cpus
        if not 1 <= self.slots <= 1024:
            raise InvalidRequest(f"slots must be 1–1024, got {self.slots}")
        self.slot_memory_mib = max(64, host_memory_mib() * 8 // 10 // self.slots)
        self.region = Region(id=region, name=f"{name} on this host", city=city)
        self.price = price_minor_per_slot_hour
        self._token = secrets.token_urlsafe(24)
        service = StorageService(self._token, self._bucket, grant_spent=self._grant_spent)
        self._storage = StorageServer(service, storage_host, storage_port)
        self.sandbox = SandboxSettings(
            runtimes=dict(runtimes or {}), inputs=inputs or InputPolicy(), max_log_bytes=max_log_bytes
        )
        self._boxes: dict[str, Sandbox] = {}
        self._lock = asyncio.Lock()  # held by starts, and by close, so none launches once closed
        self._closed = False

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any]) -> LocalPool:
        """Build from `[[pools]]` options: root (required), slots, region, city, price, storage_port,
        runtimes (framework → argv), input_roots (directories `file://` inputs may come from),
        max_input_bytes, max_log_bytes."""
        if "root" not in options:
            raise InvalidRequest("the local pool needs option 'root' (a directory)")
        roots = options.get("input_roots", [])
        roots = [roots] if isinstance(roots, str) else roots
        if not isinstance(roots, list | tuple) or not all(isinstance(r, str) for r in roots):
            raise InvalidRequest("option 'input_roots' must be a list of directories")
        return cls(
            name,
            Path(str(options["root"])),
            slots=int(options["slots"]) if "slots" in options else None,
            region=str(options.get("region", "local")),
            city=str(options.get("city", "110000")),
            price_minor_per_slot_hour=int(options.get("price_minor_per_slot_hour", 100)),
            storage_port=int(options.get("storage_port", 0)),
            runtimes=parse_runtimes(options.get("runtimes", {})),
            inputs=InputPolicy(
                max_input_bytes=int(options.get("max_input_bytes", 1 << 30)),
                input_roots=tuple(Path(r) for r in roots),
            ),
            max_log_bytes=int(options.get("max_log_bytes", 64 << 20)),
        )

    # -- lifecycle of the plugin itself ---------------------------------------------------------

    async def start(self) -> None:
        (self.root / "instances").mkdir(parents=True, exist_ok=True)
        for meta in (self.root / "instances").glob("*/instance.json"):
            instance = Instance.model_validate_json(meta.read_text(encoding="utf-8"))
            if instance.state in ("running", "starting"):  # its program did not survive our restart
                update = {"state": "failed", "reason": "lost", "ended_ms": now_ms()}
                detail = "the pool restarted while the program ran"
                self._save(instance.model_copy(update={**update, "detail": detail}))
        await self._storage.start()

    async def close(self) -> None:
        async with self._lock:  # a start under way finishes first, and is then stopped with the rest
            self._closed = True
        for box in list(self._boxes.values()):
            await box.stop("lost")
        await self._storage.close()

    async def info(self) -> PluginInfo:
        frameworks = sorted(self.sandbox.runtimes)
        capabilities = Capabilities(images="mapped" if frameworks else "none", frameworks=frameworks)
        return PluginInfo(
            name=self.name, version=self.version, platform=self.platform, capabilities=capabilities
        )

    # -- contract -------------------------------------------------------------------------------

    async def health(self) -> Health:
        writable = os.access(self.root, os.W_OK)
        return Health(ok=writable and bool(self._storage.url), detail="" if writable else "root not writable")

    async def ensure_account(self) -> Account:
        return Account(account_id=f"local:{self.name}", platform=self.platform, authenticated=True)

    def _flavors(self) -> list[Flavor]:
        sizes = sorted({1, *(2**k for k in range(1, 11) if 2**k <= self.slots), self.slots})
        return [
            Flavor(
                id=f"local-{k}",
                chip_model="cpu",
                chips=0,
                cpus=max(1, self.cpus * k // self.slots),
                memory_mib=self.slot_memory_mib * k,
                storage_gib=max(1, shutil.disk_usage(self.root).free // (1 << 30) // self.slots * k),
            )
            for k in sizes
        ]

    def _used_slots(self) -> int:
        return sum(int(i.flavor_id.split("-")[1]) for i in self._all() if i.state in _HOLDS_SLOTS)

    async def data_source(self) -> DataSource:
        measurement = await asyncio.to_thread(cached_measurement, self.root / "microbench.json")
        free_slots = self.slots - self._used_slots()
        flavors = self._flavors()
        k_of = {f.id: int(f.id.split("-")[1]) for f in flavors}
        return DataSource(
            regions=[self.region],
            flavors=flavors,
            prices=[
                Price(region_id=self.region.id, flavor_id=f.id, minor_per_hour=self.price * k_of[f.id])
                for f in flavors
            ],
            capacity=[
                Capacity(
                    region_id=self.region.id,
                    flavor_id=f.id,
                    free=max(0, free_slots // k_of[f.id]),
                    total=self.slots // k_of[f.id],
                    cost=k_of[f.id],
                )
                for f in flavors
            ],
            shared=[
                SharedCapacity(
                    region_id=self.region.id, unit="slots", free=max(0, free_slots), total=self.slots
                )
            ],
            usage=[
                Usage(
                    region_id=self.region.id,
                    cpu_utilisation_permille=load_permille(),
                    free_memory_permille=available_memory_permille(),
                    free_network_mbps=0,
                )
            ],
            measurement=measurement,
        )

    async def create_instance(self, spec: InstanceSpec) -> Instance:
        if spec.region_id != self.region.id:
            raise NotFound(f"no region {spec.region_id!r} (this pool has {self.region.id!r})")
        flavor = next((f for f in self._flavors() if f.id == spec.flavor_id), None)
        if flavor is None:
            raise NotFound(f"no flavor {spec.flavor_id!r}")
        async with self._lock:
            if self._used_slots() + int(flavor.id.split("-")[1]) > self.slots:
                raise NoCapacity(f"no free slots for {flavor.id}")
            instance_id = f"{spec.name}-{secrets.token_hex(4)}"
            base = self.root / "instances" / instance_id
            for sub in ("work", "state", "control"):
                (base / sub).mkdir(parents=True)
            instance = Instance(
                id=instance_id,
                name=spec.name,
                region_id=spec.region_id,
                flavor_id=spec.flavor_id,
                state="stopped",
                created_ms=int(time.time() * 1000),
            )
            self._save(instance)
        return instance

    async def get_instance(self, instance_id: str) -> Instance:
        return self._load(instance_id)

    async def list_instances(self) -> list[Instance]:
        return [i for i in self._all() if i.state != "deleted"]

    async def delete_instance(self, instance_id: str) -> Instance:
        instance = self._load(instance_id)
        if instance.state == "deleted":
            return instance
        box = self._boxes.pop(instance_id, None)
        if box is not None:
            await box.stop()
        base = self._dir(instance_id)
        for sub in ("work", "state", "control", "outputs"):
            shutil.rmtree(base / sub, ignore_errors=True)
        for leftover in ("program.log", "outputs.json"):
            (base / leftover).unlink(missing_ok=True)
        return self._save(self._load(instance_id).model_copy(update={"state": "deleted"}))

    async def deploy(self, instance_id: str, program: Program) -> Instance:
        instance = self._load(instance_id)
        if instance.state not in ("stopped", "failed"):
            raise InvalidState(f"instance {instance_id} is {instance.state}; deploy needs its program ended")
        check_program(program, self.sandbox)
        cleared = {"started_ms": None, "ended_ms": None, "exit_code": None, "reason": None, "detail": ""}
        return self._save(instance.model_copy(update={"program": program, **cleared}))

    async def start_instance(self, instance_id: str, *, restore: bool = False) -> Instance:
        async with self._lock:
            if self._closed:
                raise InvalidState(f"pool {self.name} is closed; instance {instance_id} was not started")
            instance = self._load(instance_id)
            if instance.state not in ("stopped", "failed") or instance.program is None:
                raise InvalidState(f"instance {instance_id} is {instance.state} and needs a deployed program")
            await self._box(instance).start(instance.program, restore=restore)
            return self._load(instance_id)

    async def stop_instance(self, instance_id: str) -> Instance:
        instance = self._load(instance_id)
        if instance.state not in ("starting", "running", "stopped", "failed"):
            raise InvalidState(f"instance {instance_id} is {instance.state}")
        box = self._boxes.get(instance_id)
        if box is not None:
            await box.stop()
        return self._load(instance_id)

    async def checkpoint(self, instance_id: str, timeout_s: float) -> Checkpoint:
        instance = self._load(instance_id)
        box = self._boxes.get(instance_id)
        if instance.state != "running" or box is None:
            raise InvalidState(
                f"instance {instance_id} is {instance.state}; only a running program checkpoints"
            )
        seq = await box.checkpoint(timeout_s)
        files = await asyncio.to_thread(list_state_files, self._dir(instance_id) / "state")
        return Checkpoint(
            instance_id=instance_id, seq=seq, files=files, storage=await self.storage_endpoint(instance_id)
        )

    async def logs(self, instance_id: str, offset: int = 0, limit: int = 65536) -> LogChunk:
        instance = self._load(instance_id)
        if offset < 0 or limit < 0:
            raise InvalidRequest("offset and limit must not be negative")
        return await asyncio.to_thread(self._box(instance).logs, offset, limit)

    async def outputs(self, instance_id: str) -> Outputs:
        instance = self._load(instance_id)
        if instance.state == "deleted":
            raise InvalidState(f"instance {instance_id} is deleted")
        files = await asyncio.to_thread(self._box(instance).kept_outputs)
        storage = StorageEndpoint(
            url=self._storage.url, bucket=outputs_bucket(instance_id), token=self._token
        )
        return Outputs(
            instance_id=instance_id, complete=files is not None, files=files or [], storage=storage
        )

    async def storage_endpoint(self, instance_id: str) -> StorageEndpoint:
        instance = self._load(instance_id)
        if instance.state == "deleted":
            raise InvalidState(f"instance {instance_id} is deleted")
        return StorageEndpoint(url=self._storage.url, bucket=instance_id, token=self._token)

    # -- internals ------------------------------------------------------------------------------

    def _dir(self, instance_id: str) -> Path:
        if "/" in instance_id or instance_id.startswith("."):
            raise NotFound(f"no instance {instance_id!r}")
        return self.root / "instances" / instance_id

    def _grant_spent(self, grant: Grant) -> str | None:
        """A transfer grant fills an instance's state before its program starts from it, not after."""
        try:
            instance = self._load(grant.bucket)
        except NotFound:
            return f"no instance {grant.bucket}"
        if instance.started_ms is not None or instance.state not in ("creating", "stopped"):
            return f"instance {grant.bucket} has started: its state takes no more writes by credential"
        return None

    def _bucket(self, bucket: str) -> Path | None:
        instance_id = bucket.removesuffix(OUTPUTS_SUFFIX)
        try:
            instance = self._load(instance_id)
        except NotFound:
            return None
        if instance.state == "deleted":
            return None
        return self._dir(instance_id) / ("outputs" if bucket.endswith(OUTPUTS_SUFFIX) else "state")

    def _box(self, instance: Instance) -> Sandbox:
        box = self._boxes.get(instance.id)
        if box is None:
            base = self._dir(instance.id)
            memory = self.slot_memory_mib * int(instance.flavor_id.split("-")[1]) * MIB
            settings = dataclasses.replace(self.sandbox, memory_bytes=memory)
            box = Sandbox(
                base, base / "state", settings, lambda run: self._record(instance.id, run), instance.id
            )
            self._boxes[instance.id] = box
        return box

    def _record(self, instance_id: str, run: RunStatus) -> None:
        """Store a change of the instance's run (a deleted instance stays deleted)."""
        try:
            current = self._load(instance_id)
        except NotFound:
            return
        if current.state != "deleted":
            self._save(current.model_copy(update=dataclasses.asdict(run)))

    def _load(self, instance_id: str) -> Instance:
        try:
            text = (self._dir(instance_id) / "instance.json").read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NotFound(f"no instance {instance_id!r}") from None
        return Instance.model_validate_json(text)

    def _save(self, instance: Instance) -> Instance:
        path = self._dir(instance.id) / "instance.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(instance.model_dump_json(), encoding="utf-8")
        os.replace(temporary, path)
        return instance

    def _all(self) -> list[Instance]:
        metas = sorted((self.root / "instances").glob("*/instance.json"))
        return [Instance.model_validate_json(m.read_text(encoding="utf-8")) for m in metas]
