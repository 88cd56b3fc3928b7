"""docs/first-hour.md is true: its shell blocks, run in order in an empty folder, take two real
nodes (`cpnode run` processes on free loopback ports) from `cpnode init` to a settled cross-node order."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from node.launcher import NodeProcess

PAGE = Path(__file__).resolve().parents[2] / "docs" / "first-hour.md"
PAGE_PORTS = ("8711", "8712")
RUN_LINE = re.compile(r"^cpnode run --config (\S+)$")


def shell_blocks(text: str) -> list[str]:
    """The page's ```sh blocks, in order."""
    return [block.strip() for block in re.findall(r"^```sh\n(.*?)^```$", text, flags=re.S | re.M)]


def free_ports(count: int) -> list[str]:
    """`count` distinct free TCP ports on 127.0.0.1."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [str(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.slow
def test_first_hour_page_runs(tmp_path: Path) -> None:
    """Every command of the page succeeds; the order ends settled, alice keeps 480.00 CNY and the
    seller's sale is settled, all shown in major units."""
    text = PAGE.read_text(encoding="utf-8")
    for port, free in zip(PAGE_PORTS, free_ports(len(PAGE_PORTS)), strict=True):
        assert port in text
        text = text.replace(port, free)
    blocks = shell_blocks(text)
    assert len(blocks) >= 6
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPNODE_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", COLUMNS="200")
    nodes: list[NodeProcess] = []
    outputs: list[str] = []
    try:
        for block in blocks:
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
            outputs.append(done.stdout)
    finally:
        for node in nodes:
            node.stop()
    assert len(nodes) == 2
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
