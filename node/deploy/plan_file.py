"""Reading a plan written by `cpnode plan --json` / `--out` for deployment.

A deployable plan names only the node's roles (node/roles.py) as sub-modules, each exactly once,
so that every microservice becomes one `cpnode run --roles ...` process group.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.roles import ROLES


class DeployError(ValueError):
    """A plan or deployment option cannot be turned into manifests; the message says why."""


@dataclass(frozen=True)
class ServiceSpec:
    """One microservice: the module it came from and the roles it runs, in ROLES order."""

    module: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class DeploySpec:
    """What the manifests need from a plan."""

    instances: int
    services: tuple[ServiceSpec, ...]
    availability: float | None
    target: float | None
    strategy: str | None


def _number(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DeployError(f"plan: {key!r} must be a number, got {value!r}")
    return float(value)


def parse_plan(data: Any) -> DeploySpec:
    """Validate plan data (as `Plan.to_dict` writes it) and return what deployment needs."""
    if not isinstance(data, Mapping):
        raise DeployError("plan: expected a JSON object")
    backups = data.get("backups")
    if isinstance(backups, bool) or not isinstance(backups, int) or not 0 <= backups <= 100:
        raise DeployError(f"plan: 'backups' must be an integer 0–100, got {backups!r}")
    modules = data.get("modules")
    if not isinstance(modules, list) or not modules:
        raise DeployError("plan: 'modules' must be a non-empty list")
    services: list[ServiceSpec] = []
    seen: list[str] = []
    for index, module in enumerate(modules):
        where = f"plan: modules[{index}]"
        if not isinstance(module, Mapping) or not isinstance(module.get("name"), str):
            raise DeployError(f"{where}: expected an object with a 'name'")
        groups = module.get("services")
        if not isinstance(groups, list) or not groups:
            raise DeployError(f"{where}.services: expected a non-empty list of lists of role names")
        for number, group in enumerate(groups):
            if not isinstance(group, list) or not group or not all(isinstance(r, str) for r in group):
                raise DeployError(f"{where}.services[{number}]: expected a non-empty list of role names")
            unknown = sorted(set(group) - set(ROLES))
            if unknown:
                raise DeployError(
                    f"{where}.services[{number}]: {', '.join(unknown)} not a node role (roles: {', '.join(ROLES)}); "
                    "only a plan of the node's own architecture (`cpnode plan --node`) can be deployed"
                )
            seen.extend(group)
            services.append(ServiceSpec(module["name"], tuple(r for r in ROLES if r in group)))
    repeated = sorted({r for r in seen if seen.count(r) > 1})
    if repeated:
        raise DeployError(f"plan: role(s) {', '.join(repeated)} appear in more than one microservice")
    missing = [r for r in ROLES if r not in seen]
    if missing:
        raise DeployError(
            f"plan: role(s) {', '.join(missing)} are in no microservice; the node would lack them"
        )
    return DeploySpec(
        instances=backups + 1,
        services=tuple(services),
        availability=_number(data, "availability"),
        target=_number(data, "target"),
        strategy=data.get("strategy") if isinstance(data.get("strategy"), str) else None,
    )


def read_plan(path: Path) -> DeploySpec:
    """Read and validate the plan JSON file at `path`, or raise DeployError naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeployError(f"plan file {path} cannot be read: {exc.strerror}") from None
    except ValueError as exc:
        raise DeployError(f"plan file {path} is not valid JSON: {exc}") from None
    try:
        return parse_plan(data)
    except DeployError as exc:
        raise DeployError(f"{path}: {exc}") from None
