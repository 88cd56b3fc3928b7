"""CLI start time: `cpnode --version`, `--help`, a command's `--help` and commands that only read the
config and call the running node, against `python -c pass` measured in the same run.

Each command runs as a fresh process, as an operator runs it; the median of the runs counts. The
target is 0.3 s for each. A node is started (port 0, temp folder) so the commands that call it do
real work; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from io import StringIO
from pathlib import Path
from typing import Any

from bench.report import bench_parser, emit_json
from node.cli.main import main as cpnode
from node.launcher import NodeProcess

TARGET_MS = 300.0


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    parser = bench_parser("CLI start time against `python -c pass`.")
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (the median counts)")
    return parser


def cpnode_argv() -> list[str]:
    """How an operator starts cpnode: the installed script beside this interpreter, else `-m node`."""
    script = Path(sys.executable).parent / "cpnode"
    return [str(script)] if script.exists() else [sys.executable, "-m", "node"]


def median_ms(argv: list[str], runs: int, cwd: Path) -> float:
    """Median wall time of `runs` runs of `argv` (each must exit 0), in ms."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def main(argv: list[str] | None = None) -> int:
    """Time each command against the bare interpreter; print a table and, with --json, one JSON line."""
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cpnode-bench-cli-") as tmp:
        folder = Path(tmp)
        with contextlib.redirect_stdout(StringIO()):
            cpnode(
                ["init", str(folder / "alpha"), "--name", "alpha", "--operator", "Bench", "--region", "Local"]
            )
        config = str(folder / "alpha" / "node.toml")
        with (folder / "alpha" / "node.toml").open("a", encoding="utf-8") as handle:
            handle.write("\n[scheduler]\nenabled = false\n")
        Path(config).write_text(Path(config).read_text().replace("port = 8700", "port = 0"))
        node = NodeProcess(Path(config))
        node.start()
        try:
            base = cpnode_argv()
            commands = {
                "--version": [*base, "--version"],
                "--help": [*base, "--help"],
                "orders --help": [*base, "orders", "--help"],
                "ledger --help": [*base, "ledger", "--help"],
                "orders list (running node)": [*base, "orders", "list", "--config", config],
                "catalog show (running node)": [*base, "catalog", "show", "--config", config],
                "consumers list (running node)": [*base, "consumers", "list", "--config", config],
            }
            baseline = median_ms([sys.executable, "-c", "pass"], args.runs, folder)
            figures: dict[str, Any] = {"python_c_pass_ms": round(baseline, 1), "target_ms": TARGET_MS}
            print(
                f"{'command':<32} {'median ms':>10} {'ratio':>7}  (baseline python -c pass {baseline:.1f} ms)"
            )
            for name, command in commands.items():
                ms = median_ms(command, args.runs, folder)
                mark = "" if ms <= TARGET_MS else f"  over the {TARGET_MS:.0f} ms target"
                print(f"{name:<32} {ms:>10.1f} {ms / baseline:>7.1f}{mark}", flush=True)
                figures[name] = {"ms": round(ms, 1), "ratio": round(ms / baseline, 1)}
        finally:
            node.stop()
    if args.json:
        emit_json("cli", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
