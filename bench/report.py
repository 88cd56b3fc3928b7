"""What every benchmark shares: its argument parser with `--json`, and the one JSON line of figures
and ratios it ends with when asked, so runs can be compared between commits."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def bench_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser for a benchmark, with `--json`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--json",
        action="store_true",
        help="end with one JSON line: {bench, commit, python, cpus, figures} (figures include the ratios)",
    )
    return parser


def commit() -> str | None:
    """The checked-out commit (short hash, `+dirty` when the tree has changes), or None outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}+dirty" if dirty else head


def emit_json(bench: str, figures: Mapping[str, Any]) -> None:
    """Print the benchmark's one JSON line (last line of its output)."""
    line = {
        "bench": bench,
        "commit": commit(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "figures": figures,
    }
    print(json.dumps(line, sort_keys=True, default=str), flush=True)
