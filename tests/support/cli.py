"""The one way tests run `cpnode`: in this process (fast, the default) or as a real `python -m node`
process (`process=True`, for what needs its own interpreter: signals, start-up, environment), and
`cpnode_async` from a test whose event loop serves the node the command calls."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path
from typing import Any, NamedTuple

from node.cli.main import main


class CliResult(NamedTuple):
    """What a `cpnode` run ended with: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        """Everything printed: stdout, then stderr."""
        return self.out + self.err

    @property
    def merged(self) -> tuple[int, str]:
        """(exit code, everything printed), for tests that check a message wherever it went."""
        return self.code, self.output

    def json(self) -> Any:
        """The parsed stdout of a run that must have succeeded."""
        assert self.code == 0, self.output
        return json.loads(self.out)


def cpnode(
    *args: str,
    config: Path | str | None = None,
    process: bool = False,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
) -> CliResult:
    """`cpnode ARGS [--config CONFIG]`, in this process or (`process`) as a real one with `env`."""
    argv = [*args, *(["--config", str(config)] if config is not None else [])]
    if process:
        done = subprocess.run(
            [sys.executable, "-m", "node", *argv],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=dict(os.environ if env is None else env),
            check=False,
        )
        return CliResult(done.returncode, done.stdout, done.stderr)
    assert env is None, "an environment needs process=True"
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return CliResult(code, out.getvalue(), err.getvalue())


async def cpnode_async(*args: str, config: Path | str | None = None) -> CliResult:
    """`cpnode` in this process but in a worker thread, so the test's event loop keeps serving."""
    return await asyncio.to_thread(cpnode, *args, config=config)
