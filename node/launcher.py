"""Run a node as a real `cpnode run` subprocess: start, read its URL, stop on SIGTERM, or kill.

Used by `make demo` and by the integration tests, so both exercise the command operators run. The
tests turn on `launch_preloaded`: their nodes are forks of one interpreter that has imported cpnode
(node.forkserver), each running the same `main(argv)` as a fresh `python -m node run`; inside
`fresh_interpreters` (the tests marked `fresh_processes`) each starts fresh, as operators start it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from node.forkserver import ForkedProcess, ForkServerClient

# A deadline, not a wait: start returns as soon as the node listens or exits. A loaded machine (the
# test suite on 2 cores) takes a node half a minute and more to import, migrate and listen.
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
# Environment variables a fork of the preloaded interpreter cannot honour: they act at its start.
_AT_START = ("PYTHONPATH", "PYTHONHASHSEED", "PYTHONHOME", "PYTHONSAFEPATH", "PYTHONWARNINGS")
_forks: ForkServerClient | None = None
_fresh_only = False  # inside `fresh_interpreters`: the preloaded interpreter is not used


def launch_preloaded(enabled: bool = True) -> None:
    """Start later node processes as forks of one preloaded interpreter (`node.forkserver`) instead
    of a fresh one each, saving each start its imports: for many short-lived nodes, as in the
    tests. A process whose environment changes how an interpreter starts is still started fresh."""
    global _forks
    if enabled and _forks is None and hasattr(os, "fork") and sys.platform == "linux":
        _forks = ForkServerClient()
    elif not enabled and _forks is not None:
        _forks.close()
        _forks = None


@contextlib.contextmanager
def fresh_interpreters() -> Iterator[None]:
    """Start node processes from fresh interpreters inside the block, as `cpnode run` starts, even
    where `launch_preloaded` is on (its preloaded interpreter stays up for later starts)."""
    global _fresh_only
    before, _fresh_only = _fresh_only, True
    try:
        yield
    finally:
        _fresh_only = before


def _spawn(
    args: list[str], env: dict[str, str], cwd: Path, stderr: int, preloaded: bool = True
) -> subprocess.Popen[str] | ForkedProcess:
    """A started process for `args`: a fork of the preloaded interpreter when one is in use,
    `preloaded` and `env` allow it, else a fresh `subprocess.Popen` (text stdout)."""
    forks = _forks if preloaded and not _fresh_only else None
    if forks is not None and not forks.broken and all(env.get(k) == os.environ.get(k) for k in _AT_START):
        try:
            return forks.spawn(args, env, str(cwd), stderr)
        except OSError:
            forks.broken = True  # the server is gone: start fresh from now on
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        args, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, cwd=cwd
    )


class LaunchError(RuntimeError):
    """The node process did not start; the message includes what it wrote to stderr."""


class NodeProcess:
    """A node run as `python -m node run`; stdout lines are collected, stderr goes to a log file."""

    def __init__(
        self,
        config: Path,
        roles: str | None = None,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        preloaded: bool = True,
    ) -> None:
        """`preloaded`: False starts a fresh interpreter even where `launch_preloaded` is on."""
        self.config = config
        self.preloaded = preloaded
        self.roles = roles
        self.extra_args = list(extra_args)
        self.env = env
        self.url = ""
        self.proc: subprocess.Popen[str] | ForkedProcess | None = None
        self.log_path = config.parent / "node.stderr.log"
        self.stdout: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        self._pump_thread: threading.Thread | None = None
        self._terminated = False

    def _pump(self) -> None:
        proc = self.proc
        if proc is None or proc.stdout is None:
            return
        for line in proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put("")

    def launch(self) -> None:
        """Start the process without waiting for it to listen (`wait_ready` waits)."""
        args = [sys.executable, "-m", "node", "run", "--config", str(self.config), *self.extra_args]
        if self.roles:
            args += ["--roles", self.roles]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CPNODE_")}
        env.update(self.env or {})
        env["PYTHONUNBUFFERED"] = "1"
        self._terminated = False
        with self.log_path.open("ab") as stderr:
            self.proc = _spawn(args, env, self.config.parent, stderr.fileno(), self.preloaded)
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Wait until the launched process prints its URL; return the URL (kill it and raise
        LaunchError if it exits or the deadline passes first)."""
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._lines.get(timeout=0.1)
            except queue.Empty:
                if time.monotonic() > deadline:
                    break
                continue
            self.stdout.append(line)
            if " listening on " in line:
                self.url = line.rsplit(" ", 1)[-1]
                return self.url
            if line == "" and self.proc.poll() is not None:
                break
        self.kill()
        raise LaunchError(f"node {self.config} did not start (exit {self.proc.poll()}):\n{self.log()}")

    def start(self, timeout_s: float = START_TIMEOUT_S) -> str:
        """Start the process and wait until it prints its URL; return the URL."""
        self.launch()
        return self.wait_ready(timeout_s)

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        """What the process wrote to stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def terminate(self) -> None:
        """Send SIGTERM once if the process is alive, without waiting (`stop` waits). Once only: a
        second signal can arrive after the node's loop has closed and its handler with it, and kill
        a node that was shutting down cleanly."""
        if self.proc is not None and self.proc.poll() is None and not self._terminated:
            self.proc.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Send SIGTERM and wait for a clean exit; return the exit code (killing it on timeout)."""
        if self.proc is None:
            return 0
        self.terminate()
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


def start_all(processes: Sequence[NodeProcess], timeout_s: float = START_TIMEOUT_S) -> list[str]:
    """Launch every process at once, then wait for each to listen (up to `timeout_s` each); return
    their URLs in order. Nodes import, migrate and bind side by side instead of one after another."""
    for process in processes:
        process.launch()
    try:
        return [process.wait_ready(timeout_s) for process in processes]
    except LaunchError:
        for process in processes:
            process.kill()
        raise


def stop_all(processes: Sequence[NodeProcess], timeout_s: float = STOP_TIMEOUT_S) -> list[int]:
    """SIGTERM every process at once, then wait for each; return their exit codes in order."""
    for process in processes:
        process.terminate()
    return [process.stop(timeout_s) for process in processes]
