"""Files shipped with cpnode (architecture files, simulator inventories, network topologies).

In a source checkout they live in the top-level `configs/`; an installed wheel carries the same
tree as `node/_configs/` (see `[tool.hatch.build.targets.wheel.force-include]`).
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CANDIDATES = (_PACKAGE.parent / "configs", _PACKAGE / "_configs")


def configs_dir() -> Path:
    """The folder holding the shipped configuration files."""
    for candidate in _CANDIDATES:
        if candidate.is_dir():
            return candidate
    return _CANDIDATES[0]


def config_file(*parts: str) -> Path:
    """A shipped configuration file, e.g. `config_file("architecture", "paper.toml")`."""
    return configs_dir().joinpath(*parts)
