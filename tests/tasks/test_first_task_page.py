"""docs/first-task.md is true: its shell blocks, run in order in an empty folder, take two real
nodes from `cpnode init` to a task run on a partner's pool, its output fetched and its order settled."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from node.launcher import NodeProcess
from tests.node.test_first_hour import RUN_LINE, free_ports, shell_blocks

PAGE = Path(__file__).resolve().parents[2] / "docs" / "first-task.md"
PAGE_PORTS = ("8721", "8722")


@pytest.mark.slow
def test_first_task_page_runs(tmp_path: Path) -> None:
    """Every command of the page succeeds; the task succeeds on gamma's pool, its output is 42, it
    used 2 s and both ledgers settled 0.02 CNY."""
    text = PAGE.read_text(encoding="utf-8")
    for port, free in zip(PAGE_PORTS, free_ports(len(PAGE_PORTS)), strict=True):
        assert port in text
        text = text.replace(port, free)
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPNODE_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", COLUMNS="200")
    nodes: list[NodeProcess] = []
    outputs: list[str] = []
    try:
        for block in shell_blocks(text):
            started = RUN_LINE.match(block)
            if started:
                node = NodeProcess(tmp_path / started.group(1))
                nodes.append(node)
                node.start()
                continue
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, f"{block}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
            outputs.append(done.stdout + done.stderr)
    finally:
        for node in nodes:
            node.stop()
    assert len(nodes) == 2
    catalog, followed, shown = outputs[-4], outputs[-2], outputs[-1]
    assert "partner:gamma" in catalog
    assert "working\n" in followed
    assert "[task] running" in followed
    assert "42" in shown
    assert re.search(r"state\s+: released \(succeeded\)", shown)
    assert re.search(r"used\s+: 2 s", shown)
    assert re.search(r"cost\s+: 0\.02 CNY", shown)
    assert shown.count("settled") >= 2
