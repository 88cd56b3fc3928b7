"""Simulators run as real processes (cloudsim in either dialect, netsim), read from their first line."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from node.launcher import START_TIMEOUT_S as NODE_START_TIMEOUT_S

ROOT = Path(__file__).resolve().parents[2]


CONFIGS = ROOT / "configs"


BIN = Path(sys.executable).parent


# The deadline a process has to say it listens (the node's own, node.launcher): it returns as soon
# as it does, and a loaded machine takes a process half a minute and more to import and listen.
START_TIMEOUT_S = NODE_START_TIMEOUT_S


class SimProcess:
    """A simulator run as its console script; `url` is read from its first stdout line."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout_s: float = START_TIMEOUT_S) -> str:
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
