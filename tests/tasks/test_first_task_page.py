"""docs/first-task.md is true: its shell blocks, run in order in an empty folder, take two real
nodes from `cpnode init` to a task run on a partner's pool, its output fetched and its order settled."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.pages import run_page

PAGE_PORTS = ("8721", "8722")


@pytest.mark.long
@pytest.mark.slow
def test_first_task_page_runs(tmp_path: Path) -> None:
    """Every command of the page succeeds; the task succeeds on gamma's pool, its output is 42, it
    used 2 s (more on a busy machine) and both ledgers settled 0.01 CNY a second."""
    run = run_page("first-task.md", PAGE_PORTS, tmp_path)
    outputs = [out + err for out, err in zip(run.stdout, run.stderr, strict=True)]
    assert run.nodes == 2
    catalog, followed, shown = outputs[-4], outputs[-2], outputs[-1]
    assert "partner:gamma" in catalog
    assert "working\n" in followed
    assert "[task] running" in followed
    assert "42" in shown
    assert re.search(r"state\s+: released \(succeeded\)", shown)
    # 1.5 s of sleep plus the interpreter's start, counted in started seconds: 2 s on a quiet
    # machine, more on a busy one; at 36.00 CNY/h each second costs 0.01 CNY.
    used = re.search(r"used\s+: (\d+) s", shown)
    assert used is not None, shown
    seconds = int(used.group(1))
    assert 2 <= seconds <= 10, shown
    assert re.search(rf"cost\s+: 0\.{seconds:02d} CNY", shown), shown
    assert shown.count("settled") >= 2
