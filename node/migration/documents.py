"""The signed documents of a migration to a partner's pool, built and checked with no I/O.

    destination (partner)   cpnode.migration-destination.v1: migration, trade_id, state (the
                            inbound state: prepared, started, committed, released), instance_id,
                            instance_state, started_ms, exit_code, detail
    credential (partner)    cpnode.transfer-credential.v1: migration, trade_id, storage {url,
                            bucket, token}: the partner pool's storage endpoint with a transfer
                            grant (connectors.grants), files, not_before, expires (UTC epoch s)

Both are signed by the partner (issuer) for the node that migrates (audience); the source checks
the signature with the partner's pinned keys (node.trading.peer.verify_from) and the fields here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from federation.documents import sign_document
from federation.httpsig import Identity
from node.trading.errors import ProtocolError

DESTINATION_TYPE = "cpnode.migration-destination.v1"
CREDENTIAL_TYPE = "cpnode.transfer-credential.v1"


def signed(
    identity: Identity,
    kind: str,
    audience: str,
    migration: str,
    trade_id: str,
    fields: Mapping[str, Any],
    now_ts: int,
) -> dict[str, Any]:
    """A document of `kind` about one migration, signed by this node for `audience`."""
    body = {
        "type": kind,
        "issuer": identity.node,
        "audience": audience,
        "migration": migration,
        "trade_id": trade_id,
        "issued_ts": now_ts,
        **fields,
    }
    return sign_document(body, identity.key)


def check(
    document: Mapping[str, Any], kind: str, partner: str, us: str, migration: str, trade_id: str
) -> None:
    """ProtocolError unless `document` (signature checked by the caller) is `partner`'s document of
    `kind` for us about this migration and trade."""
    for name, value in (
        ("type", kind),
        ("issuer", partner),
        ("audience", us),
        ("migration", migration),
        ("trade_id", trade_id),
    ):
        if document.get(name) != value:
            raise ProtocolError(
                f"{partner}'s {kind} names {name} {document.get(name)!r}, not {value!r}", code="bad_document"
            )


def check_credential(document: Mapping[str, Any], files: list[str], now_ts: int) -> None:
    """ProtocolError unless a credential covers `files` and is valid at `now_ts`."""
    storage = document.get("storage")
    if not isinstance(storage, dict) or not all(
        isinstance(storage.get(k), str) for k in ("url", "bucket", "token")
    ):
        raise ProtocolError("the transfer credential names no storage endpoint", code="bad_document")
    if sorted(document.get("files") or []) != sorted(files):
        raise ProtocolError(
            "the transfer credential does not cover the checkpoint's files", code="bad_document"
        )
    not_before, expires = document.get("not_before"), document.get("expires")
    if not isinstance(not_before, int) or not isinstance(expires, int) or not not_before <= now_ts < expires:
        raise ProtocolError(
            f"the transfer credential is valid from {not_before} to {expires}, not now ({now_ts})",
            code="credential_expired",
        )
