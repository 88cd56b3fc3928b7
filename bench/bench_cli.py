"""CLI start time: `cpnode --version`, `--help`, a command's `--help`, commands that only read the
config and call the running node, commands that open the database, and `cpnode run` until it
listens, against `python -c pass` measured in the same run.

Each command runs as a fresh process, as an operator runs it; the median of the runs counts, of the
wall time and of the CPU time the process used (user + system: on a loaded machine, the steadier
figure; for `run`, until it listens). The target is 0.3 s for the commands that open no database
(those that do, and `run`, have none). A node is started (port 0, temp folder) so the commands that
call it do real work; nothing leaves 127.0.0.1. `--against DIR` times another checkout of cpnode (e.g. `git archive` of an older commit)
in the same run, each command's runs alternating between the two trees, both as `python -m node`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any, NamedTuple

from bench.report import ROOT, bench_parser, emit_json, percentile, time_calls
from node.cli.main import main as cpnode
from node.launcher import NodeProcess

TARGET_MS = 300.0


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    parser = bench_parser("CLI start time against `python -c pass`.")
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (the median counts)")
    parser.add_argument(
        "--against", type=Path, default=None, help="another cpnode checkout to time in the same run"
    )
    parser.add_argument(
        "--only", default=None, help="time only the commands whose name contains this text (e.g. 'run')"
    )
    return parser


def cpnode_argv() -> list[str]:
    """How an operator starts cpnode: the installed script beside this interpreter, else `-m node`."""
    script = Path(sys.executable).parent / "cpnode"
    return [str(script)] if script.exists() else [sys.executable, "-m", "node"]


def tree_env(tree: Path | None) -> dict[str, str] | None:
    """The environment that makes `python -m node` run the cpnode of checkout `tree` (None: as is)."""
    return None if tree is None else {**os.environ, "PYTHONPATH": str(tree)}


def run_once(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    """Run `argv` to its end (it must exit 0), its output discarded."""
    subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


class Sample(NamedTuple):
    """One run: wall time, and the CPU time its process used (user + system), in seconds."""

    wall_s: float
    cpu_s: float


def children_cpu_s() -> float:
    """CPU seconds used so far by this process's children that have ended and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def command_sample(args: list[str], cwd: Path, tree: Path | None) -> Sample:
    """One `cpnode ARGS`: the installed script, or `python -m node` of checkout `tree`."""
    argv = [*cpnode_argv(), *args] if tree is None else [sys.executable, "-m", "node", *args]
    cpu = children_cpu_s()
    wall = time_calls(1, lambda: run_once(argv, cwd, tree_env(tree)))[0]
    return Sample(wall, children_cpu_s() - cpu)


def until_ready_sample(config: Path, tree: Path | None, roles: str | None = None) -> Sample:
    """`cpnode run` for `config` (of checkout `tree`, with `roles`, default all) from its start until
    it listens; then it is stopped."""
    node = NodeProcess(config, roles=roles, env=tree_env(tree))
    started = time.perf_counter()
    node.start()
    wall = time.perf_counter() - started
    assert node.proc is not None
    cpu = process_cpu_s(node.proc.pid)
    node.stop()
    return Sample(wall, cpu)


def median_ms(argv: list[str], runs: int, cwd: Path) -> float:
    """Median wall time of `runs` runs of `argv` (each must exit 0), in ms."""
    return percentile(time_calls(runs, lambda: run_once(argv, cwd)), 0.5) * 1000


def alternating(
    timed: Callable[[Path | None], Sample], trees: list[Path | None], runs: int
) -> list[tuple[float, float]]:
    """(median wall ms, median CPU ms) of `timed(tree)` per tree, the trees taking turns run by run (the
    first one first in even runs, last in odd ones) so the machine's load weighs on both alike."""
    samples: list[list[Sample]] = [[] for _ in trees]
    order = list(enumerate(trees))
    for run in range(runs):
        for index, tree in order if run % 2 == 0 else order[::-1]:
            samples[index].append(timed(tree))
    return [
        (percentile([x.wall_s for x in xs], 0.5) * 1000, percentile([x.cpu_s for x in xs], 0.5) * 1000)
        for xs in samples
    ]


def make_node(folder: Path, name: str) -> Path:
    """A node folder made by `cpnode init`, listening on port 0 with no scheduled jobs; its node.toml."""
    with contextlib.redirect_stdout(StringIO()):
        cpnode(["init", str(folder / name), "--name", name, "--operator", "Bench", "--region", "Local"])
    config = folder / name / "node.toml"
    with config.open("a", encoding="utf-8") as handle:
        handle.write("\n[scheduler]\nenabled = false\n")
    config.write_text(config.read_text().replace("port = 8700", "port = 0"))
    return config


def command_table(config: Path) -> dict[str, tuple[list[str], bool]]:
    """Each timed command's arguments (after `cpnode`) and whether the target applies to it, by the
    name it is reported under."""
    c = ["--config", str(config)]
    return {
        "--version": (["--version"], True),
        "--help": (["--help"], True),
        "orders --help": (["orders", "--help"], True),
        "ledger --help": (["ledger", "--help"], True),
        "orders list (running node)": (["orders", "list", *c], True),
        "catalog show (running node)": (["catalog", "show", *c], True),
        "consumers list (running node)": (["consumers", "list", *c], True),
        "partners list (database)": (["partners", "list", *c], False),
        "keys show (database)": (["keys", "show", *c], False),
        "ledger accounts list (database)": (["ledger", "accounts", "list", *c], False),
        "status (database, running node)": (["status", *c], False),
    }


def main(argv: list[str] | None = None) -> int:
    """Time each command against the bare interpreter; print a table and, with --json, one JSON line."""
    args = build_parser().parse_args(argv)
    # Compared with another checkout, both run as `python -m node` with their tree on PYTHONPATH.
    trees: list[Path | None] = [ROOT, args.against.resolve()] if args.against else [None]
    with tempfile.TemporaryDirectory(prefix="cpnode-bench-cli-") as tmp:
        folder = Path(tmp)
        config = make_node(folder, "alpha")
        started_config = make_node(folder, "beta")  # started and stopped by the `run` row
        node = NodeProcess(config)
        node.start()
        try:
            baseline = median_ms([sys.executable, "-c", "pass"], args.runs, folder)
            figures: dict[str, Any] = {"python_c_pass_ms": round(baseline, 1), "target_ms": TARGET_MS}
            columns = "".join(f"{'wall/CPU ms ' + (tree.name if tree else ''):>26}" for tree in trees)
            print(f"{'command':<34}{columns} {'ratio':>7}  (baseline python -c pass {baseline:.1f} ms)")
            timings: dict[str, tuple[Callable[[Path | None], Sample], bool]] = {
                name: (functools.partial(command_sample, command, folder), targeted)
                for name, (command, targeted) in command_table(config).items()
            }
            timings["run until it listens"] = (functools.partial(until_ready_sample, started_config), False)
            timings["run --roles connectors (listens)"] = (
                functools.partial(until_ready_sample, started_config, roles="connectors"),
                False,
            )
            if args.only is not None:
                timings = {name: timed for name, timed in timings.items() if args.only in name}
            for name, (timed, targeted) in timings.items():
                medians = alternating(timed, trees, args.runs)
                ms = medians[0][0]
                mark = f"  over the {TARGET_MS:.0f} ms target" if targeted and ms > TARGET_MS else ""
                cells = "".join(f"{wall:>18.1f} /{cpu:>6.0f}" for wall, cpu in medians)
                print(f"{name:<34}{cells} {ms / baseline:>7.1f}{mark}", flush=True)
                figures[name] = {
                    "ms": round(ms, 1),
                    "cpu_ms": round(medians[0][1]),
                    "ratio": round(ms / baseline, 1),
                }
                if args.against:
                    figures[name] |= {
                        "against_ms": round(medians[1][0], 1),
                        "against_cpu_ms": round(medians[1][1]),
                    }
        finally:
            node.stop()
    if args.json:
        emit_json("cli", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
