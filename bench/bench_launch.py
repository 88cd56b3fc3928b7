"""Node process starts as the test suite makes them: a fork of the preloaded interpreter
(`node.launcher.launch_preloaded`, `node.forkserver`) against a fresh `python -m node run`, in the
same run, alternating.

Each start is `NodeProcess.start` (until the node prints that it listens) then `stop` (SIGTERM,
clean exit), on a folder made by `cpnode init` with a migrated database, as
`tests.support.nodes.make_node_dir` makes them. Reported: the median wall time of a start and of a
start and stop, and the CPU the node used (user + system, /proc, read just before it stops). The fork
server's own start (its imports, once per test process) is reported apart. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_cli import process_cpu_s
from bench.report import bench_parser, emit_json
from node import launcher
from node.launcher import NodeProcess
from tests.support.nodes import make_node_dir


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    parser = bench_parser("Node process starts: forked from a preloaded interpreter vs fresh.")
    parser.add_argument("--starts", type=int, default=8, help="starts of each kind (alternating)")
    return parser


def one_start(folder: Path, name: str, preloaded: bool = True) -> dict[str, float]:
    """Start a node in a new folder (forked, unless not `preloaded`), stop it; its wall times and
    CPU seconds."""
    node = NodeProcess(make_node_dir(folder, name), preloaded=preloaded)
    started = time.perf_counter()
    node.start()
    listening = time.perf_counter() - started
    assert node.proc is not None
    cpu = process_cpu_s(node.proc.pid)
    code = node.stop()
    if code != 0:
        raise RuntimeError(f"{name} exited {code}:\n{node.log()}")
    return {"start_s": listening, "start_stop_s": time.perf_counter() - started, "cpu_s": cpu}


def medians(samples: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median, in milliseconds."""
    return {key: round(1000 * statistics.median(s[key] for s in samples), 1) for key in samples[0]}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    args = build_parser().parse_args(argv)
    fresh: list[dict[str, float]] = []
    forked: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="cpnode-bench-launch-") as tmp:
        base = Path(tmp)
        launcher.launch_preloaded()
        try:
            started = time.perf_counter()
            one_start(base / "warm", "warm")  # starts the fork server: its imports, once
            server_s = time.perf_counter() - started
            for index in range(args.starts):
                forked.append(one_start(base / f"forked-{index}", f"n{index}"))
                fresh.append(one_start(base / f"fresh-{index}", f"n{index}", preloaded=False))
        finally:
            launcher.launch_preloaded(False)
    figures: dict[str, Any] = {
        "starts": args.starts,
        "fresh_ms": medians(fresh),
        "forked_ms": medians(forked),
        "fork_server_first_start_ms": round(1000 * server_s, 1),
    }
    for key in ("start_s", "start_stop_s", "cpu_s"):
        figures[f"ratio_{key.removesuffix('_s')}"] = round(
            figures["forked_ms"][key] / figures["fresh_ms"][key], 3
        )
    print("node starts", figures, flush=True)
    if args.json:
        emit_json("launch", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
