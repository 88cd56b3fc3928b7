"""The `local` pool: instances are sandboxed working directories running real subprocesses.

Capacity: the host's CPUs and memory are split into `slots` (default: one per CPU); flavor
`local-<k>` takes k slots. Each instance lives in `<root>/instances/<id>/` with `work/` (the
program's working directory), `state/` (its state files, served by the storage endpoint),
`control/` (checkpoint files) and `instance.json` (metadata, so a restarted plugin finds it).

Sandbox: the program runs in its own session (killed as a group), with `work/` as its working
directory, an environment holding only PATH, HOME=work/ and what the deployment sets, and resource
limits (address space = its slots' memory, no core files).

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
import contextlib
import os
import secrets
import shutil
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from connectors.contract import (
    Account,
    Capacity,
    Checkpoint,
    ComputePlugin,
    DataSource,
    Flavor,
    Health,
    Instance,
    InstanceSpec,
    Price,
    Program,
    Region,
    StorageEndpoint,
    Usage,
)
from connectors.errors import InvalidRequest, InvalidState, NoCapacity, NotFound, PluginTimeout
from connectors.microbench import cached_measurement
from connectors.storage import StorageServer, StorageService, list_state_files

MIB = 1 << 20
COUNTER_PROGRAM = Path(__file__).with_name("counter_program.py")  # runs with any python3, stdlib only
_STOP_GRACE_S = 5.0


def host_memory_mib() -> int:
    """Physical memory of this host in MiB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MIB


def load_permille() -> int:
    """1-minute load average over CPU count, in thousandths (capped at 1000)."""
    return min(1000, round(os.getloadavg()[0] / (os.cpu_count() or 1) * 1000))


def _available_memory_permille() -> int:
    try:
        fields = dict(
            line.split(":", 1) for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines()
        )
        total = int(fields["MemTotal"].split()[0])
        return round(int(fields["MemAvailable"].split()[0]) / total * 1000)
    except (OSError, KeyError, ValueError):
        return 500  # not Linux: report half free rather than guess either extreme


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
        self._storage = StorageServer(StorageService(self._token, self._bucket), storage_host, storage_port)
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any]) -> LocalPool:
        """Build from `[[pools]]` options: root (required), slots, region, city, price, storage_port."""
        if "root" not in options:
            raise InvalidRequest("the local pool needs option 'root' (a directory)")
        return cls(
            name,
            Path(str(options["root"])),
            slots=int(options["slots"]) if "slots" in options else None,
            region=str(options.get("region", "local")),
            city=str(options.get("city", "110000")),
            price_minor_per_slot_hour=int(options.get("price_minor_per_slot_hour", 100)),
            storage_port=int(options.get("storage_port", 0)),
        )

    # -- lifecycle of the plugin itself ---------------------------------------------------------

    async def start(self) -> None:
        (self.root / "instances").mkdir(parents=True, exist_ok=True)
        for meta in (self.root / "instances").glob("*/instance.json"):
            instance = Instance.model_validate_json(meta.read_text(encoding="utf-8"))
            if instance.state == "running":  # its process did not survive our restart
                self._save(instance.model_copy(update={"state": "stopped"}))
        await self._storage.start()

    async def close(self) -> None:
        for instance_id in list(self._processes):
            await self._terminate(instance_id)
        await self._storage.close()

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
        return sum(
            int(i.flavor_id.split("-")[1])
            for i in self._all()
            if i.state in ("creating", "stopped", "running")
        )

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
                )
                for f in flavors
            ],
            usage=[
                Usage(
                    region_id=self.region.id,
                    cpu_utilisation_permille=load_permille(),
                    free_memory_permille=_available_memory_permille(),
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
        await self._terminate(instance_id)
        for sub in ("work", "state", "control"):
            shutil.rmtree(self._dir(instance_id) / sub, ignore_errors=True)
        return self._save(self._load(instance_id).model_copy(update={"state": "deleted"}))

    async def deploy(self, instance_id: str, program: Program) -> Instance:
        instance = self._load(instance_id)
        if instance.state != "stopped":
            raise InvalidState(f"instance {instance_id} is {instance.state}; deploy needs it stopped")
        if not program.command:
            raise InvalidRequest("the local pool runs commands; give 'command' (images are not supported)")
        return self._save(instance.model_copy(update={"program": program, "exit_code": None}))

    async def start_instance(self, instance_id: str, *, restore: bool = False) -> Instance:
        async with self._lock:
            instance = self._load(instance_id)
            if instance.state != "stopped" or instance.program is None or not instance.program.command:
                raise InvalidState(f"instance {instance_id} is {instance.state} and needs a deployed program")
            base = self._dir(instance_id)
            for stale in ("checkpoint.request", "checkpoint.done", "ready"):
                (base / "control" / stale).unlink(missing_ok=True)
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(base / "work"),
                **instance.program.env,
                "CPNODE_STATE_DIR": str(base / "state"),
                "CPNODE_CONTROL_DIR": str(base / "control"),
                "CPNODE_INSTANCE_ID": instance_id,
            }
            if restore:
                env["CPNODE_RESTORE"] = "1"
            limit = self.slot_memory_mib * int(instance.flavor_id.split("-")[1]) * MIB
            log = (base / "work" / "program.log").open("ab")
            try:
                process = await asyncio.create_subprocess_exec(
                    *instance.program.command,
                    cwd=base / "work",
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=lambda: _limit_resources(limit),
                )
            except OSError as exc:
                raise InvalidRequest(
                    f"cannot start {instance.program.command[0]!r}: {exc.strerror}"
                ) from None
            finally:
                log.close()
            self._processes[instance_id] = process
            self._watchers[instance_id] = asyncio.create_task(self._watch(instance_id, process))
            return self._save(instance.model_copy(update={"state": "running", "exit_code": None}))

    async def stop_instance(self, instance_id: str) -> Instance:
        instance = self._load(instance_id)
        if instance.state not in ("running", "stopped"):
            raise InvalidState(f"instance {instance_id} is {instance.state}")
        await self._terminate(instance_id)
        return self._load(instance_id)

    async def checkpoint(self, instance_id: str, timeout_s: float) -> Checkpoint:
        instance = self._load(instance_id)
        process = self._processes.get(instance_id)
        if instance.state != "running" or process is None:
            raise InvalidState(
                f"instance {instance_id} is {instance.state}; only a running program checkpoints"
            )
        control = self._dir(instance_id) / "control"
        done = control / "checkpoint.done"
        seq = _read_int(done) + 1
        request = control / "checkpoint.request.tmp"
        request.write_text(str(seq), encoding="ascii")
        os.replace(request, control / "checkpoint.request")
        if (control / "ready").exists():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while _read_int(done) < seq:
            if process.returncode is not None:
                raise InvalidState(
                    f"program of {instance_id} exited ({process.returncode}) before checkpointing"
                )
            if time.monotonic() > deadline:
                raise PluginTimeout(f"program of {instance_id} did not checkpoint within {timeout_s} s")
            await asyncio.sleep(0.02)
        files = await asyncio.to_thread(list_state_files, self._dir(instance_id) / "state")
        return Checkpoint(
            instance_id=instance_id, seq=seq, files=files, storage=await self.storage_endpoint(instance_id)
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

    def _bucket(self, bucket: str) -> Path | None:
        try:
            instance = self._load(bucket)
        except NotFound:
            return None
        return None if instance.state == "deleted" else self._dir(bucket) / "state"

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

    async def _watch(self, instance_id: str, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if self._processes.get(instance_id) is process:
            del self._processes[instance_id]
            with contextlib.suppress(NotFound):
                current = self._load(instance_id)
                if current.state == "running":
                    self._save(current.model_copy(update={"state": "stopped", "exit_code": code}))

    async def _terminate(self, instance_id: str) -> None:
        process = self._processes.get(instance_id)
        watcher = self._watchers.pop(instance_id, None)
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), _STOP_GRACE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        if watcher is not None:
            await watcher


def _limit_resources(address_space_bytes: int) -> None:
    import resource  # only in the child, between fork and exec

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (address_space_bytes, address_space_bytes))


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text(encoding="ascii").strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0
