"""A process hosting light nodes for `bench national`: one JSON command per stdin line, one JSON
answer per stdout line. Commands (`op`): `create`, `pin`, `issuers`, `loops` (start or stop each
node's sync every interval, at a random phase), `round` (sync now: every partner, or one),
`price` (change a node's first offer), `stats` (CPU seconds, RSS, bytes served), `quit`.

Run by `bench/bench_national.py`; not meant to be started by hand.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

from bench.national_node import LightNode
from federation import store
from federation.partners import Agreement
from federation.relay import Issuer
from federation.sync import run_round, sync_partner


class Worker:
    """The light nodes of this process and their sync loops."""

    def __init__(self) -> None:
        self.nodes: dict[str, LightNode] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.failures = 0

    async def create(self, folder: str, template: str, interval_s: float, nodes: list[dict[str, Any]]) -> Any:
        """Start the listed nodes; answer each one's URL and public key."""
        made = {}
        for spec in nodes:
            node = LightNode(
                spec["name"], Path(folder), Path(template), spec["offers"], spec["seed"], interval_s
            )
            await node.start()
            self.nodes[node.name] = node
            made[node.name] = {"url": node.url, "public_key": node.public_key, "db": str(node.db_path)}
        return made

    def pin(self, pins: list[list[Any]]) -> int:
        """Pin partners: [node, partner, url, public key, agreement as JSON]."""
        for name, partner, url, key, agreement in pins:
            self.nodes[name].pin(partner, url, key, Agreement.from_json(agreement))
        return len(pins)

    def issuers(self, issuers: list[list[str]]) -> int:
        """Trust issuers' keys for relayed catalogs: [node, issuer, public key]."""
        for name, issuer, key in issuers:
            store.add_issuer(self.nodes[name].engine, Issuer(issuer, key), int(time.time()))
        return len(issuers)

    async def _loop(self, node: LightNode, interval_s: float, phase_s: float) -> None:
        await asyncio.sleep(phase_s)
        next_at = time.monotonic()
        while True:
            results = await run_round(node.service)
            self.failures += sum(r.outcome not in ("ok", "unchanged") for r in results)
            next_at += interval_s
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def loops(self, run: bool, interval_s: float, seed: int) -> int:
        """Start (`run`) or stop every node's periodic sync."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []
        if run:
            rng = random.Random(seed)
            self.tasks = [
                asyncio.create_task(self._loop(node, interval_s, rng.uniform(0, interval_s)))
                for node in self.nodes.values()
            ]
        return len(self.tasks)

    async def round(self, names: list[str] | None, partner: str | None) -> dict[str, int]:
        """Sync the listed nodes (all when None) now: every partner, or only `partner`."""
        chosen = [self.nodes[n] for n in names] if names is not None else list(self.nodes.values())

        async def one(node: LightNode) -> list[str]:
            if partner is None:
                return [r.outcome for r in await run_round(node.service, force=True)]
            found = await node.service.db(store.get_partner, partner)
            return [(await sync_partner(node.service, found)).outcome] if found is not None else []

        outcomes: dict[str, int] = {}
        for result in await asyncio.gather(*(one(node) for node in chosen)):
            for outcome in result:
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return outcomes

    def stats(self) -> dict[str, Any]:
        """CPU seconds of this process, peak and current RSS, bytes served by each node."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        rss_kib = int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() // 1024
        return {
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "rss_kib": rss_kib,
            "peak_rss_kib": usage.ru_maxrss,
            "served_bytes": {name: node.served_bytes for name, node in self.nodes.items()},
            "failures": self.failures,
        }

    async def handle(self, command: dict[str, Any]) -> Any:
        """Run one command."""
        op = command.pop("op")
        if op == "create":
            return await self.create(**command)
        if op == "pin":
            return await asyncio.to_thread(self.pin, command["pins"])
        if op == "issuers":
            return await asyncio.to_thread(self.issuers, command["issuers"])
        if op == "loops":
            return await self.loops(**command)
        if op == "round":
            return await self.round(command.get("nodes"), command.get("partner"))
        if op == "price":
            names = command.get("nodes") or list(self.nodes)
            return [self.nodes[name].offers.change_price() for name in names]
        if op == "stats":
            return self.stats()
        raise ValueError(f"unknown op {op!r}")

    async def close(self) -> None:
        """Stop loops and nodes."""
        await self.loops(False, 0, 0)
        for node in self.nodes.values():
            await node.stop()


async def main() -> int:
    """Serve commands from stdin until `quit` or end of input."""
    worker = Worker()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            command = json.loads(line)
            if command.get("op") == "quit":
                break
            try:
                answer = {"ok": await worker.handle(command)}
            except Exception as exc:  # reported to the driver, which stops the run
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
    finally:
        await worker.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
