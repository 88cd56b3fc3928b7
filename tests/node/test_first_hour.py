"""docs/first-hour.md is true: its shell blocks, run in order in an empty folder, take two real
nodes (`cpnode run` processes on free loopback ports) from `cpnode init` to a settled cross-node order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.pages import run_page

PAGE_PORTS = ("8711", "8712")


@pytest.mark.slow
def test_first_hour_page_runs(tmp_path: Path) -> None:
    """Every command of the page succeeds; the order ends settled, alice keeps 480.00 CNY and the
    seller's sale is settled, all shown in major units."""
    run = run_page("first-hour.md", PAGE_PORTS, tmp_path)
    outputs = run.stdout
    assert len(outputs) >= 4
    assert run.nodes == 2
    shown, settled = outputs[-3], outputs[-1]
    assert "partner:alpha" in shown
    assert "20.00 CNY/unit-h" in shown
    assert re.search(r"state\s+: settled", settled)
    assert re.search(r"settled\s+: 20\.00 CNY for 1 h", settled)
    assert re.search(r"alice\s+│ 480\.00 CNY", settled)
    [sale] = [line for line in settled.splitlines() if "first-order" in line and "│" in line]
    assert "40.00 CNY" in sale
    assert "settled" in sale
    assert "20.00 CNY" in sale
