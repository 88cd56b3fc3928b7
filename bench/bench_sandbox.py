"""Sandbox benchmark: what the pool adds to running a program, against a plain subprocess.

The same short program (`python -c pass`, then one that reads a 1 MiB input and writes a 1 MiB
output) is run R times, alternating:
- baseline: `asyncio.create_subprocess_exec` of the command, awaited to its exit;
- pool: a started `local` pool's deploy + start_instance, polled until the run has ended (inputs
  fetched over loopback HTTP and checked, output captured, outputs kept and hashed).
Printed: p50 and p90 of both in ms and the ratio of the p50s, plus the pool's own overhead
(p50 difference). The time to the program *running* (start_instance's answer) is printed too: it
is the pool's share of a task's delivery overhead (issue 12 targets ≤ 200 ms p50 for all of it).

Run: .venv/bin/python -m bench sandbox
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

from bench.report import bench_parser, emit_json, percentile
from connectors.contract import InputFile, InstanceSpec, Program
from connectors.pools.local import LocalPool
from connectors.serving import start_app

ROUNDS = 30
PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
COPY = "import pathlib; pathlib.Path('out.bin').write_bytes(pathlib.Path('in.bin').read_bytes())"


async def _plain(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(*argv, cwd=cwd)
    await process.wait()
    return (time.perf_counter() - started) * 1000


async def _pooled(pool: LocalPool, program: Program) -> tuple[float, float]:
    instance = await pool.create_instance(InstanceSpec(name="bench", region_id="local", flavor_id="local-1"))
    await pool.deploy(instance.id, program)
    started = time.perf_counter()
    answer = await pool.start_instance(instance.id)
    running_ms = (time.perf_counter() - started) * 1000
    while answer.state not in ("stopped", "failed"):
        await asyncio.sleep(0.002)
        answer = await pool.get_instance(instance.id)
    total_ms = (time.perf_counter() - started) * 1000
    assert answer.exit_code == 0, answer.detail
    await pool.delete_instance(instance.id)
    return running_ms, total_ms


async def _case(name: str, pool: LocalPool, plain_cwd: Path, program: Program) -> dict[str, float]:
    assert program.command is not None
    plain, pooled, running = [], [], []
    for _ in range(ROUNDS):
        plain.append(await _plain(program.command, plain_cwd))
        to_running, to_end = await _pooled(pool, program)
        pooled.append(to_end)
        running.append(to_running)
    base, ours = percentile(plain, 0.5), percentile(pooled, 0.5)
    print(
        f"{name}: plain subprocess p50 {base:.1f} ms (p90 {percentile(plain, 0.9):.1f}); "
        f"local pool p50 {ours:.1f} ms (p90 {percentile(pooled, 0.9):.1f}); ratio {ours / base:.2f}×, "
        f"overhead {ours - base:.1f} ms; start_instance answered in p50 {percentile(running, 0.5):.1f} ms"
    )
    return {
        "plain_p50_ms": round(base, 1),
        "pool_p50_ms": round(ours, 1),
        "ratio": round(ours / base, 2),
        "overhead_ms": round(ours - base, 1),
        "start_p50_ms": round(percentile(running, 0.5), 1),
    }


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    return bench_parser("Sandbox: a program run through the local pool against a plain subprocess.")


async def main(argv: list[str] | None = None) -> int:
    """Run both cases and print their figures; with --json end with them as one JSON line."""
    args = build_parser().parse_args(argv)
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as temporary:
        tmp = Path(temporary)
        (tmp / "plain").mkdir()
        (tmp / "plain" / "in.bin").write_bytes(PAYLOAD)
        app = web.Application()

        async def serve(_request: web.Request) -> web.Response:
            return web.Response(body=PAYLOAD)

        app.router.add_get("/in.bin", serve)
        runner, url = await start_app(app)
        pool = LocalPool("bench", tmp / "pool", slots=1)
        await pool.start()
        try:
            figures["python -c pass"] = await _case(
                "python -c pass", pool, tmp / "plain", Program(command=[sys.executable, "-c", "pass"])
            )
            item = InputFile(
                url=f"{url}/in.bin",
                path="in.bin",
                size_bytes=len(PAYLOAD),
                sha256=hashlib.sha256(PAYLOAD).hexdigest(),
            )
            program = Program(command=[sys.executable, "-c", COPY], inputs=[item], outputs=["out.bin"])
            figures["1 MiB in, 1 MiB kept"] = await _case(
                "1 MiB in, 1 MiB kept", pool, tmp / "plain", program
            )
        finally:
            await pool.close()
            await runner.cleanup()
    if args.json:
        emit_json("sandbox", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
