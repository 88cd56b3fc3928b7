"""The local pool's self-measurement: matrix multiply throughput and memory bandwidth (numpy), and
what it reads of the host's state (memory, load).

Short by design (about 0.3 s in total) and cached per host in a JSON file, so a pool measures
itself once rather than on every data-source call. The numbers are what this host actually does
with numpy's BLAS, not a declared spec.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import time
from pathlib import Path

from connectors.contract import Measurement

MATMUL_N = 384
MEMORY_BYTES = 32 << 20


def _best_rate(work: float, run: object, budget_s: float) -> float:
    """Repeat `run` for about `budget_s` and return `work` per second of the fastest repetition."""
    assert callable(run)
    best = float("inf")
    deadline = time.perf_counter() + budget_s
    repetitions = 0
    while repetitions < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
        repetitions += 1
        if repetitions >= 200:
            break
    return work / best


def measure(budget_s: float = 0.15) -> Measurement:
    """Measure float32 matmul GFLOPS and memory copy bandwidth (GB/s, read + write) now."""
    import numpy as np  # loaded to measure, not by every process that reads a stored measurement

    started = time.perf_counter()
    rng = np.random.default_rng(0)
    a = rng.random((MATMUL_N, MATMUL_N), dtype=np.float32)
    b = rng.random((MATMUL_N, MATMUL_N), dtype=np.float32)
    out = np.empty_like(a)
    flops = 2.0 * MATMUL_N**3
    gflops = _best_rate(flops, lambda: np.matmul(a, b, out=out), budget_s) / 1e9
    source = np.ones(MEMORY_BYTES // 8, dtype=np.float64)
    target = np.empty_like(source)
    gbps = _best_rate(2.0 * MEMORY_BYTES, lambda: np.copyto(target, source), budget_s) / 1e9
    return Measurement(
        matmul_gflops=max(1, round(gflops)),
        memory_gbps=max(1, round(gbps)),
        host_cpus=os.cpu_count() or 1,
        measured_ms=int(time.time() * 1000),
        duration_ms=round((time.perf_counter() - started) * 1000),
    )


def host_fingerprint() -> str:
    """What identifies this host's hardware well enough to reuse a measurement."""
    return f"{platform.machine()}|{platform.processor()}|{os.cpu_count()}|numpy {importlib.metadata.version('numpy')}"


def cached_measurement(cache_file: Path, max_age_s: int = 7 * 24 * 3600) -> Measurement:
    """The measurement stored in `cache_file` for this host, measuring (and storing) it if absent or old."""
    fingerprint = host_fingerprint()
    try:
        stored = json.loads(cache_file.read_text(encoding="utf-8"))
        if stored.get("host") == fingerprint:
            result = Measurement.model_validate(stored["measurement"])
            if time.time() * 1000 - result.measured_ms < max_age_s * 1000:
                return result
    except (OSError, ValueError, KeyError, TypeError):
        pass  # absent or unreadable cache: measure again
    result = measure()
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache_file.with_suffix(".tmp")
    temporary.write_text(
        json.dumps({"host": fingerprint, "measurement": result.model_dump()}), encoding="utf-8"
    )
    os.replace(temporary, cache_file)
    return result


MIB = 1 << 20


def host_memory_mib() -> int:
    """Physical memory of this host in MiB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MIB


def load_permille() -> int:
    """1-minute load average over CPU count, in thousandths (capped at 1000)."""
    return min(1000, round(os.getloadavg()[0] / (os.cpu_count() or 1) * 1000))


def available_memory_permille() -> int:
    """Available memory over total, in thousandths (500 where /proc/meminfo is missing)."""
    try:
        fields = dict(
            line.split(":", 1) for line in Path("/proc/meminfo").read_text(encoding="ascii").splitlines()
        )
        total = int(fields["MemTotal"].split()[0])
        return round(int(fields["MemAvailable"].split()[0]) / total * 1000)
    except (OSError, KeyError, ValueError):
        return 500  # not Linux: report half free rather than guess either extreme
