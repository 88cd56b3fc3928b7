"""What the conformance checks share: the context they run in, their result, and their one error."""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from connectors.contract import ComputePlugin, DataSource, InputFile, Instance, Program
from connectors.serving import start_app

INPUT = bytes(range(256)) * 40 + b"cpnode"


class ContractViolation(AssertionError):
    """A plugin answered, but not as the contract says."""


def require(condition: bool, message: str) -> None:
    """Raise ContractViolation(message) unless `condition` holds."""
    if not condition:
        raise ContractViolation(message)


class InputServer:
    """Serves the kit's input file on 127.0.0.1 (started on first use, closed with the context)."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def input_file(self, sha256: str | None = None) -> InputFile:
        """The served input, declared with its true hash (or `sha256`, to provoke a mismatch)."""
        if self._runner is None:
            app = web.Application()

            async def serve(_request: web.Request) -> web.Response:
                return web.Response(body=INPUT)

            app.router.add_get("/in.bin", serve)
            self._runner, self.url = await start_app(app)
        return InputFile(
            url=f"{self.url}/in.bin",
            path="data/in.bin",
            size_bytes=len(INPUT),
            sha256=sha256 or hashlib.sha256(INPUT).hexdigest(),
        )

    async def close(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@dataclass
class CheckContext:
    """What the checks share while running in order. `python` is the argv of a Python interpreter
    on the pool (the task checks' programs are Python scripts)."""

    plugin: ComputePlugin
    program: Program
    timeout_s: float
    python: list[str] = field(default_factory=lambda: [sys.executable])
    data: DataSource | None = None
    instance: Instance | None = None
    inputs: InputServer = field(default_factory=InputServer)
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome."""

    name: str
    passed: bool
    detail: str
    duration_ms: int
