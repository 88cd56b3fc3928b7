"""The fork server the launcher starts node processes from (node.forkserver): each child is a
process of its own with the command's arguments, environment, folder, output and exit code, and
the launcher falls back to a fresh interpreter where a fork cannot stand in for one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from node import launcher
from node.forkserver import ForkedProcess, ForkServerClient
from node.launcher import NodeProcess
from tests.support.nodes import make_node_dir


class _Forks(ForkServerClient):
    """A fork server that closes its children's stdout pipes when it stops."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[ForkedProcess] = []

    def spawn(self, args: list[str], env: dict[str, str], cwd: str, stderr: int) -> ForkedProcess:
        proc = super().spawn(args, env, cwd, stderr)
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()
        super().close()


@pytest.fixture(name="forks")
def fixture_forks() -> Iterator[ForkServerClient]:
    """A fork server of the test's own, stopped afterwards."""
    client = _Forks()
    yield client
    client.close()


def _command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "node", *argv]


def _spawn(forks: ForkServerClient, tmp_path: Path, *argv: str, **env: str) -> tuple[ForkedProcess, Path]:
    log = tmp_path / "stderr.log"
    with log.open("ab") as stderr:
        proc = forks.spawn(_command(*argv), {**os.environ, **env}, str(tmp_path), stderr.fileno())
    return proc, log


def test_a_child_prints_and_exits_as_the_command_does(forks: ForkServerClient, tmp_path: Path) -> None:
    proc, _ = _spawn(forks, tmp_path, "--version")
    assert proc.pid != os.getpid()
    assert proc.wait(timeout=60) == 0
    assert proc.stdout is not None
    assert proc.stdout.read().strip().startswith("cpnode ")


def test_a_childs_error_goes_to_its_stderr_with_the_commands_code(
    forks: ForkServerClient, tmp_path: Path
) -> None:
    proc, log = _spawn(forks, tmp_path, "run", "--config", "missing/node.toml")
    assert proc.wait(timeout=60) == 2
    assert "Configuration file not found" in log.read_text()


def test_a_child_reads_its_own_environment(forks: ForkServerClient, tmp_path: Path) -> None:
    config = make_node_dir(tmp_path, "alpha")
    proc, log = _spawn(forks, tmp_path, "run", "--config", str(config), CPNODE_HTTP_PORT="70000")
    assert proc.wait(timeout=60) != 0
    assert "http.port" in log.read_text()
    assert "CPNODE_HTTP_PORT" not in os.environ  # so not in the server's: the child's own


def test_a_child_runs_a_node_in_its_folder_and_a_signal_is_its_exit(
    forks: ForkServerClient, tmp_path: Path
) -> None:
    config = make_node_dir(tmp_path, "alpha")
    with (config.parent / "node.stderr.log").open("ab") as stderr:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CPNODE_")}
        proc = forks.spawn(_command("run", "--config", str(config)), env, str(config.parent), stderr.fileno())
    assert proc.stdout is not None
    assert " listening on http://127.0.0.1:" in proc.stdout.readline()
    assert proc.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.2)
    assert Path(f"/proc/{proc.pid}/cwd").resolve() == config.parent.resolve()
    proc.kill()
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert proc.returncode == -signal.SIGKILL
    proc.send_signal(signal.SIGTERM)  # after the exit: nothing happens


def test_the_launcher_forks_when_enabled_and_starts_fresh_when_the_environment_asks(tmp_path: Path) -> None:
    launcher.launch_preloaded(False)
    try:
        launcher.launch_preloaded()
        forked = NodeProcess(make_node_dir(tmp_path, "alpha"))
        fresh = NodeProcess(make_node_dir(tmp_path, "beta"), env={"PYTHONPATH": str(tmp_path)})
        asked = NodeProcess(make_node_dir(tmp_path, "gamma"), preloaded=False)
        try:
            assert forked.start().startswith("http://")
            assert fresh.start().startswith("http://")
            assert asked.start().startswith("http://")
            assert isinstance(forked.proc, ForkedProcess)
            assert isinstance(fresh.proc, subprocess.Popen)
            assert isinstance(asked.proc, subprocess.Popen)
        finally:
            assert [node.stop() for node in (forked, fresh, asked)] == [0, 0, 0]
    finally:
        launcher.launch_preloaded(os.environ.get("CPNODE_TEST_FRESH_PROCESSES") != "1")


def test_fresh_interpreters_start_fresh_and_the_preloaded_one_serves_after(tmp_path: Path) -> None:
    launcher.launch_preloaded(False)
    try:
        launcher.launch_preloaded()
        with launcher.fresh_interpreters():
            fresh = NodeProcess(make_node_dir(tmp_path, "alpha"))
            fresh.launch()
        forked = NodeProcess(make_node_dir(tmp_path, "beta"))
        forked.launch()
        try:
            assert fresh.wait_ready().startswith("http://")
            assert forked.wait_ready().startswith("http://")
            assert isinstance(fresh.proc, subprocess.Popen)
            assert isinstance(forked.proc, ForkedProcess)
        finally:
            assert [node.stop() for node in (fresh, forked)] == [0, 0]
    finally:
        launcher.launch_preloaded(os.environ.get("CPNODE_TEST_FRESH_PROCESSES") != "1")


@pytest.mark.fresh_processes
def test_a_test_marked_fresh_processes_starts_fresh_ones(tmp_path: Path) -> None:
    node = NodeProcess(make_node_dir(tmp_path, "alpha"))
    try:
        assert node.start().startswith("http://")
        assert isinstance(node.proc, subprocess.Popen)
    finally:
        assert node.stop() == 0


def test_a_broken_server_falls_back_to_fresh_processes(tmp_path: Path) -> None:
    launcher.launch_preloaded(False)
    try:
        launcher.launch_preloaded()
        forks = launcher._forks
        assert forks is not None
        forks.spawn = _refuse  # type: ignore[method-assign,assignment]
        node = NodeProcess(make_node_dir(tmp_path, "alpha"))
        try:
            assert node.start().startswith("http://")
            assert isinstance(node.proc, subprocess.Popen)
            assert forks.broken
        finally:
            assert node.stop() == 0
    finally:
        launcher.launch_preloaded(False)
        launcher.launch_preloaded(os.environ.get("CPNODE_TEST_FRESH_PROCESSES") != "1")


def _refuse(*_args: object) -> ForkedProcess:
    raise OSError("the fork server closed its socket")
