"""`make demo` runs its whole scenario to the end on real node processes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


# The whole scenario, bounded by its own timeout below (the suite's 180 s would cut it first on a
# loaded machine, with no output from the demo to say where it was).
@pytest.mark.timeout(450)
@pytest.mark.long
def test_demo_scenario_completes(tmp_path: Path) -> None:
    """The demo exits 0 and shows every node running, then stopped cleanly."""
    result = subprocess.run(
        [sys.executable, "-m", "node.demo", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    for name in ("beijing", "shanghai", "guangzhou"):
        assert f"{name:<10} stopped, exit code 0" in result.stdout
    running = [
        line
        for line in result.stdout.splitlines()
        if line.startswith("process ") and " : running at " in line
    ]
    assert len(running) >= 3
    # Delivery: alice's training task ran on chengdu's pool and both ledgers agree.
    assert "done: final loss 0.474973" in result.stdout
    assert "no usage dispute" in result.stdout
    assert "none: both ledgers agree on every trade in the window" in result.stdout
    # Migration: carol's training moved mid-run to chongqing's pool, its transfer's progress shown
    # by `cpnode migrate --follow`, and its outputs equal to an unmigrated run's, digest by digest.
    assert re.search(r": transferring +\d+% ", result.stdout), result.stdout[-4000:]
    assert "resumed at step" in result.stdout
    for name in ("metrics.json", "model.npy"):
        [line] = [line for line in result.stdout.splitlines() if line.startswith(f"out/{name} ")]
        digests = re.fullmatch(
            rf"out/{re.escape(name)} +moved ([0-9a-f]{{16}})  unmoved ([0-9a-f]{{16}})  identical", line
        )
        assert digests is not None, line
        assert digests[1] == digests[2], line
    assert "identical result: the migrated training's outputs are bit for bit" in result.stdout
