"""Fixtures for connectors tests: simulators as real processes, and helpers to wait without sleeping blindly."""

from __future__ import annotations

import asyncio
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
BIN = Path(sys.executable).parent


class SimProcess:
    """A simulator run as its console script; `url` is read from its first stdout line."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout_s: float = 20.0) -> str:
        """Start and wait for 'listening at URL'."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True).start()  # type: ignore[union-attr]
        try:
            line = lines.get(timeout=timeout_s)
        except queue.Empty:
            self.stop()
            raise RuntimeError(f"{self.argv[0]} did not start in {timeout_s} s") from None
        if "listening at " not in line:
            self.stop()
            raise RuntimeError(f"{self.argv[0]} said {line!r}")
        self.url = line.strip().rsplit(" ", 1)[-1]
        return self.url

    def kill(self) -> None:
        """SIGKILL the process (no clean-up of its own) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> None:
        """Terminate (then kill) the process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


def cloudsim(dialect: str, tmp: Path) -> SimProcess:
    """A cloudsim process of `dialect` with the shipped inventory and its own storage directory."""
    inventory = tmp / f"{dialect}.toml"
    shutil.copy(CONFIGS / "cloudsim" / f"{dialect}.toml", inventory)
    storage = tmp / f"{dialect}-storage"
    storage.mkdir()
    return SimProcess(
        [str(BIN / "cpnode-cloudsim"), "--inventory", str(inventory), "--storage-dir", str(storage)]
    )


@pytest.fixture(name="alpha_sim")
def fixture_alpha_sim(tmp_path: Path) -> Iterator[SimProcess]:
    """A running cloudsim speaking the alpha dialect."""
    sim = cloudsim("alpha", tmp_path)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture(name="beta_sim")
def fixture_beta_sim(tmp_path: Path) -> Iterator[SimProcess]:
    """A running cloudsim speaking the beta dialect."""
    sim = cloudsim("beta", tmp_path)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture(name="netsim")
def fixture_netsim() -> Iterator[SimProcess]:
    """A running network controller simulator with the shipped topology."""
    sim = SimProcess([str(BIN / "cpnode-netsim"), "--config", str(CONFIGS / "network" / "default.toml")])
    sim.start()
    yield sim
    sim.stop()


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0, what: str = "condition"
) -> None:
    """Poll `check` every 20 ms until true, failing after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s} s")
        await asyncio.sleep(0.02)
