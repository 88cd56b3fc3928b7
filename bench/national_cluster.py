"""The cluster `bench national` drives: worker processes hosting light nodes (`national_worker`),
the topologies it builds (a random partial mesh of one degree, the star around an aggregator),
and what it reads back (CPU, memory, bytes; catalog versions straight from the nodes' databases).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from federation import store
from node.db import make_engine

ROOT = Path(__file__).resolve().parent.parent


def random_regular_graph(count: int, degree: int, seed: int) -> list[tuple[int, int]]:
    """Edges of a random `degree`-regular simple graph on `count` nodes: a ring lattice (each node
    linked to its `degree`/2 nearest on each side) randomised by degree-preserving edge swaps."""
    if degree % 2 or not 0 < degree < count:
        raise ValueError("degree must be even and below the number of nodes")
    rng = random.Random(seed)

    def edge(a: int, b: int) -> tuple[int, int]:
        return (a, b) if a < b else (b, a)

    edges = {edge(node, (node + step) % count) for node in range(count) for step in range(1, degree // 2 + 1)}
    ordered = sorted(edges)
    for _ in range(10 * len(ordered)):
        i, j = rng.randrange(len(ordered)), rng.randrange(len(ordered))
        (a, b), (c, d) = ordered[i], ordered[j]
        new_one, new_two = edge(a, d), edge(c, b)
        if len({a, b, c, d}) < 4 or new_one in edges or new_two in edges:
            continue
        edges -= {ordered[i], ordered[j]}
        edges |= {new_one, new_two}
        ordered[i], ordered[j] = new_one, new_two
    return sorted(edges)


@dataclass
class NodeInfo:
    """Where a light node lives and how to reach it."""

    name: str
    worker: int
    url: str
    public_key: str
    db: str


class WorkerProcess:
    """One worker process and its command pipe."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lock = asyncio.Lock()

    async def call(self, op: str, **args: Any) -> Any:
        """Send one command and wait for its answer."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        async with self.lock:
            self.process.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
            await self.process.stdin.drain()
            line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker ended while running {op}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"worker failed {op}: {answer['error']}")
        return answer["ok"]


class Cluster:
    """Light nodes spread over worker processes."""

    def __init__(self, folder: Path, template: Path, interval_s: float) -> None:
        self.folder = folder
        self.template = template
        self.interval_s = interval_s
        self.workers: list[WorkerProcess] = []
        self.nodes: dict[str, NodeInfo] = {}
        self._engines: dict[str, Engine] = {}
        self.baseline_rss_kib = 0

    async def start(self, workers: int, names: list[str], offers: int) -> None:
        """Start `workers` processes and the named nodes, spread round-robin."""
        for _ in range(workers):
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.national_worker",
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=64 * 1024 * 1024,
            )
            self.workers.append(WorkerProcess(process))
        self.baseline_rss_kib = sum(s["rss_kib"] for s in await self.broadcast("stats"))
        plans: list[list[dict[str, Any]]] = [[] for _ in self.workers]
        for index, name in enumerate(names):
            plans[index % workers].append({"name": name, "seed": index + 1, "offers": offers})
        made = await asyncio.gather(
            *(
                worker.call(
                    "create",
                    folder=str(self.folder),
                    template=str(self.template),
                    interval_s=self.interval_s,
                    nodes=plan,
                )
                for worker, plan in zip(self.workers, plans, strict=True)
            )
        )
        for index, answer in enumerate(made):
            for name, info in answer.items():
                self.nodes[name] = NodeInfo(name, index, info["url"], info["public_key"], info["db"])

    async def stop(self) -> None:
        """Ask every worker to quit and wait for it."""
        for worker in self.workers:
            if worker.process.returncode is None:
                assert worker.process.stdin is not None
                worker.process.stdin.write(b'{"op": "quit"}\n')
                await worker.process.stdin.drain()
        for worker in self.workers:
            await worker.process.wait()
        for engine in self._engines.values():
            engine.dispose()

    def worker_of(self, name: str) -> WorkerProcess:
        """The worker hosting node `name`."""
        return self.workers[self.nodes[name].worker]

    async def pin(self, pins: Iterable[tuple[str, str, str, str, dict[str, Any]]]) -> None:
        """Pin partners: (node, partner name, partner URL, partner key, agreement as JSON)."""
        grouped: dict[int, list[list[Any]]] = {}
        for pin in pins:
            grouped.setdefault(self.nodes[pin[0]].worker, []).append(list(pin))
        await asyncio.gather(*(self.workers[w].call("pin", pins=p) for w, p in grouped.items()))

    async def link(self, a: str, b: str, agreement_a: dict[str, Any] | None = None) -> None:
        """Make `a` and `b` partners of each other (`agreement_a`: what `a` grants `b`)."""
        node_a, node_b = self.nodes[a], self.nodes[b]
        await self.pin([(a, b, node_b.url, node_b.public_key, agreement_a or {})])
        await self.pin([(b, a, node_a.url, node_a.public_key, {})])

    async def broadcast(self, op: str, **args: Any) -> list[Any]:
        """The same command to every worker."""
        return await asyncio.gather(*(worker.call(op, **args) for worker in self.workers))

    async def round(self, names: list[str] | None = None, partner: str | None = None) -> dict[str, int]:
        """Sync the named nodes (all when None) now, all workers at once; outcomes counted."""
        per_worker: dict[int, list[str] | None] = {}
        if names is None:
            per_worker = dict.fromkeys(range(len(self.workers)))
        else:
            for name in names:
                chosen = per_worker.setdefault(self.nodes[name].worker, [])
                assert chosen is not None
                chosen.append(name)
        answers = await asyncio.gather(
            *(self.workers[w].call("round", nodes=n, partner=partner) for w, n in per_worker.items())
        )
        total: dict[str, int] = {}
        for answer in answers:
            for outcome, count in answer.items():
                total[outcome] = total.get(outcome, 0) + count
        return total

    async def stats(self) -> dict[str, Any]:
        """CPU seconds, RSS and bytes served, summed over the workers."""
        answers = await self.broadcast("stats")
        served: dict[str, int] = {}
        for answer in answers:
            served.update(answer["served_bytes"])
        return {
            "cpu_s": sum(a["cpu_s"] for a in answers),
            "rss_kib": sum(a["rss_kib"] for a in answers),
            "served_bytes": served,
            "failures": sum(a["failures"] for a in answers),
        }

    def engine(self, name: str) -> Engine:
        """A read connection pool to node `name`'s database (from this process)."""
        if name not in self._engines:
            self._engines[name] = make_engine(f"sqlite:///{self.nodes[name].db}")
        return self._engines[name]

    async def version_held(self, holder: str, issuer: str, via: str | None = None) -> int:
        """The version of `issuer`'s catalog `holder` holds (directly, or relayed by `via`); 0 if none."""
        engine = self.engine(holder)
        if via is None:
            head = await asyncio.to_thread(store.received_head, engine, issuer)
        else:
            head = await asyncio.to_thread(store.relayed_head, engine, via, issuer)
        return head.version if head is not None else 0

    async def wait_versions(
        self, holders: list[str], issuer: str, at_least: dict[str, int], via: str | None, timeout_s: float
    ) -> dict[str, float]:
        """Poll until every holder holds a version of `issuer`'s catalog above what it held
        (`at_least`); seconds until each did (missing if the timeout came first)."""
        started = time.monotonic()
        seen: dict[str, float] = {}
        # Each pass reads the holders' databases from this process, where a hub may run too: one
        # pass per tenth of an interval keeps the reads from slowing what is measured.
        period_s = max(0.05, self.interval_s / 10)
        while len(seen) < len(holders) and time.monotonic() - started < timeout_s:
            for holder in holders:
                if holder not in seen and await self.version_held(holder, issuer, via) > at_least[holder]:
                    seen[holder] = time.monotonic() - started
            await asyncio.sleep(period_s)
        return seen
