"""Signed `/fed/v1` requests between a node and a supervisor, which need not be partners.

Each side pins the other by name, URL and public key (`cpnode supervisors add` on the node,
`cpnode supervision nodes add` on the supervisor). Requests are checked exactly as partners' are
(federation.httpsig: signature, body digest, destination, times; the replay check shared by
replicas), against the pinned key, plus the keys learned from the peer's key documents when the
peer is also a partner pinned with that same key (so a partner's key rotation carries over).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from federation import store as fed_store
from federation.errors import AuthError
from federation.httpsig import (
    CLOCK_SKEW_S,
    SignatureParams,
    check_times,
    read_signature_params,
    verify_request,
)
from federation.keydoc import KeyRecord
from federation.keys import key_id, parse_public_key
from federation.partners import check_node_name
from federation.service import FederationService
from node.supervision.store import Pinned

Lookup = Callable[[str], Awaitable[Pinned | None]]


async def trusted_records(service: FederationService, pinned: Pinned) -> dict[str, KeyRecord]:
    """The keys `pinned`'s signatures may be checked with: its pinned key and, when it is also a
    partner pinned with the same key, the keys learned from its key documents; none on the deny-list."""
    view = await service.db(fed_store.peer_view, pinned.name)
    kid = key_id(parse_public_key(pinned.public_key))
    records = {kid: KeyRecord(kid, pinned.public_key, "active", 0)}
    if view.partner is not None and view.partner.public_key == pinned.public_key:
        records.update(await service.partner_keys(view.partner, view))
    return {kid: record for kid, record in records.items() if kid not in view.denied}


async def authenticate(
    service: FederationService,
    lookup: Lookup,
    what: str,
    method: str,
    path_qs: str,
    header_lines: list[tuple[str, str]],
    body: bytes,
    replay_check: bool = True,
) -> tuple[Pinned, dict[str, KeyRecord], SignatureParams]:
    """The pinned peer (`what`: "supervisor" or "registered node") that signed this request, its
    trusted keys and the signature's parameters; AuthError `unknown_<what>` when the signer is not
    pinned, else as for partners. Without `replay_check` the caller claims the nonce itself, in the
    transaction that applies the request (`claim_nonce_in`)."""
    params = read_signature_params(header_lines)
    check_node_name(params.node)
    if params.to != service.name:
        raise AuthError(f"request is signed for {params.to!r}, not this node", code="wrong_destination")
    now = service.clock()
    check_times(params, now)
    pinned = await lookup(params.node)
    if pinned is None:
        code = "unknown_" + what.replace("registered ", "")
        raise AuthError(f"{params.node!r} is not a {what} of {service.name}", code=code)
    records = await trusted_records(service, pinned)
    record = records.get(params.key_id)
    if record is None:
        raise AuthError(f"key {params.key_id} is not a trusted key of {pinned.name}", code="unknown_key")
    if not record.valid_at(now + CLOCK_SKEW_S) and not record.valid_at(now):
        raise AuthError(
            f"key {params.key_id} of {pinned.name} is retired or not valid yet", code="key_retired"
        )
    verify_request(method, service.target_uri(path_qs), header_lines, body, record.verify_key(), params)
    if replay_check:
        await service.check_replay(params, now)
    elif service.recent_nonces.seen(params.key_id, params.nonce, now):
        raise AuthError("nonce already used (replayed request)", code="replayed")
    return pinned, records, params
