"""`cpnode tasks` against a real `cpnode run` process with a local pool: submit --follow exits 0
for a task that succeeded and 1 for one that failed, logs, show, list, stop (twice), outputs --out
with checked files, --json everywhere, a bad spec refused before anything is sent."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import cpnode
from tests.support.nodes import NodeProcess, make_node_dir
from tests.support.tasks import NODE_TOML, pool_toml

WRITE = "import pathlib; pathlib.Path('out').mkdir(); pathlib.Path('out/r.txt').write_text('hello'); print('line one'); print('line two')"


def run_json(config: Path, *args: str) -> Any:
    """`cpnode ARGS --json`, which must succeed; its parsed output."""
    code, out, err = cpnode(*args, "--json", config=config)
    assert code == 0, out + err
    return json.loads(out)


def spec_file(tmp_path: Path, name: str, code: str, **extra: Any) -> Path:
    """A JSON task spec running `python -c CODE` on one CPU slot."""
    spec = {
        "name": name,
        "program": {"command": [sys.executable, "-c", code]},
        "outputs": ["out"],
        "resources": {"units": 1, "hours": 1, "chip_model": "cpu"},
        **extra,
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture(name="node")
def fixture_node(tmp_path: Path) -> Iterator[Path]:
    """A node process with a two-slot local pool and alice funded."""
    config = make_node_dir(tmp_path, "a", extra_toml=NODE_TOML + pool_toml())
    process = NodeProcess(config)
    process.start()
    try:
        run_json(config, "consumers", "create", "alice")
        run_json(config, "consumers", "deposit", "alice", "--amount", "100000")
        yield config
    finally:
        assert process.stop() == 0, process.log()


def test_submit_follow_logs_outputs(node: Path, tmp_path: Path) -> None:
    """A task that succeeds: --follow prints its log and exits 0; logs, show, list and outputs agree."""
    code, out, err = cpnode(
        "tasks",
        "submit",
        str(spec_file(tmp_path, "ok", WRITE)),
        "--consumer",
        "alice",
        "--follow",
        config=node,
    )
    assert code == 0, out + err
    assert "line one\nline two\n" in out
    assert "[task] running" in err
    listed = run_json(node, "tasks", "list")
    assert len(listed) == 1
    task = listed[0]
    assert (task["state"], task["outcome"]) == ("released", "succeeded")
    shown = run_json(node, "tasks", "show", task["id"])
    assert [e["state"] for e in shown["history"]][-2:] == ["succeeded", "released"]
    logs = run_json(node, "tasks", "logs", task["id"])
    assert logs["text"] == "line one\nline two\n"
    written = run_json(node, "tasks", "outputs", task["id"], "--out", str(tmp_path / "got"))
    assert [w["path"] for w in written] == ["out/r.txt"]
    assert (tmp_path / "got" / "out" / "r.txt").read_text() == "hello"


def test_follow_exits_1_for_a_failed_task_and_json_events(node: Path, tmp_path: Path) -> None:
    """--follow --json prints one JSON event per line and exits 1 when the program fails."""
    path = spec_file(tmp_path, "bad", "print('oops'); raise SystemExit(4)")
    code, out, err = cpnode(
        "tasks", "submit", str(path), "--consumer", "alice", "--follow", "--json", config=node
    )
    assert code == 1, out + err
    events = [json.loads(line) for line in out.splitlines()]
    assert events[-1]["event"] == "end"
    assert events[-1]["data"]["outcome"] == "failed"
    assert any(e["event"] == "log" and "oops" in e["data"]["text"] for e in events)


def test_stop_twice_and_a_bad_spec(node: Path, tmp_path: Path) -> None:
    """Stopping a running task twice is fine and it ends stopped; a spec with a bad field exits 2
    naming it, and nothing is submitted."""
    task = run_json(
        node,
        "tasks",
        "submit",
        str(spec_file(tmp_path, "long", "import time; time.sleep(60)")),
        "--consumer",
        "alice",
    )
    first = run_json(node, "tasks", "stop", task["id"])
    second = run_json(node, "tasks", "stop", task["id"])
    assert first["state"] in ("stopped", "stopping", "released")  # the driver may release it at once
    assert second["state"] in ("stopped", "stopping", "released")
    code, out, err = cpnode("tasks", "logs", task["id"], "--follow", config=node)
    assert code == 1, out + err
    assert run_json(node, "tasks", "show", task["id"])["outcome"] == "stopped"
    bad = spec_file(tmp_path, "broken", "pass", max_duration_s=0)
    code, out, err = cpnode("tasks", "submit", str(bad), "--consumer", "alice", config=node)
    assert code == 2
    assert "max_duration_s" in err
    assert len(run_json(node, "tasks", "list")) == 1
