"""The sandbox every reference pool runs programs in (the `local` pool and the cloud simulator):
one module, so both run programs the same way. `Sandbox` runs one program at a time: inputs
fetched and verified (`inputs`), its own session, environment and limits, a log, a time limit,
checkpoints, and kept outputs (`files`)."""

from connectors.sandbox.box import (
    RunStatus,
    Sandbox,
    SandboxSettings,
    check_program,
    command_for,
    now_ms,
    parse_runtimes,
)
from connectors.sandbox.inputs import InputPolicy

__all__ = [
    "InputPolicy",
    "RunStatus",
    "Sandbox",
    "SandboxSettings",
    "check_program",
    "command_for",
    "now_ms",
    "parse_runtimes",
]
