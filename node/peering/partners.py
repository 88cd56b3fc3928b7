"""Partners as the operator sees them (link state, catalog, age), and the checks before pinning
one; shared by `cpnode partners` and `/api/v1/partners`."""

from __future__ import annotations

import functools
import ipaddress
import json
import socket
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from federation import store
from federation.errors import FederationError, NotFoundError
from federation.keys import fingerprint, parse_public_key
from federation.partners import Agreement, check_url, parse_allow_list, split_url
from federation.tables import partners_t


def check_partner_url(url: str, allow_networks: list[str] | tuple[str, ...]) -> str:
    """`url` if its host resolves only to allowed addresses (see federation.partners); a
    FederationError (UnsafeURLError) otherwise, or a ValueError when it does not resolve."""
    _, host, port = split_url(url)
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ValueError(f"partner URL {url!r} does not resolve: {exc.strerror}") from None
    addresses = {ipaddress.ip_address(info[4][0]) for info in infos}
    return check_url(url, addresses, parse_allow_list(allow_networks))


_LISTED = sa.select(
    partners_t.c.name,
    partners_t.c.urls_json,
    partners_t.c.public_key,
    partners_t.c.agreement_json,
    partners_t.c.source,
).order_by(partners_t.c.name)
_AGREEMENT_FIELDS = Agreement().to_json()  # every field, for agreements stored before one was added


def partner_rows(engine: Engine, now_ts: int) -> list[dict[str, Any]]:
    """Every pinned partner with its link state, last error, catalog version, offers and age.

    The partners are read as stored (checked when they were pinned), not parsed and checked again
    one by one, and a key's fingerprint is worked out once per process: the listing's cost was
    mostly that, per partner, on every read."""
    with engine.connect() as conn:
        partners = conn.execute(_LISTED).all()
    states = store.sync_states(engine)
    catalogs = {row["partner"]: row for row in store.received_catalogs(engine, bodies=False)}
    rows = []
    for partner in partners:
        state = states.get(partner.name, {})
        catalog = catalogs.get(partner.name)
        received = catalog["received_ts"] if catalog else None
        rows.append(
            {
                "name": partner.name,
                "urls": json.loads(partner.urls_json),
                "source": partner.source,
                "fingerprint": _fingerprint(partner.public_key),
                "status": state.get("status", "never"),
                "failures": state.get("failures", 0),
                "last_error": state.get("last_error"),
                "last_success_ts": state.get("last_success_ts"),
                "catalog_version": catalog["version"] if catalog else None,
                "catalog_received_ts": received,
                "catalog_age_s": None if received is None else max(now_ts - int(received), 0),
                "catalog_expires_ts": catalog["expires_ts"] if catalog else None,
                "offers": catalog["offer_count"] if catalog else 0,
                "agreement": {**_AGREEMENT_FIELDS, **json.loads(partner.agreement_json)},
            }
        )
    return rows


@functools.lru_cache(maxsize=4096)
def _fingerprint(public_key: str) -> str:
    """The fingerprint of a stored public key (a pure function of its text)."""
    return fingerprint(parse_public_key(public_key))


def discovered_rows(engine: Engine, trusted: set[str] | None = None) -> list[dict[str, Any]]:
    """Nodes seen by discovery, each marked whether it is already trusted (`trusted`: the pinned
    partners' names, when the caller has them)."""
    rows = store.list_discovered(engine)
    if not rows:
        return rows
    if trusted is None:
        trusted = {p.name for p in store.list_partners(engine)}
    for row in rows:
        row["trusted"] = row["name"] in trusted
    return rows


def discovered_candidate(engine: Engine, name: str, fp: str) -> dict[str, Any]:
    """The discovered node `name` if its fingerprint is `fp`; NotFoundError or ConflictError else."""
    candidate = next((r for r in store.list_discovered(engine) if r["name"] == name), None)
    if candidate is None:
        raise NotFoundError(f"no discovered node called {name!r}", code="unknown_candidate")
    if candidate["fingerprint"] != fp:
        raise FederationError(
            f"fingerprint mismatch for {name}: discovered {candidate['fingerprint']}, given {fp}; not trusted",
            code="fingerprint_mismatch",
        )
    return candidate
