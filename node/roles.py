"""The roles one `cpnode run` process can take; a deployment may split them across processes.

Every process serves `/healthz`, `/readyz`, `/metrics` and `/api/v1/node`; the rest depends on roles.
`ROLES` are a node's own and what `cpnode run` takes by default. `supervisor` is taken only when
asked for (`--roles supervisor`, alone or with others): supervising is another party's job (the
supervisor, 监管方), not something every platform's node does.
"""

from __future__ import annotations

ROLES: tuple[str, ...] = (
    "api",  # operator and consumer API under /api/v1
    "federation",  # peer API under /fed/v1 (key document, login, catalogs, trades)
    "connectors",  # hosts compute and network plugins, refreshes their data sources
    "ledger",  # the ledger writer: settlement, holds, checkpoints
    "scheduler",  # runs scheduled jobs (each job still takes a database lease)
)
OPTIONAL_ROLES: tuple[str, ...] = (
    "supervisor",  # accepts nodes' supervision reports, answers national totals (runs its own jobs)
)
ALL_ROLES: frozenset[str] = frozenset(ROLES)
KNOWN_ROLES: frozenset[str] = frozenset(ROLES + OPTIONAL_ROLES)


def parse_roles(text: str | None) -> frozenset[str]:
    """Parse `api,federation,...` (None or empty means a node's roles, ROLES); raise ValueError
    naming unknown roles."""
    if not text:
        return ALL_ROLES
    roles = frozenset(part.strip() for part in text.split(",") if part.strip())
    known = ", ".join(ROLES + OPTIONAL_ROLES)
    unknown = sorted(roles - KNOWN_ROLES)
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(unknown)}; known roles: {known}")
    if not roles:
        raise ValueError(f"no roles given; known roles: {known}")
    return roles
