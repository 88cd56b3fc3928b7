"""Data express benchmark: moving a 512 MiB file of random bytes through the express, against a raw
two-hop socket relay of the same bytes, plus the relay's memory, the cap's accuracy and the downtime
of moving the training program's state.

- express: source `cpnode-storage`, `cpnode express` and destination `cpnode-storage`, three
  processes on loopback; a job with the source's manifest (built once beforehand, as a checkpoint
  does, and timed on its own) moves the file in verified chunks and commits it (whole-file hash,
  fsync, rename). Timed from the job's creation to `completed`.
- baseline: `bench.express_raw`, source → relay → destination as three processes with plain
  sockets, no hashing, no fsync. Timed from the first byte sent to the last byte written.
- the destination's disk floor: the same file written in chunk-sized O_DIRECT writes from one
  page-aligned buffer, then fsync, on the destination's file system, with no network and no hashing
  (what any move that ends on the device must spend; the baseline writes to the page cache only);
- rounds alternate (baseline, express, disk floor, ...) after one warm-up round of each; the median of each
  counts, and their ratio.
- the express process's peak RSS (VmHWM) after all rounds, against workers × chunk + 64 MiB;
- a job capped at 40 MiB/s: bytes done over a 10 s window against the cap;
- the training program (128 MiB of state) on one local pool, destination deployed on another:
  checkpoint → stop → express job → start with restore → the program says it resumed.

With --before DIR a second express (its two storage processes and `cpnode express`) runs from the
source tree DIR (e.g. `git archive main | tar -x -C DIR`), and each round times the raw relay, then
the two expresses in turns (the order reversed every other round): before / after in one run, with
the CPU each express's three processes spent per move (`/proc/PID/stat`).

With --downtime-rounds N only the training move is measured, N times with chunk writes through
O_DIRECT and N times without (CPNODE_UPLOAD_O_DIRECT=0), alternating; medians of each.

Run: .venv/bin/python -m bench express [--rounds N] [--before DIR] [--downtime-rounds N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import mmap
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.report import bench_parser, emit_json
from connectors.contract import InstanceSpec, Program, StorageEndpoint
from connectors.express import ExpressClient, JobSpec
from connectors.manifest import Manifest
from connectors.pools.local import LocalPool
from connectors.storage import build_manifest
from connectors.upload_files import DIRECT_ENV, open_direct

MIB = 1 << 20
FILE_BYTES = 512 * MIB
# The product's defaults, as a migration uses them.
WORKERS: int = JobSpec.model_fields["workers"].default
CHUNK_BYTES: int = JobSpec.model_fields["chunk_bytes"].default
CAP = 40 * MIB
TASKS = Path(__file__).resolve().parent.parent / "configs" / "tasks"
TRAIN_ARGS = ("--steps", "400", "--hidden", "8192", "--features", "2048", "--samples", "256", "--batch", "8")


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    parser = bench_parser("Data express: a 512 MiB move against a raw two-hop socket relay.")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each, alternating (default 5)")
    parser.add_argument(
        "--downtime-rounds",
        type=int,
        default=0,
        help="only the training move, N rounds with O_DIRECT chunk writes and N without, alternating",
    )
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="a source tree of an earlier express, timed in turns with this one in the same rounds",
    )
    return parser


def _spawn(argv: list[str], tree: Path | None = None) -> tuple[subprocess.Popen[str], str]:
    """Start a process (its modules from source tree `tree` if given); return it and its first line
    of output."""
    env = None if tree is None else {**os.environ, "PYTHONPATH": str(tree)}
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=tree, env=env)
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    if process.stdout is not None:
        process.stdout.close()


def _random_file(path: Path, size: int) -> None:
    with path.open("wb") as handle:
        for _ in range(size // (8 * MIB)):
            handle.write(os.urandom(8 * MIB))


def raw_round(file: Path, out: Path) -> float:
    """One baseline move; seconds from the first byte sent to the last byte written."""
    raw = [sys.executable, "-m", "bench.express_raw"]
    destination, port = _spawn([*raw, "destination", str(out)])
    relay, relay_port = _spawn([*raw, "relay", port])
    source, started = _spawn([*raw, "source", relay_port, str(file)])
    assert destination.stdout is not None
    done = destination.stdout.readline().split()
    for process in (source, relay, destination):
        process.wait(120)
        _stop(process)
    assert int(done[1]) == file.stat().st_size, done
    out.unlink()
    return float(done[2]) - float(started.split()[1])


def disk_round(file: Path, out: Path) -> float:
    """The disk floor: seconds to write `file` to `out` in CHUNK_BYTES O_DIRECT writes (buffered where
    the file system refuses O_DIRECT), then fsync. The caller removes `out`."""
    if file.stat().st_size % 4096:
        raise ValueError(f"{file} is not a whole number of 4 KiB blocks, as O_DIRECT writes need")
    out.touch()
    buffer = mmap.mmap(-1, CHUNK_BYTES)  # page-aligned, as O_DIRECT needs
    started = time.monotonic()
    direct = open_direct(out)
    fd = direct if direct >= 0 else os.open(out, os.O_WRONLY)
    try:
        with file.open("rb", buffering=0) as source:
            offset = 0
            while got := source.readinto(buffer):
                os.pwrite(fd, memoryview(buffer)[:got], offset)
                offset += got
        os.fsync(fd)
    finally:
        os.close(fd)
        buffer.close()
    return time.monotonic() - started


async def _until(
    check: Callable[[], Awaitable[bool]], interval_s: float = 0.05, timeout_s: float = 300
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {timeout_s} s")
        await asyncio.sleep(interval_s)


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Setup:
    """Source and destination storage processes and an express process under `base` (their modules
    from source tree `tree`, if given, else this one)."""

    def __init__(self, base: Path, tree: Path | None = None) -> None:
        self.base, self.tree = base, tree
        self.processes: list[subprocess.Popen[str]] = []
        self.urls: dict[str, str] = {}

    def start(self) -> None:
        """Start the three processes."""
        for name in ("source", "destination"):
            (self.base / name / "state").mkdir(parents=True)
            argv = [sys.executable, "-m", "connectors.storage_main", "--root", str(self.base / name)]
            process, line = _spawn([*argv, "--token-file", str(self.base / f"{name}.token")], self.tree)
            self.processes.append(process)
            self.urls[name] = line.rsplit(" ", 1)[-1]
        express = [sys.executable, "-m", "node", "express", "--token-file", str(self.base / "express.token")]
        process, line = _spawn([*express, "--state-file", str(self.base / "express-jobs.json")], self.tree)
        self.processes.append(process)
        self.urls["express"] = line.rsplit(" ", 1)[-1]

    @property
    def express_pid(self) -> int:
        """The express process's id."""
        return self.processes[2].pid

    def cpu_s(self) -> list[float]:
        """CPU seconds the source, the destination and the express have each used so far."""
        return [_cpu_s(process.pid) for process in self.processes]

    def token(self, name: str) -> str:
        """A process's bearer token."""
        return (self.base / f"{name}.token").read_text(encoding="utf-8").strip()

    def endpoint(self, name: str) -> StorageEndpoint:
        """Bucket `state` of the source or the destination."""
        return StorageEndpoint(url=self.urls[name], bucket="state", token=self.token(name))

    def client(self) -> ExpressClient:
        """A client of the express's control API."""
        return ExpressClient(self.urls["express"], self.token("express"))

    def spec(self, manifest: Manifest) -> JobSpec:
        """A job moving `manifest`'s files from this setup's source to its destination."""
        return JobSpec(
            source=self.endpoint("source"),
            destination=self.endpoint("destination"),
            manifest=manifest,
            workers=WORKERS,
        )

    def stop(self) -> None:
        """Stop every process."""
        for process in self.processes:
            _stop(process)


async def express_round(setup: Setup, spec: JobSpec, cpu: list[list[float]] | None = None) -> float:
    """One express move; seconds from creating the job to its completion (commit included). The CPU
    seconds each of its three processes spent meanwhile (source, destination, express) are appended
    to `cpu`, if given."""
    used = setup.cpu_s()
    async with setup.client() as client:
        started = time.monotonic()
        job = await client.create(spec)
        done = await client.wait(job.id, timeout_s=600)
        elapsed = time.monotonic() - started
    assert done.state == "completed", done.error
    if cpu is not None:
        cpu.append([after - before for after, before in zip(setup.cpu_s(), used, strict=True)])
    (setup.base / "destination" / "state" / "big.bin").unlink()
    return elapsed


async def cap_accuracy(setup: Setup, spec: JobSpec) -> float:
    """Bytes per second over 10 s of a job capped at CAP, as a fraction of the cap."""
    async with setup.client() as client:
        job = await client.create(spec.model_copy(update={"rate_cap_bytes_per_s": CAP}))

        async def started_moving() -> bool:
            return (await client.job(job.id)).progress.bytes_done >= 8 * MIB

        await _until(started_moving)
        first, started = (await client.job(job.id)).progress.bytes_done, time.monotonic()
        await asyncio.sleep(10)
        last, ended = (await client.job(job.id)).progress.bytes_done, time.monotonic()
        await client.cancel(job.id)
        await client.wait(job.id, timeout_s=60)
    return (last - first) / (ended - started) / CAP


async def training_downtime(base: Path, setup: Setup) -> dict[str, float]:
    """Seconds of each step of moving the training program's state between two local pools."""
    pools = (LocalPool("a", base / "pool-a", slots=1), LocalPool("b", base / "pool-b", slots=1))
    for pool in pools:
        await pool.start()
    program = Program(
        command=[sys.executable, str(TASKS / "train_numpy.py"), *TRAIN_ARGS],
        env={"OPENBLAS_NUM_THREADS": "1", "TRAIN_SEED": "7"},
        outputs=["out"],
    )
    instance_spec = InstanceSpec(name="train", region_id="local", flavor_id="local-1")
    try:
        source = await pools[0].create_instance(instance_spec)
        await pools[0].deploy(source.id, program)
        await pools[0].start_instance(source.id)

        async def trained_a_while() -> bool:
            return b"step 50 " in (await pools[0].logs(source.id, 0, 1 << 20)).data()

        await _until(trained_a_while)
        target = await pools[1].create_instance(instance_spec)
        await pools[1].deploy(target.id, program)
        destination = await pools[1].storage_endpoint(target.id)
        marks = [time.monotonic()]
        checkpoint = await pools[0].checkpoint(source.id, timeout_s=120)
        await pools[0].stop_instance(source.id)
        marks.append(time.monotonic())
        async with setup.client() as client:
            job = await client.create(
                JobSpec(
                    source=checkpoint.storage,
                    destination=destination,
                    workers=WORKERS,
                    chunk_bytes=CHUNK_BYTES,
                )
            )
            done = await client.wait(job.id, timeout_s=600)
        assert done.state == "completed", done.error
        marks.append(time.monotonic())
        await pools[1].start_instance(target.id, restore=True)

        async def resumed() -> bool:
            return b"resumed at step" in (await pools[1].logs(target.id, 0, 1 << 20)).data()

        await _until(resumed, interval_s=0.01)
        marks.append(time.monotonic())
        await pools[1].stop_instance(target.id)
        return {
            "state_mib": round(sum(f.size_bytes for f in checkpoint.files) / MIB, 1),
            "checkpoint_and_stop_s": round(marks[1] - marks[0], 2),
            "transfer_s": round(marks[2] - marks[1], 2),
            "restore_to_running_s": round(marks[3] - marks[2], 2),
            "downtime_s": round(marks[3] - marks[0], 2),
        }
    finally:
        for pool in pools:
            await pool.close()


async def direct_or_not(base: Path, setup: Setup, rounds: int) -> dict[str, Any]:
    """The training move's downtime with chunk writes through O_DIRECT and without, alternating
    (the destination pool's storage runs in this process and reads the setting per upload)."""
    results: dict[str, list[dict[str, float]]] = {"o_direct": [], "buffered": []}
    try:
        for index in range(2 * rounds):
            name = ("o_direct", "buffered")[index % 2]
            os.environ[DIRECT_ENV] = "1" if name == "o_direct" else "0"
            results[name].append(await training_downtime(base / f"round-{index}", setup))
            print(f"{name}: {results[name][-1]}")
    finally:
        os.environ.pop(DIRECT_ENV, None)
    figures: dict[str, Any] = {}
    for name, rows in results.items():
        for key in ("downtime_s", "transfer_s", "checkpoint_and_stop_s", "restore_to_running_s"):
            figures[f"{name}_{key}"] = round(statistics.median(r[key] for r in rows), 2)
    figures["state_mib"] = results["o_direct"][0]["state_mib"]
    print(
        f"training move ({figures['state_mib']} MiB), medians of {rounds}: downtime O_DIRECT "
        f"{figures['o_direct_downtime_s']} s (transfer {figures['o_direct_transfer_s']} s) vs buffered "
        f"{figures['buffered_downtime_s']} s (transfer {figures['buffered_transfer_s']} s); "
        f"load {os.getloadavg()[0]:.1f}"
    )
    return figures


def _cpu_medians(rows: list[list[float]]) -> list[float]:
    """The median CPU seconds of each process over the rounds, and of the three together."""
    columns = [*zip(*rows, strict=True), [sum(row) for row in rows]]
    return [round(statistics.median(column), 2) for column in columns]


async def timed_rounds(
    rounds: int, base: Path, setup: Setup, manifest: Manifest, before: Setup | None
) -> dict[str, Any]:
    """The raw relay, the express (and the `before` one, in turns) and the disk floor, one warm-up
    round of each and then `rounds` alternating rounds: medians, ratios and each round's times."""
    figures: dict[str, Any] = {}
    big, spec = base / "source" / "state" / "big.bin", setup.spec(manifest)
    raw_round(big, base / "raw-out.bin")  # warm-up of each, not counted: the first writes of a
    await express_round(setup, spec)  # run touch memory the VM has not backed yet
    if before is not None:
        await express_round(before, before.spec(manifest))
    floor_file = base / "destination" / "disk-floor.bin"
    disk_round(big, floor_file)
    raw_s: list[float] = []
    disk_s: list[float] = []
    express_s: list[float] = []
    before_s: list[float] = []
    express_cpu: list[list[float]] = []
    before_cpu: list[list[float]] = []
    loads = [os.getloadavg()[0]]
    for index in range(rounds):
        raw_s.append(raw_round(big, base / "raw-out.bin"))
        if before is not None and index % 2:  # every other round the earlier express goes first
            before_s.append(await express_round(before, before.spec(manifest), before_cpu))
        express_s.append(await express_round(setup, spec, express_cpu))  # after the raw relay, as before
        if before is not None and not index % 2:
            before_s.append(await express_round(before, before.spec(manifest), before_cpu))
        disk_s.append(disk_round(big, floor_file))
        floor_file.unlink()
    loads.append(os.getloadavg()[0])
    if before is not None:
        raw_median, before_median = statistics.median(raw_s), statistics.median(before_s)
        figures.update(
            before_tree=str(before.tree),
            before_rounds_s=[round(t, 2) for t in before_s],
            before_ratio=round(raw_median / before_median, 2),
            before_cpu_s=_cpu_medians(before_cpu),
            after_vs_before_time=round(statistics.median(express_s) / before_median, 2),
        )
        print(
            f"before ({before.tree}): median {before_median:.2f} s, ratio {figures['before_ratio']:.2f}; "
            f"after: median {statistics.median(express_s):.2f} s; after / before time "
            f"{figures['after_vs_before_time']:.2f}; CPU per move (source, destination, express, all) "
            f"{figures['before_cpu_s']} s → {_cpu_medians(express_cpu)} s"
        )
    figures["load_start_end"] = [round(x, 1) for x in loads]
    figures["express_cpu_s"] = _cpu_medians(express_cpu)
    raw_rate, express_rate = (
        FILE_BYTES / statistics.median(raw_s),
        FILE_BYTES / statistics.median(express_s),
    )
    figures.update(
        raw_mib_per_s=round(raw_rate / MIB),
        express_mib_per_s=round(express_rate / MIB),
        ratio=round(express_rate / raw_rate, 2),
        raw_rounds_s=[round(s, 2) for s in raw_s],
        express_rounds_s=[round(s, 2) for s in express_s],
        disk_floor_s=round(statistics.median(disk_s), 2),
        disk_rounds_s=[round(s, 2) for s in disk_s],
        floor_vs_raw=round(statistics.median(raw_s) / statistics.median(disk_s), 2),
    )
    print(
        f"512 MiB, {WORKERS} workers × {CHUNK_BYTES // MIB} MiB chunks: express median "
        f"{statistics.median(express_s):.2f} s ({express_rate / MIB:.0f} MiB/s) vs raw two-hop relay "
        f"{statistics.median(raw_s):.2f} s ({raw_rate / MIB:.0f} MiB/s): ratio {express_rate / raw_rate:.2f} "
        f"(target ≥ 0.5); CPU per move (source, destination, express, all) {figures['express_cpu_s']} s"
    )
    print(
        f"destination disk floor (O_DIRECT {CHUNK_BYTES // MIB} MiB writes + fsync, no network, no hashing): "
        f"median {figures['disk_floor_s']:.2f} s ({FILE_BYTES / MIB / figures['disk_floor_s']:.0f} MiB/s), "
        f"{figures['floor_vs_raw']:.2f} × the raw relay's rate (under 0.5: the device alone bounds the ratio)"
    )
    return figures


async def main(argv: list[str] | None = None) -> int:
    """Run every measurement and print the figures; with --json end with them as one JSON line."""
    args = build_parser().parse_args(argv)
    figures: dict[str, Any] = {}
    base = Path(tempfile.mkdtemp(prefix="bench-express-"))
    setup = Setup(base)
    before: Setup | None = None
    try:
        setup.start()
        if args.downtime_rounds:
            figures["training_direct_or_not"] = await direct_or_not(base, setup, args.downtime_rounds)
            return _emit(args.json, figures)
        big = base / "source" / "state" / "big.bin"
        _random_file(big, FILE_BYTES)
        started = time.monotonic()
        manifest = build_manifest(base / "source" / "state", CHUNK_BYTES)
        figures["manifest_s"] = round(time.monotonic() - started, 2)
        print(f"manifest of the 512 MiB file built in {figures['manifest_s']} s beforehand")
        spec = setup.spec(manifest)
        if args.before is not None:
            before = Setup(base / "before", args.before.resolve())
            before.start()
            os.link(big, base / "before" / "source" / "state" / "big.bin")
        figures.update(await timed_rounds(args.rounds, base, setup, manifest, before))
        peak, bound = _peak_rss(setup.express_pid), WORKERS * CHUNK_BYTES + 64 * MIB
        figures.update(peak_rss_mib=round(peak / MIB, 1), rss_bound_mib=bound // MIB)
        print(f"express peak RSS {peak / MIB:.1f} MiB (bound workers × chunk + 64 MiB = {bound // MIB} MiB)")
        accuracy = await cap_accuracy(setup, spec)
        figures["cap_accuracy"] = round(accuracy, 3)
        print(
            f"cap {CAP // MIB} MiB/s over 10 s: {accuracy * CAP / MIB:.2f} MiB/s ({(accuracy - 1) * 100:+.1f} %)"
        )
        big.unlink()
        figures["training"] = await training_downtime(base, setup)
        print(f"training program state move: {figures['training']}")
    finally:
        setup.stop()
        if before is not None:
            before.stop()
        shutil.rmtree(base, ignore_errors=True)
    return _emit(args.json, figures)


def _emit(as_json: bool, figures: dict[str, Any]) -> int:
    if as_json:
        emit_json("express", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
