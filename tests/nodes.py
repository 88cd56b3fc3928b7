"""Start real nodes for tests: each with its own key, config and database, on 127.0.0.1 port 0.

- `make_node_dir(base, name, db_url=None, extra_toml="")` runs `cpnode init` and returns node.toml.
- `running_node(config)` serves a node in this process (same event loop as the test).
- `NodeProcess(config).start()` runs `cpnode run` as a real subprocess and parses its URL.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, redirect_stdout
from io import StringIO
from pathlib import Path

from node.cli.main import main as cpnode
from node.config import load_settings
from node.roles import ALL_ROLES
from node.service import NodeServer

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


def make_node_dir(
    base: Path,
    name: str,
    *,
    db_url: str | None = None,
    extra_toml: str = "",
    operator: str = "Test Operator",
    region: str = "Testville",
) -> Path:
    """Create a node folder with `cpnode init` (port 0) and return its node.toml path."""
    directory = base / name
    args = ["init", str(directory), "--name", name, "--operator", operator, "--region", region, "--port", "0"]
    if db_url:
        args += ["--db", db_url]
    with redirect_stdout(StringIO()):
        code = cpnode(args)
    if code != 0:
        raise RuntimeError(f"cpnode init {name} failed with exit code {code}")
    config = directory / "node.toml"
    if extra_toml:
        with config.open("a", encoding="utf-8") as handle:
            handle.write("\n" + extra_toml.strip() + "\n")
    return config


@asynccontextmanager
async def running_node(config: Path, roles: frozenset[str] = ALL_ROLES) -> AsyncIterator[NodeServer]:
    """Serve the node of `config` in this event loop until the block ends."""
    server = NodeServer(load_settings(config, environ={}), roles)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class NodeProcess:
    """A node run as `python -m node run` in a subprocess; stdout lines are collected, stderr to a file."""

    def __init__(self, config: Path, roles: str | None = None, extra_args: Sequence[str] = ()) -> None:
        self.config = config
        self.roles = roles
        self.extra_args = list(extra_args)
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = config.parent / "node.stderr.log"
        self._lines: queue.Queue[str] = queue.Queue()
        self._pump_thread: threading.Thread | None = None
        self.stdout: list[str] = []

    def _pump(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put("")

    def start(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Start the process and wait until it prints its URL; return the URL."""
        args = [sys.executable, "-m", "node", "run", "--config", str(self.config), *self.extra_args]
        if self.roles:
            args += ["--roles", self.roles]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CPNODE_")}
        env["PYTHONUNBUFFERED"] = "1"
        stderr = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=self.config.parent
        )
        stderr.close()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.stdout.append(line)
            if " listening on " in line:
                self.url = line.rsplit(" ", 1)[-1]
                return self.url
            if line == "" and self.proc.poll() is not None:
                break
        self.kill()
        raise RuntimeError(f"node did not start: exit {self.proc.poll()}; log:\n{self.log()}")

    def log(self) -> str:
        """What the process wrote to stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Send SIGTERM and wait for a clean exit; return the exit code (killing it on timeout)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._drain()
        return code

    def kill(self) -> None:
        """SIGKILL the process (a crash, for fault tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        self._drain()

    def _drain(self) -> None:
        if self._pump_thread is not None:
            self._pump_thread.join(timeout=STOP_TIMEOUT_S)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return
            if line:
                self.stdout.append(line)
