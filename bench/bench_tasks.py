"""Tasks benchmark: what delivery adds to starting a program, and 100 tasks submitted at once.

A real `cpnode run` process with a `local` pool (4 slots, default `[tasks]` settings) and a funded
consumer. Every program writes the wall-clock time it started at (its first statement) to a file.

1. Delivery overhead, R rounds alternating: (a) baseline: a plain subprocess of the same command
   (start time − time of the spawn call), (b) a task: `POST /api/v1/tasks` with the same command as a
   one-slot demand (start time − time the POST was sent), the task then followed to its release.
   Both include the interpreter's own start; printed: p50 and p90 of each, their ratio and the
   overhead (p50 difference; issue 12 targets ≤ 200 ms on loopback).
2. 100 tasks submitted at once (concurrent POSTs) of a 0.2 s program on the 4 slots: how long until
   all were released, how many succeeded (all must: none lost), and the most programs that ever ran
   at once (from their start and end times; must never exceed the 4 slots).

Run: .venv/bin/python -m bench tasks [--json] [--rounds R] [--burst N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.report import bench_parser, emit_json, percentile
from node.config import load_settings
from node.launcher import NodeProcess
from node.runfile import read_admin_token
from tests.support.nodes import make_node_dir

SLOTS = 4
MARK = "import sys, time; open(sys.argv[1], 'w').write(repr(time.time()))"
BURST = MARK + "\ntime.sleep(0.2); open(sys.argv[1], 'a').write(' ' + repr(time.time()))"


def _spec(code: str, mark: Path) -> dict[str, Any]:
    return {
        "program": {"command": [sys.executable, "-c", code, str(mark)]},
        "resources": {"units": 1, "hours": 1, "chip_model": "cpu"},
    }


def _node(tmp: Path) -> tuple[Path, NodeProcess]:
    pool = (
        f'[[pools]]\nname = "cpu"\nplugin = "local"\n'
        f'options = {{ root = "pools/cpu", slots = {SLOTS}, price_minor_per_slot_hour = 3600 }}\n'
    )
    config = make_node_dir(tmp, "bench", extra_toml=pool, operator="bench", region="bench")
    process = NodeProcess(config)
    process.start()
    return config, process


async def _wait_mark(mark: Path, timeout_s: float = 60) -> float:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError, ValueError):
            text = await asyncio.to_thread(mark.read_text)
            if text:
                return float(text.split()[0])
        if time.monotonic() > deadline:
            raise TimeoutError(f"{mark} was never written")
        await asyncio.sleep(0.001)


async def _released(http: aiohttp.ClientSession, task_id: str, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        async with http.get(f"/api/v1/tasks/{task_id}") as response:
            task: dict[str, Any] = await response.json()
        if task["state"] == "released":
            return task
        if time.monotonic() > deadline:
            raise TimeoutError(f"task {task_id} is {task['state']}")
        await asyncio.sleep(0.05)


async def _all_released(http: aiohttp.ClientSession, ids: set[str], timeout_s: float) -> list[dict[str, Any]]:
    """Poll the task list (4 times a second) until every task of `ids` is released."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with http.get("/api/v1/tasks") as response:
            listed = [t for t in (await response.json())["tasks"] if t["id"] in ids]
        if len(listed) == len(ids) and all(t["state"] == "released" for t in listed):
            return listed
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sum(t['state'] != 'released' for t in listed)} tasks are not released")
        await asyncio.sleep(0.25)


async def overhead(http: aiohttp.ClientSession, tmp: Path, rounds: int) -> dict[str, float]:
    """Part 1: a plain subprocess against a task, alternating."""
    plain, tasks = [], []
    for n in range(rounds):
        mark = tmp / f"plain-{n}"
        sent = time.time()
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", MARK, str(mark))
        plain.append((await _wait_mark(mark) - sent) * 1000)
        await process.wait()
        mark = tmp / f"task-{n}"
        sent = time.time()
        async with http.post(
            "/api/v1/tasks", json={"spec": _spec(MARK, mark), "consumer": "alice"}
        ) as response:
            task = await response.json()
            assert response.status == 201, task
        tasks.append((await _wait_mark(mark) - sent) * 1000)
        done = await _released(http, task["id"])
        assert done["outcome"] == "succeeded", done
    base, ours = percentile(plain, 0.5), percentile(tasks, 0.5)
    print(
        f"submit → program running: plain subprocess p50 {base:.1f} ms (p90 {percentile(plain, 0.9):.1f}); "
        f"task p50 {ours:.1f} ms (p90 {percentile(tasks, 0.9):.1f}); ratio {ours / base:.2f}×, "
        f"overhead {ours - base:.1f} ms p50 (target ≤ 200 ms)"
    )
    return {
        "plain_p50_ms": round(base, 1),
        "plain_p90_ms": round(percentile(plain, 0.9), 1),
        "task_p50_ms": round(ours, 1),
        "task_p90_ms": round(percentile(tasks, 0.9), 1),
        "ratio": round(ours / base, 2),
        "overhead_p50_ms": round(ours - base, 1),
    }


async def burst(http: aiohttp.ClientSession, tmp: Path, count: int) -> dict[str, Any]:
    """Part 2: `count` tasks at once on SLOTS slots."""
    marks = [tmp / f"burst-{n}" for n in range(count)]

    async def submit(mark: Path) -> str:
        async with http.post(
            "/api/v1/tasks", json={"spec": _spec(BURST, mark), "consumer": "alice"}
        ) as response:
            task = await response.json()
            assert response.status == 201, task
            return str(task["id"])

    started = time.monotonic()
    ids = set(await asyncio.gather(*(submit(mark) for mark in marks)))
    done = await _all_released(http, ids, 600)
    wall_s = time.monotonic() - started
    succeeded = sum(t["outcome"] == "succeeded" for t in done)
    spans = []
    for mark in marks:
        start, end = (float(part) for part in mark.read_text().split())
        spans.append((start, end))
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    print(
        f"{count} tasks at once on {SLOTS} slots: all released in {wall_s:.1f} s, {succeeded} succeeded "
        f"({count - succeeded} lost or failed), at most {most} programs ran at once (capacity {SLOTS})"
    )
    assert succeeded == count, [t for t in done if t["outcome"] != "succeeded"][:3]
    assert most <= SLOTS
    return {
        "tasks": count,
        "succeeded": succeeded,
        "wall_s": round(wall_s, 1),
        "max_running": most,
        "slots": SLOTS,
    }


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    parser = bench_parser("Tasks: delivery overhead against a plain subprocess, and a burst of tasks.")
    parser.add_argument("--rounds", type=int, default=20, help="rounds of part 1")
    parser.add_argument("--burst", type=int, default=100, help="tasks submitted at once in part 2")
    return parser


async def main(argv: list[str] | None = None) -> int:
    """Run both parts against one node process and print their figures."""
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as temporary:
        tmp = Path(temporary)
        config, process = _node(tmp)
        try:
            token = read_admin_token(load_settings(config, environ={}))
            headers = {"Authorization": f"Bearer {token}"}
            async with aiohttp.ClientSession(process.url, headers=headers) as http:
                await http.post("/api/v1/consumers", json={"id": "alice"})
                await http.post("/api/v1/consumers/alice/deposits", json={"amount": 10**9})
                figures = {
                    "delivery": await overhead(http, tmp, args.rounds),
                    "burst": await burst(http, tmp, args.burst),
                }
        finally:
            process.stop()
    if args.json:
        emit_json("tasks", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
