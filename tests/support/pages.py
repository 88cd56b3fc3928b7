"""Running a documentation page as a test: its ```sh blocks, in order, in an empty folder, with each
`cpnode run --config DIR/node.toml` line started as a real node process on a free loopback port."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from node.launcher import NodeProcess
from node.ports import free_ports

DOCS = Path(__file__).resolve().parents[2] / "docs"
RUN_LINE = re.compile(r"^cpnode run --config (\S+)$")


def shell_blocks(text: str) -> list[str]:
    """The page's ```sh blocks, in order."""
    return [block.strip() for block in re.findall(r"^```sh\n(.*?)^```$", text, flags=re.S | re.M)]


@dataclass
class PageRun:
    """What running a page gave: how many nodes it started and each command block's output."""

    nodes: int = 0
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)


def run_page(name: str, ports: tuple[str, ...], workdir: Path) -> PageRun:
    """Run docs/`name`'s blocks in `workdir`, its `ports` replaced by free ones; every block must
    succeed (the failing block and its output are the assertion's message)."""
    text = (DOCS / name).read_text(encoding="utf-8")
    for port, free in zip(ports, map(str, free_ports(len(ports))), strict=True):
        assert port in text
        text = text.replace(port, free)
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPNODE_")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", COLUMNS="200")
    nodes: list[NodeProcess] = []
    run = PageRun()
    try:
        for block in shell_blocks(text):
            started = RUN_LINE.match(block)
            if started:
                node = NodeProcess(workdir / started.group(1))
                nodes.append(node)
                node.start()
                continue
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, f"{block}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
            run.stdout.append(done.stdout)
            run.stderr.append(done.stderr)
    finally:
        for node in nodes:
            node.stop()
    run.nodes = len(nodes)
    return run
