"""The architecture files shipped with cpnode, which `cpnode plan` and `cpnode plan sweep` both read.

Its own module so the two commands import it, not each other (`plan` registers `plan sweep`)."""

from __future__ import annotations

from pathlib import Path

from node.cli.common import CliError
from node.resources import config_file

# Shipped architecture files: the paper's platform and the node's own roles.
ARCHITECTURE_DIR = config_file("architecture")


def shipped_architecture(name: str) -> Path:
    """Path of a shipped architecture file (`paper` or `node`), or CliError when it is not installed."""
    path = ARCHITECTURE_DIR / f"{name}.toml"
    if not path.is_file():
        raise CliError(f"shipped architecture {path} not found; pass --architecture FILE", exit_code=2)
    return path
