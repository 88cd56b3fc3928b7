"""The records of services, with no I/O: a service and its replicas as stored, and the checks of
what an operator asks (node.services.tables maps them to rows).

A service is a task spec run as `replicas` tasks (each a replica: a program serving HTTP), the
most it may grow to by scale-out (`max_replicas`), when it grows (average in-flight requests per
healthy replica over `scale_in_flight` for `scale_window_s`; 0 turns scale-out off), and the path
its replicas answer health checks on. A replica's weight is None (automatic: DEFAULT_WEIGHT) until
an operator pins it; weight 0 drains it (it takes no new requests).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from node.services.errors import ServiceInputError

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
DEFAULT_WEIGHT = 100
MAX_WEIGHT = 10_000
MAX_REPLICAS = 64
ENDPOINT_PREFIX = "cpnode-endpoint "  # the line a replica prints on its log: `cpnode-endpoint URL`


@dataclass(frozen=True)
class Service:
    """A row of `services`."""

    name: str
    consumer: str
    spec: str
    replicas: int
    max_replicas: int
    scale_in_flight: float
    scale_window_s: float
    health_path: str
    created_ms: int
    updated_ms: int

    def spec_data(self) -> dict[str, Any]:
        """The replicas' task spec as given."""
        data: dict[str, Any] = json.loads(self.spec)
        return data

    def view(self) -> dict[str, Any]:
        """What the API shows of a service (without its replicas)."""
        shown = asdict(self)
        shown["spec"] = self.spec_data()
        return shown


@dataclass(frozen=True)
class Replica:
    """A row of `service_replicas`: one replica (its task id), its pinned weight, when added."""

    id: str
    service: str
    weight: int | None
    created_ms: int

    @property
    def effective_weight(self) -> int:
        """The weight steering uses: the pinned one, else DEFAULT_WEIGHT."""
        return DEFAULT_WEIGHT if self.weight is None else self.weight


def check_name(name: str) -> str:
    """A service name (a–z, 0–9, '-', up to 63), or ServiceInputError."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ServiceInputError("name", "must be 1–63 of a–z, 0–9 and '-', starting with a letter or digit")
    return name


def check_replicas(replicas: object, max_replicas: int = MAX_REPLICAS, field: str = "replicas") -> int:
    """A replica count 1..max_replicas (an integer), or ServiceInputError."""
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= max_replicas:
        raise ServiceInputError(field, f"must be an integer from 1 to {max_replicas}")
    return replicas


def check_weight(weight: object) -> int | None:
    """A pinned weight 0..MAX_WEIGHT, or None to unpin; ServiceInputError otherwise."""
    if weight is None:
        return None
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= MAX_WEIGHT:
        raise ServiceInputError(
            "weight", f"must be an integer from 0 (drain) to {MAX_WEIGHT}, or null to unpin", "bad_weight"
        )
    return weight


def check_weights(pinned: dict[str, int | None], replicas: list[Replica]) -> None:
    """Refuse pinning that would leave no replica any weight (every weight 0)."""
    weights = [pinned.get(r.id, r.weight) for r in replicas]
    if weights and all(w == 0 for w in weights):
        raise ServiceInputError(
            "weight", "every replica would have weight 0: nothing would take requests", "bad_weight"
        )


def check_health_path(path: object) -> str:
    """A health path: absolute, printable, no query, up to 200 characters."""
    if not isinstance(path, str) or not path.startswith("/") or len(path) > 200 or not path.isprintable():
        raise ServiceInputError("health_path", "must be an absolute path such as /healthz")
    return path


def endpoint_in(log_text: str, hosts: list[str]) -> str | None:
    """The endpoint a replica announced on its log (the first `cpnode-endpoint URL` line), None if
    none yet; ServiceInputError when it names a host outside `hosts` or is not an http URL."""
    for line in log_text.splitlines():
        if not line.startswith(ENDPOINT_PREFIX):
            continue
        url = line[len(ENDPOINT_PREFIX) :].strip().rstrip("/")
        match = re.fullmatch(r"http://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})", url)
        if match is None:
            raise ServiceInputError("endpoint", f"{url!r} is not http://HOST:PORT")
        host = match.group(1).strip("[]")
        if host not in hosts:
            raise ServiceInputError("endpoint", f"{url!r} names host {host!r}, not one of {', '.join(hosts)}")
        return url
    return None
