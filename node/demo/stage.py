"""The demo's stage: a temporary folder, the nodes in it, their processes, and how to narrate."""

from __future__ import annotations

import json
import shlex
import urllib.request
from collections.abc import Callable, Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule

from node.cli.main import main as cpnode
from node.launcher import NodeProcess


class DemoError(RuntimeError):
    """A demo step found something other than what the scenario expects."""


@dataclass
class DemoNode:
    """One node of the demo: its folder, config and (once started) its process."""

    name: str
    config: Path
    process: NodeProcess | None = None

    @property
    def url(self) -> str:
        """The node's base URL (once started)."""
        if self.process is None or not self.process.url:
            raise DemoError(f"node {self.name} is not running")
        return self.process.url


@dataclass
class Stage:
    """Shared state of a demo run; steps read and add to it."""

    workdir: Path
    console: Console = field(default_factory=lambda: Console(highlight=False))
    nodes: dict[str, DemoNode] = field(default_factory=dict)
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    # Config other steps add to a node created later (node name → TOML appended by add_node).
    more_toml: dict[str, str] = field(default_factory=dict)

    def title(self, text: str) -> None:
        """Print a section heading."""
        self.console.print(Rule(f"[bold]{text}"))

    def say(self, text: str) -> None:
        """Print a line of narration."""
        self.console.print(text, markup=False)

    def echo(self, args: Sequence[str]) -> None:
        """Print the command line `cpnode ARGS` as it can be pasted into a shell (quoted, every option)."""
        self.console.print(f"$ cpnode {shlex.join(args)}", style="dim", markup=False, soft_wrap=True)

    def cli(self, args: Sequence[str], *, show: bool = True, echo: bool | None = None) -> str:
        """Run `cpnode ARGS` in this process and return its output; raise on failure. With `show` the
        command line and the output are printed; `echo` prints the command line alone (default: show)."""
        buffer = StringIO()
        with redirect_stdout(buffer):
            code = cpnode(list(args))
        output = buffer.getvalue()
        if show if echo is None else echo:
            self.echo(args)
        if show:
            self.console.print(output.rstrip(), markup=False, highlight=False)
        if code != 0:
            raise DemoError(f"cpnode {' '.join(args)} exited with {code}")
        return output

    def add_node(self, name: str, operator: str, region: str, extra_toml: str = "") -> DemoNode:
        """`cpnode init` a node in the work folder (port 0) and remember it."""
        directory = self.workdir / name
        self.cli(
            [
                "init",
                str(directory),
                "--name",
                name,
                "--operator",
                operator,
                "--region",
                region,
                "--port",
                "0",
            ]
        )
        config = directory / "node.toml"
        extra_toml += self.more_toml.get(name, "")
        if extra_toml:
            with config.open("a", encoding="utf-8") as handle:
                handle.write("\n" + extra_toml.strip() + "\n")
        node = DemoNode(name, config)
        self.nodes[name] = node
        return node

    def get_json(self, node: str, path: str, headers: dict[str, str] | None = None) -> Any:
        """GET a JSON document from a running node."""
        request = urllib.request.Request(self.nodes[node].url + path, headers=headers or {})  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
            return json.loads(response.read())
