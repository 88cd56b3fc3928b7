"""The clients of the group-commit benchmark (bench/ledger_group.py): one backend and account count,
and how each variant sends its transfers, plus a lone caller's latency on each path."""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import make_url

from bench.pgledger_equivalent import account_ids, pg_transfer, run_clients, sqlite_transfer
from ledger import (
    AccountKind,
    AccountSpec,
    GroupCommitter,
    TransferKind,
    TransferRequest,
    create_accounts,
    submit,
)
from node.db import make_engine, upgrade

CLIENTS, BASELINE_CLIENTS = 32, 8
# PostgreSQL: each side's connections name themselves, so their backends' CPU can be found.
LEDGER_APP, BASELINE_APP = "cpnode-bench-ledger", "cpnode-bench-baseline"


class Side:
    """One backend and account count: the databases, the node, and how to run each variant."""

    def __init__(
        self,
        backend: str,
        accounts: int,
        ledger_url: str,
        baseline: Callable[..., Any],
        node: tuple[str, str, int],
    ) -> None:
        self.backend, self.accounts = backend, accounts
        self.node_url, self.token, self.node_pid = node
        self.node_cpu_per_request: list[float] = []
        self.connect_baseline = baseline
        if backend == "postgresql":
            ledger_url = (
                make_url(ledger_url)
                .update_query_dict({"application_name": LEDGER_APP})
                .render_as_string(False)
            )
        self.engine = make_engine(ledger_url, pool_size=CLIENTS)
        # Per variant: (client process CPU, backend CPU) per transfer in seconds, PostgreSQL only.
        self.cpu: dict[str, list[tuple[float, float]]] = {}
        upgrade(self.engine)
        self.ids = account_ids(accounts)
        specs = [AccountSpec(a, "CNY", AccountKind.PROVIDER) for a in self.ids]
        for start in range(0, len(specs), 1000):
            create_accounts(self.engine, specs[start : start + 1000])
        self.groups: list[float] = []

    def run(self, variant: str, tag: str, duration_s: float, seed: int) -> tuple[int, float]:
        """Run one variant for `duration_s`: (transfers, seconds)."""
        if variant == "baseline":
            return self.measured(
                variant, BASELINE_APP, lambda finished: self.run_baseline(duration_s, seed, finished)
            )
        if variant == "http":
            return asyncio.run(self.run_http(tag, duration_s, seed))
        if variant == "direct":
            return self.run_threads(lambda batch: submit(self.engine, batch), tag, duration_s, seed)
        committer = GroupCommitter(self.engine)
        try:
            if variant == "tasks":

                def tasks(finished: Callable[[], object]) -> tuple[int, float]:
                    result = asyncio.run(self.run_tasks(committer, tag, duration_s, seed))
                    finished()
                    return result

                result = self.measured(variant, LEDGER_APP, tasks)
            else:
                result = self.run_threads(committer.submit, tag, duration_s, seed)
        finally:
            committer.close()
        self.groups.append(committer.stats.callers / max(1, committer.stats.transactions))
        return result

    def request(self, rnd: random.Random, transfer_id: str) -> list[TransferRequest]:
        """One single-phase transfer between two random accounts."""
        debit, credit = rnd.sample(self.ids, 2)
        return [
            TransferRequest(transfer_id, TransferKind.SINGLE, debit, credit, "CNY", rnd.randint(1, 1_000_000))
        ]

    def measured(
        self, variant: str, app: str, run: Callable[[Callable[[], object]], tuple[int, float]]
    ) -> tuple[int, float]:
        """`run(finished)`, and on PostgreSQL the CPU it took per transfer: this process's, and that of
        the backends of connections named `app`, read when `run` calls `finished` (before they close)."""
        if self.backend != "postgresql":
            return run(lambda: None)
        with self.connect_baseline() as monitor:
            cpu, server = time.process_time(), backends_cpu_s(monitor, app)
            after: list[float] = []
            count, seconds = run(lambda: after.extend((time.process_time(), backends_cpu_s(monitor, app))))
        if after and count:
            self.cpu.setdefault(variant, []).append(((after[0] - cpu) / count, (after[1] - server) / count))
        return count, seconds

    def run_baseline(
        self, duration_s: float, seed: int, finished: Callable[[], object] | None = None
    ) -> tuple[int, float]:
        """The baseline's 8 clients."""
        transfer = sqlite_transfer if self.backend == "sqlite" else pg_transfer
        connect = self.connect_baseline
        if self.backend == "postgresql":
            connect = lambda: self.connect_baseline(application_name=BASELINE_APP)  # noqa: E731
        return run_clients(BASELINE_CLIENTS, duration_s, connect, transfer, self.ids, seed, finished)

    async def run_tasks(
        self, committer: GroupCommitter, tag: str, duration_s: float, seed: int
    ) -> tuple[int, float]:
        """32 asyncio tasks through the committer."""
        end = time.monotonic() + duration_s

        async def client(number: int) -> int:
            rnd, done = random.Random(seed * 1000 + number), 0
            while time.monotonic() < end:
                [result] = await committer.submit_async(self.request(rnd, f"{tag}-{number}-{done}"))
                _check(result.status)
                done += 1
            return done

        started = time.monotonic()
        counts = await asyncio.gather(*(client(n) for n in range(CLIENTS)))
        return sum(counts), time.monotonic() - started

    def run_threads(
        self, send: Callable[[list[TransferRequest]], list[Any]], tag: str, duration_s: float, seed: int
    ) -> tuple[int, float]:
        """32 threads calling `send` with one transfer at a time."""
        counts = [0] * CLIENTS
        ready = threading.Barrier(CLIENTS + 1)
        end = [time.monotonic() + 1e9]

        def client(number: int) -> None:
            rnd = random.Random(seed * 1000 + number)
            ready.wait(timeout=60)
            while time.monotonic() < end[0]:
                [result] = send(self.request(rnd, f"{tag}-{number}-{counts[number]}"))
                _check(result.status)
                counts[number] += 1

        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        ready.wait(timeout=60)
        started = time.monotonic()
        end[0] = started + duration_s
        for thread in threads:
            thread.join()
        return sum(counts), time.monotonic() - started

    async def run_http(self, tag: str, duration_s: float, seed: int) -> tuple[int, float]:
        """32 HTTP clients posting one transfer per request to the node."""
        headers = {"Authorization": f"Bearer {self.token}"}
        connector = aiohttp.TCPConnector(limit=CLIENTS)
        async with aiohttp.ClientSession(self.node_url, connector=connector, headers=headers) as http:
            end = time.monotonic() + duration_s

            async def client(number: int) -> int:
                rnd, done = random.Random(seed * 1000 + number), 0
                while time.monotonic() < end:
                    [request] = self.request(rnd, f"{tag}-{number}-{done}")
                    body = {"transfers": [{k: v for k, v in asdict(request).items() if v is not None}]}
                    async with http.post("/api/v1/ledger/transfers", json=body) as response:
                        [result] = (await response.json())["results"]
                    _check(result["status"])
                    done += 1
                return done

            started, cpu = time.monotonic(), process_cpu_s(self.node_pid)
            counts = await asyncio.gather(*(client(n) for n in range(CLIENTS)))
            elapsed = time.monotonic() - started
            if cpu is not None and (after := process_cpu_s(self.node_pid)) is not None:
                self.node_cpu_per_request.append((after - cpu) / max(1, sum(counts)))
            return sum(counts), elapsed

    def lone_latency(self, calls: int = 200) -> dict[str, float]:
        """Median latency in ms of one caller alone, each path in turn: `ledger.submit` in the calling
        thread; the committer from a thread (it writes its own batch); `asyncio.to_thread(submit)`
        (how the admin route called the ledger before); `submit_async` (how it does now)."""
        committer = GroupCommitter(self.engine)
        rnd = random.Random(99)
        samples: dict[str, list[float]] = {"submit": [], "grouped": [], "to_thread": [], "async": []}

        async def calls_async() -> None:
            for n in range(calls):
                for path, times in samples.items():
                    request = self.request(rnd, f"lone-{path}-{n}")
                    started = time.perf_counter()
                    if path == "submit":
                        submit(self.engine, request)
                    elif path == "grouped":
                        committer.submit(request)
                    elif path == "to_thread":
                        await asyncio.to_thread(submit, self.engine, request)
                    else:
                        await committer.submit_async(request)
                    times.append(time.perf_counter() - started)

        try:
            asyncio.run(calls_async())
        finally:
            committer.close()
        return {path: statistics.median(times) * 1000 for path, times in samples.items()}


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far, from /proc (None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backends_cpu_s(monitor: Any, app: str) -> float:
    """CPU seconds used so far by the PostgreSQL backends of connections named `app` (same host)."""
    rows = monitor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)).fetchall()
    return sum(cpu for (pid,) in rows if (cpu := process_cpu_s(pid)) is not None)


def _check(status: str) -> None:
    if status != "created":
        raise SystemExit(f"benchmark transfer answered {status}, not created")
