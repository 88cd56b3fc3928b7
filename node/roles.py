"""The roles one `cpnode run` process can take; a deployment may split them across processes.

Every process serves `/healthz`, `/readyz`, `/metrics` and `/api/v1/node`; the rest depends on roles.
"""

from __future__ import annotations

ROLES: tuple[str, ...] = (
    "api",  # operator and consumer API under /api/v1
    "federation",  # peer API under /fed/v1 (key document, login, catalogs, trades)
    "connectors",  # hosts compute and network plugins, refreshes their data sources
    "ledger",  # the ledger writer: settlement, holds, checkpoints
    "scheduler",  # runs scheduled jobs (each job still takes a database lease)
)
ALL_ROLES: frozenset[str] = frozenset(ROLES)


def parse_roles(text: str | None) -> frozenset[str]:
    """Parse `api,federation,...` (None or empty means every role); raise ValueError naming unknown roles."""
    if not text:
        return ALL_ROLES
    roles = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(roles - ALL_ROLES)
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(unknown)}; known roles: {', '.join(ROLES)}")
    if not roles:
        raise ValueError(f"no roles given; known roles: {', '.join(ROLES)}")
    return roles
