"""What every benchmark shares: its argument parser with `--json`, the one JSON line of figures and
ratios it ends with when asked (so runs can be compared between commits), and timing: sequential
calls timed one by one, and their percentiles.

Percentiles interpolate linearly between the two nearest samples (numpy's default), so p50 is the
median (`statistics.median`) and p99 of 400 samples lies between the 396th and 397th.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
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


def percentile(samples: Sequence[float], q: float) -> float:
    """The `q` quantile (0–1) of `samples`, interpolated between the nearest two (ValueError if empty)."""
    if not samples:
        raise ValueError("no samples")
    if not 0 <= q <= 1:
        raise ValueError(f"a quantile is 0–1, got {q}")
    ordered = sorted(samples)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def percentile_ms(samples_s: Sequence[float], q: float, digits: int = 3) -> float:
    """The `q` quantile of `samples_s` (seconds) in milliseconds, rounded to `digits`."""
    return round(percentile(samples_s, q) * 1000, digits)


def latency_ms(
    samples_s: Sequence[float], quantiles: Sequence[float] = (0.5, 0.99), digits: int = 3
) -> dict[str, float]:
    """`{"p50_ms": …, "p99_ms": …}`: the given quantiles of `samples_s` (seconds) in milliseconds."""
    return {f"p{q * 100:g}_ms": percentile_ms(samples_s, q, digits) for q in quantiles}


def time_calls(count: int, call: Callable[[], object]) -> list[float]:
    """Seconds each of `count` sequential calls of `call` took."""
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


async def time_awaits(count: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    """Seconds each of `count` sequential awaits of `call()` took."""
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples
