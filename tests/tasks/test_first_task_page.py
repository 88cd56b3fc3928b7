"""docs/first-task.md is true: its shell blocks, run in order in an empty folder, take two real
nodes from `cpnode init` to a task run on a partner's pool, its output fetched and its order settled."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.pages import run_page

PAGE_PORTS = ("8721", "8722")


@pytest.mark.slow
def test_first_task_page_runs(tmp_path: Path) -> None:
    """Every command of the page succeeds; the task succeeds on gamma's pool, its output is 42, it
    used 2 s and both ledgers settled 0.02 CNY."""
    run = run_page("first-task.md", PAGE_PORTS, tmp_path)
    outputs = [out + err for out, err in zip(run.stdout, run.stderr, strict=True)]
    assert run.nodes == 2
    catalog, followed, shown = outputs[-4], outputs[-2], outputs[-1]
    assert "partner:gamma" in catalog
    assert "working\n" in followed
    assert "[task] running" in followed
    assert "42" in shown
    assert re.search(r"state\s+: released \(succeeded\)", shown)
    assert re.search(r"used\s+: 2 s", shown)
    assert re.search(r"cost\s+: 0\.02 CNY", shown)
    assert shown.count("settled") >= 2
