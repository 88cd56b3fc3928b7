"""Starting `tests.ledger.worker` processes and reading what they report, with deadlines."""

from __future__ import annotations

import selectors
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start(url: str, *args: str) -> subprocess.Popen[str]:
    """Start a worker process on database `url`."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.ledger.worker", url, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(proc: subprocess.Popen[str], prefix: str, timeout_s: float = 60.0) -> str:
    """The first stdout line starting with `prefix`; fails with the worker's stderr if it dies first."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=min(1.0, max(0.0, deadline - time.monotonic()))):
                continue
            line = proc.stdout.readline()
            if line.startswith(prefix):
                return line.strip()
            if not line:
                stderr = proc.stderr.read() if proc.stderr else ""
                raise AssertionError(f"worker exited ({proc.wait()}) before {prefix!r}: {stderr[-2000:]}")
    proc.kill()
    raise AssertionError(f"worker did not report {prefix!r} within {timeout_s} s")


def kill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the worker and reap it."""
    proc.kill()
    proc.wait(timeout=30)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def finish(proc: subprocess.Popen[str], timeout_s: float = 120.0) -> str:
    """Wait for a worker to report 'done …' and exit 0; its report line."""
    line = wait_for(proc, "done", timeout_s)
    assert proc.wait(timeout=timeout_s) == 0
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    return line
