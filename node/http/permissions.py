"""Who may call which `/api/v1` route: the one permission table, checked for every request before its
handler runs (node.http.access). No I/O.

Roles:
- `admin` — everything: the bootstrap admin token (`keys/admin.token`) and users with role admin;
- `operator` — the day-to-day work (consumers, deposits, orders, tasks, pools, partners' trades,
  account lifecycle) but no user management;
- `auditor` — read-only: the ledger, account events and accounts, statements and audits;
- `consumer` — a consumer with its own token, acting only for itself (handlers narrow further);
- `federated` — a partner's consumer presenting its home node's assertion (`alice@a`): it reads
  its own tasks and the offers, nothing else.

A route missing from the table is refused to everyone but `admin` (and a test checks that every
mounted route has its row). `PUBLIC` routes take no bearer token here; they check their own
credentials (a plugin's heartbeat token, a gateway code) or none (`/api/v1/node`).
"""

from __future__ import annotations

from typing import Final

ROLES: Final = ("admin", "operator", "auditor", "consumer", "federated")
USER_ROLES: Final = ("admin", "operator", "auditor")
PUBLIC: Final = frozenset[str]()  # no token checked here (the route checks its own credentials)

_ADMIN = frozenset({"admin"})
_OPS = frozenset({"admin", "operator"})
_READ = frozenset({"admin", "operator", "auditor"})
_OPS_CONSUMER = _OPS | {"consumer"}
_READ_CONSUMER = _READ | {"consumer"}
_READ_ANYONE = _READ_CONSUMER | {"federated"}

# (method, route as aiohttp names it) → the roles allowed; PUBLIC takes no token.
TABLE: Final[dict[tuple[str, str], frozenset[str]]] = {
    ("GET", "/api/v1/node"): PUBLIC,
    ("GET", "/api/v1/whoami"): _READ_ANYONE,
    ("POST", "/api/v1/reload"): _OPS,
    # consumers, their money and tokens (node.trading.routes)
    ("POST", "/api/v1/consumers"): _OPS,
    ("GET", "/api/v1/consumers"): _READ,
    ("GET", "/api/v1/consumers/{id}"): _READ_CONSUMER,
    ("POST", "/api/v1/consumers/{id}/deposits"): _OPS,
    ("POST", "/api/v1/consumers/{id}/tokens"): _OPS,
    ("GET", "/api/v1/consumers/{id}/tokens"): _READ,
    ("POST", "/api/v1/consumers/{id}/tokens/{token_id}/revoke"): _OPS,
    # orders and sales
    ("POST", "/api/v1/orders"): _OPS_CONSUMER,
    ("GET", "/api/v1/orders"): _READ_CONSUMER,
    ("GET", "/api/v1/orders/{id}"): _READ_CONSUMER,
    ("POST", "/api/v1/orders/{id}/settle"): _OPS,
    ("POST", "/api/v1/orders/{id}/cancel"): _OPS_CONSUMER,
    ("GET", "/api/v1/sales"): _READ,
    ("GET", "/api/v1/trading/summary"): _READ,
    ("GET", "/api/v1/offers"): _READ_ANYONE,
    ("POST", "/api/v1/match"): _OPS_CONSUMER,
    # tasks
    ("POST", "/api/v1/tasks"): _OPS_CONSUMER,
    ("GET", "/api/v1/tasks"): _READ_ANYONE,
    ("GET", "/api/v1/tasks/{id}"): _READ_ANYONE,
    ("GET", "/api/v1/tasks/{id}/logs"): _READ_ANYONE,
    ("GET", "/api/v1/tasks/{id}/outputs"): _READ_ANYONE,
    ("GET", "/api/v1/tasks/{id}/outputs/{path}"): _READ_ANYONE,
    ("GET", "/api/v1/tasks/{id}/events"): _READ_ANYONE,
    ("POST", "/api/v1/tasks/{id}/stop"): _OPS_CONSUMER,
    # ledger
    ("GET", "/api/v1/ledger/accounts"): _READ,
    ("POST", "/api/v1/ledger/accounts"): _OPS,
    ("POST", "/api/v1/ledger/transfers"): _OPS,
    ("GET", "/api/v1/ledger/transfers/{id}"): _READ,
    ("GET", "/api/v1/ledger/checkpoint"): _READ,
    ("POST", "/api/v1/ledger/audits"): _OPS,  # writes a bundle on the node; auditors read it
    ("GET", "/api/v1/ledger/reconciliations"): _READ,
    ("POST", "/api/v1/ledger/reconciliations"): _OPS,  # records what it finds
    # a bundle to download (signs a checkpoint of the log, changes no record) and the verification
    # of an uploaded one (a POST only to carry the file; nothing is kept): auditors' work
    ("GET", "/api/v1/ledger/bundle"): _READ,
    ("POST", "/api/v1/ledger/bundles/verify"): _READ,
    # task migrations
    ("POST", "/api/v1/migrations/plan"): _OPS,
    ("POST", "/api/v1/migrations"): _OPS,
    ("GET", "/api/v1/migrations"): _OPS,
    ("GET", "/api/v1/migrations/{id}"): _OPS,
    ("POST", "/api/v1/migrations/{id}/cancel"): _OPS,
    ("POST", "/api/v1/migrations/{id}/retry"): _OPS,
    ("GET", "/api/v1/migrations/{id}/events"): _OPS,
    # plugins, pools and gateways
    ("POST", "/api/v1/plugins"): _OPS,
    ("GET", "/api/v1/plugins"): _OPS,
    ("DELETE", "/api/v1/plugins/{name}"): _OPS,
    ("POST", "/api/v1/plugins/{name}/heartbeat"): PUBLIC,
    ("POST", "/api/v1/plugins/{name}/check"): _OPS,
    ("GET", "/api/v1/pools"): _OPS,
    ("GET", "/api/v1/pools/utilisation"): _OPS,
    ("POST", "/api/v1/pools/{name}/registration"): _OPS,
    ("POST", "/api/v1/gateway/codes"): _OPS,
    ("POST", "/api/v1/gateway/register"): PUBLIC,
    # account lifecycle (node.accounts)
    ("GET", "/api/v1/accounts"): _READ,
    ("GET", "/api/v1/accounts/{id}"): _READ,
    ("POST", "/api/v1/accounts/{id}/verify"): _OPS,
    ("POST", "/api/v1/accounts/{id}/suspend"): _OPS,
    ("POST", "/api/v1/accounts/{id}/reinstate"): _OPS,
    ("POST", "/api/v1/accounts/{id}/close"): _OPS,
    ("GET", "/api/v1/account-events"): _READ,
    ("GET", "/api/v1/federated-accounts"): _READ,
    ("POST", "/api/v1/account-assertions"): frozenset({"consumer"}),
    # partners (node.peering)
    ("GET", "/api/v1/partners"): _READ,
    ("GET", "/api/v1/partners/links"): _READ,
    ("POST", "/api/v1/partners"): _OPS,
    ("POST", "/api/v1/partners/trust"): _OPS,
    ("POST", "/api/v1/partners/{name}/remove"): _OPS,
    # network view and scheduling strategies (node.network, node.strategies)
    ("GET", "/api/v1/network"): _READ_CONSUMER,
    ("GET", "/api/v1/network/path"): _READ_CONSUMER,
    ("POST", "/api/v1/network/refresh"): _OPS,
    ("GET", "/api/v1/strategies"): _READ_CONSUMER,
    ("POST", "/api/v1/strategies"): _OPS,
    ("GET", "/api/v1/strategies/report"): _READ,
    ("GET", "/api/v1/strategies/orders/{order_id}"): _READ_CONSUMER,
    ("GET", "/api/v1/strategies/{name}"): _READ_CONSUMER,
    ("POST", "/api/v1/strategies/{name}/retire"): _OPS,
    ("PUT", "/api/v1/strategies/{name}/split"): _OPS,
    # services with traffic steering (node.services): consumers run their own
    ("POST", "/api/v1/services"): _OPS_CONSUMER,
    ("GET", "/api/v1/services"): _READ_CONSUMER,
    ("GET", "/api/v1/services/{name}"): _READ_CONSUMER,
    ("POST", "/api/v1/services/{name}/scale"): _OPS_CONSUMER,
    ("POST", "/api/v1/services/{name}/pin"): _OPS_CONSUMER,
    ("DELETE", "/api/v1/services/{name}"): _OPS_CONSUMER,
    ("GET", "/api/v1/services/{name}/resolve"): _READ_CONSUMER,
    # statements (node.statements): issued by staff, read by the auditor and each consumer its own
    ("POST", "/api/v1/statements"): _OPS,
    ("GET", "/api/v1/statements"): _READ_CONSUMER,
    ("GET", "/api/v1/statements/{id}"): _READ_CONSUMER,
    # supervision (node.supervision)
    ("GET", "/api/v1/supervision"): _READ,
    ("GET", "/api/v1/supervision/nodes/{name}/history"): _READ,
    # operator users (node.accounts): admins only
    ("POST", "/api/v1/users"): _ADMIN,
    ("GET", "/api/v1/users"): _ADMIN,
    ("GET", "/api/v1/users/{id}"): _ADMIN,
    ("POST", "/api/v1/users/{id}/token"): _ADMIN,
    ("POST", "/api/v1/users/{id}/verify"): _ADMIN,
    ("POST", "/api/v1/users/{id}/suspend"): _ADMIN,
    ("POST", "/api/v1/users/{id}/reinstate"): _ADMIN,
    ("POST", "/api/v1/users/{id}/close"): _ADMIN,
}


def _key(method: str, route: str) -> tuple[str, str]:
    # aiohttp names `{path:.+}` as `{path}`; HEAD is answered by GET routes.
    method = "GET" if method == "HEAD" else method
    return method, route


def allowed_roles(method: str, route: str) -> frozenset[str]:
    """The roles that may call `method route`; a route without a row is the admin's alone."""
    return TABLE.get(_key(method, route), _ADMIN)


def is_public(method: str, route: str) -> bool:
    """Whether `method route` takes no bearer token here (it checks its own credentials)."""
    roles = TABLE.get(_key(method, route))
    return roles is not None and not roles


def may(role: str, method: str, route: str) -> bool:
    """Whether a caller of `role` may call `method route`."""
    return role in allowed_roles(method, route)


def known(method: str, route: str) -> bool:
    """Whether the table has a row for `method route`."""
    return _key(method, route) in TABLE
