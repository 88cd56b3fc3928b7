"""Architecture files (TOML): the one module of the planner that reads from disk.

Format::

    name = "paper"          # optional; defaults to the file name without extension
    availability = 0.99     # optional default for sub-modules given by name only
    backups = 2             # optional planning default (k = backups + 1 instances)
    target = 0.9999         # optional planning default

    [[modules]]
    name = "trading"
    submodules = ["market", "apps", { name = "demand", availability = 0.995 }, "matching"]

A sub-module is a name (taking the default availability) or a table with its own. Unknown keys are
errors that name their place, like the node's configuration.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from node.availability.errors import ArchitectureError, AvailabilityError
from node.availability.model import Architecture, Module, Submodule, check_availability, check_backups

_TOP_KEYS = frozenset({"name", "availability", "backups", "target", "modules", "description"})
_MODULE_KEYS = frozenset({"name", "submodules", "description"})
_SUBMODULE_KEYS = frozenset({"name", "availability", "description"})


def _unknown(where: str, data: Mapping[str, Any], allowed: frozenset[str]) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise ArchitectureError(f"{where}: unknown key(s) {', '.join(extra)}")


def _name(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ArchitectureError(f"{where}: name must be a non-empty string, got {value!r}")
    return value.strip()


def _availability(where: str, value: Any) -> float:
    try:
        return check_availability(value)
    except AvailabilityError as exc:
        raise ArchitectureError(f"{where}: {exc}") from None


def _submodule(where: str, item: Any, default: float | None) -> Submodule:
    if isinstance(item, str):
        name, value = _name(where, item), default
    elif isinstance(item, Mapping):
        _unknown(where, item, _SUBMODULE_KEYS)
        name = _name(where, item.get("name"))
        value = (
            _availability(f"{where}.availability", item["availability"])
            if "availability" in item
            else default
        )
    else:
        raise ArchitectureError(f"{where}: a sub-module is a name or a table, got {item!r}")
    if value is None:
        raise ArchitectureError(
            f"{where}: sub-module {name!r} has no availability; give it one, set `availability` "
            "at the top of the file, or pass --availability"
        )
    return Submodule(name, value)


def parse_architecture(
    data: Mapping[str, Any], name: str, default_availability: float | None = None
) -> Architecture:
    """Build an Architecture from parsed TOML data; `default_availability` overrides the file's default."""
    _unknown("architecture", data, _TOP_KEYS)
    arch_name = _name("name", data["name"]) if "name" in data else name
    default = (
        _availability("availability", default_availability)
        if default_availability is not None
        else (_availability("availability", data["availability"]) if "availability" in data else None)
    )
    backups = data.get("backups")
    if backups is not None:
        try:
            check_backups(backups)
        except AvailabilityError as exc:
            raise ArchitectureError(f"backups: {exc}") from None
    target = _availability("target", data["target"]) if "target" in data else None
    raw_modules = data.get("modules")
    if not isinstance(raw_modules, list) or not raw_modules:
        raise ArchitectureError("modules: expected at least one [[modules]] table")
    modules = []
    for index, raw in enumerate(raw_modules):
        where = f"modules[{index}]"
        if not isinstance(raw, Mapping):
            raise ArchitectureError(f"{where}: expected a table")
        _unknown(where, raw, _MODULE_KEYS)
        module_name = _name(f"{where}.name", raw.get("name"))
        subs = raw.get("submodules")
        if not isinstance(subs, list) or not subs:
            raise ArchitectureError(f"{where}.submodules: expected a non-empty list")
        modules.append(
            Module(
                module_name,
                tuple(_submodule(f"{where}.submodules[{i}]", item, default) for i, item in enumerate(subs)),
            )
        )
    return Architecture(arch_name, tuple(modules), backups=backups, target=target)


def load_architecture(path: Path, default_availability: float | None = None) -> Architecture:
    """Read and validate the architecture file at `path`, or raise ArchitectureError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ArchitectureError(f"architecture file {path} cannot be read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ArchitectureError(f"architecture file {path} is not valid TOML: {exc}") from None
    try:
        return parse_architecture(data, path.stem, default_availability)
    except ArchitectureError as exc:
        raise ArchitectureError(f"architecture file {path}: {exc}") from None


def with_availability(architecture: Architecture, availability: float) -> Architecture:
    """The same architecture with every sub-module at `availability` (the paper's sweep axis)."""
    value = check_availability(availability)
    return Architecture(
        architecture.name,
        tuple(
            Module(m.name, tuple(Submodule(s.name, value) for s in m.submodules))
            for m in architecture.modules
        ),
        backups=architecture.backups,
        target=architecture.target,
    )
