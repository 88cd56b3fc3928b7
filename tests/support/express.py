"""Real processes for data-express tests: storage endpoints (`cpnode-storage`) and `cpnode express`,
all on 127.0.0.1, plus files of random bytes and a way to read a process's peak memory."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import aiohttp

from connectors.contract import StorageEndpoint
from connectors.express import ExpressClient, JobSpec, JobView
from tests.support.polling import eventually
from tests.support.sims import SimProcess

BUCKET = "state"


MIB = 1 << 20


class Storage:
    """A `cpnode-storage` process serving the buckets under `root` (bucket `state` made up front)."""

    def __init__(self, root: Path, name: str, options: tuple[str, ...] = ()) -> None:
        self.root = root
        self.options = options  # more command-line options of `cpnode-storage`
        (root / BUCKET).mkdir(parents=True, exist_ok=True)
        self.token_file = root.parent / f"{name}.token"
        self.port = 0
        self.process: SimProcess | None = None

    @property
    def bucket(self) -> Path:
        """The directory of bucket `state`."""
        return self.root / BUCKET

    @property
    def token(self) -> str:
        """The bearer token (the process creates the file)."""
        return self.token_file.read_text(encoding="utf-8").strip()

    @property
    def url(self) -> str:
        """The endpoint's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int | None = None) -> str:
        """Start (on `port`, or the port it had, or any free one); return the URL."""
        argv = [sys.executable, "-m", "connectors.storage_main", "--root", str(self.root)]
        argv += ["--token-file", str(self.token_file), "--port", str(self.port if port is None else port)]
        self.process = SimProcess([*argv, *self.options])
        url = self.process.start()
        self.port = int(url.rsplit(":", 1)[1])
        return url

    @property
    def pid(self) -> int:
        """The process id."""
        assert self.process is not None
        assert self.process.proc is not None
        return self.process.proc.pid

    def kill(self) -> None:
        """SIGKILL it."""
        if self.process is not None:
            self.process.kill()

    def stop(self) -> None:
        """Terminate it."""
        if self.process is not None:
            self.process.stop()

    def endpoint(self, url: str | None = None) -> StorageEndpoint:
        """Bucket `state` at this endpoint (or at `url`, a proxy in front of it)."""
        return StorageEndpoint(url=url or self.url, bucket=BUCKET, token=self.token)

    def files(self) -> list[str]:
        """Every file in bucket `state`, upload machinery included, relative and sorted."""
        return sorted(p.relative_to(self.bucket).as_posix() for p in self.bucket.rglob("*") if p.is_file())


class ExpressProcess:
    """A `cpnode express` process with its token and state file under `base`."""

    def __init__(self, base: Path) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.token_file = base / "express.token"
        self.state_file = base / "express-jobs.json"
        self.process: SimProcess | None = None
        self.url = ""

    def start(self) -> str:
        """Start; return the control API's URL."""
        argv = [sys.executable, "-m", "node", "express", "--listen", "127.0.0.1:0"]
        argv += ["--token-file", str(self.token_file), "--state-file", str(self.state_file)]
        self.process = SimProcess(argv)
        self.url = self.process.start()
        return self.url

    @property
    def token(self) -> str:
        """The control API's bearer token."""
        return self.token_file.read_text(encoding="utf-8").strip()

    @property
    def pid(self) -> int:
        """The process id."""
        assert self.process is not None
        assert self.process.proc is not None
        return self.process.proc.pid

    def client(self, url: str | None = None) -> ExpressClient:
        """A control API client (to `url`, a proxy in front of it, if given)."""
        return ExpressClient(url or self.url, self.token)

    def kill(self) -> None:
        """SIGKILL it."""
        if self.process is not None:
            self.process.kill()

    def stop(self) -> None:
        """Terminate it."""
        if self.process is not None:
            self.process.stop()


def random_file(path: Path, size: int) -> str:
    """Write `size` random bytes to `path`; return their SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MIB))
            digest.update(block)
            handle.write(block)
            left -= len(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    """SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(4 * MIB):
            digest.update(block)
    return digest.hexdigest()


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident memory (VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


async def upload_status(storage: Storage, path: str) -> dict[str, object]:
    """The destination's answer for the open upload of `path` (its committed-chunk map)."""
    url = f"{storage.url}/storage/v1/{BUCKET}/{path}?chunked"
    headers = {"Authorization": f"Bearer {storage.token}"}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        body: dict[str, object] = await response.json()
        body["status"] = response.status
        return body


async def wait_state(client: ExpressClient, job_id: str, states: set[str], timeout_s: float = 30) -> JobView:
    """Poll the job until its state is one of `states`."""
    seen: list[JobView] = []

    async def reached() -> bool:
        seen.append(await client.job(job_id))
        return seen[-1].state in states

    try:
        await eventually(reached, timeout_s, f"job {job_id} in {states}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {seen[-1] if seen else None}") from None
    return seen[-1]


async def wait_progress(client: ExpressClient, job_id: str, chunks: int, timeout_s: float = 30) -> JobView:
    """Poll the job until at least `chunks` chunks are done."""
    seen: list[JobView] = []

    async def reached() -> bool:
        seen.append(await client.job(job_id))
        return seen[-1].progress.chunks_done >= chunks or seen[-1].finished

    await eventually(reached, timeout_s, f"{chunks} chunks of job {job_id}")
    return seen[-1]


def spec(source: StorageEndpoint, destination: StorageEndpoint, **options: object) -> JobSpec:
    """A job spec with test-sized defaults: 256 KiB chunks, 4 workers, quick backoff."""
    values: dict[str, object] = {
        "source": source,
        "destination": destination,
        "chunk_bytes": 256 << 10,
        "workers": 4,
        "backoff_base_ms": 50,
        "backoff_max_ms": 400,
        "request_timeout_s": 10,
    }
    values.update(options)
    return JobSpec.model_validate(values)
