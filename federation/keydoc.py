"""The node's self-signed key document, served at `/fed/v1/keys`.

Shape (canonical JSON, signed by the active key)::

    {"type": "cpnode.keys.v1", "issuer": NODE, "issued_ts": T, "expires_ts": T,
     "keys": [{"kid": "ed25519:…", "public_key": "ed25519:…", "status": "active"|"retired",
               "valid_from_ts": T, "retired_ts": T|null}],
     "signatures": {NODE: {KID: SIG}}}

Retired keys stay listed so documents they signed before retirement still verify. A key that
replaced another carries an `endorsement` {"kid": OLD_KID, "sig": SIG}: the old key's signature
over the canonical statement {"type": "cpnode.key-endorsement.v1", "node", "kid", "public_key",
"valid_from_ts"}. Partners that pinned the old key follow the chain to trust the new one; an
endorsement by a key on their deny-list is not followed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from federation.canonical import encode
from federation.documents import sign_document, verify_document
from federation.errors import DocumentError, KeyFormatError
from federation.keys import b64url, b64url_decode, key_id, parse_public_key, public_key_text

KEY_DOCUMENT_TYPE = "cpnode.keys.v1"
ENDORSEMENT_TYPE = "cpnode.key-endorsement.v1"


@dataclass(frozen=True)
class KeyRecord:
    """One key of a node as listed in its key document."""

    kid: str
    public_key: str
    status: Literal["active", "retired"]
    valid_from_ts: int
    retired_ts: int | None = None
    endorsement: Mapping[str, str] | None = None

    def verify_key(self) -> VerifyKey:
        """The public key as a PyNaCl verify key."""
        return parse_public_key(self.public_key)

    def valid_at(self, ts: int) -> bool:
        """Whether this key could sign at time `ts` (after it began, before it retired)."""
        return self.valid_from_ts <= ts and (self.retired_ts is None or ts < self.retired_ts)

    def to_json(self) -> dict[str, Any]:
        """The record as it appears in the key document."""
        data: dict[str, Any] = {
            "kid": self.kid,
            "public_key": self.public_key,
            "status": self.status,
            "valid_from_ts": self.valid_from_ts,
            "retired_ts": self.retired_ts,
        }
        if self.endorsement is not None:
            data["endorsement"] = dict(self.endorsement)
        return data


def active_record(
    key: SigningKey, valid_from_ts: int, endorsement: Mapping[str, str] | None = None
) -> KeyRecord:
    """The key record for the node's current signing key."""
    verify = key.verify_key
    return KeyRecord(key_id(verify), public_key_text(verify), "active", valid_from_ts, None, endorsement)


def _endorsement_statement(node: str, kid: str, public_key: str, valid_from_ts: int) -> bytes:
    return encode(
        {
            "type": ENDORSEMENT_TYPE,
            "node": node,
            "kid": kid,
            "public_key": public_key,
            "valid_from_ts": valid_from_ts,
        }
    )


def endorse(node: str, new_key: VerifyKey, valid_from_ts: int, old_key: SigningKey) -> dict[str, str]:
    """The old key's endorsement of `new_key` as `node`'s key from `valid_from_ts` (made at rotation)."""
    statement = _endorsement_statement(node, key_id(new_key), public_key_text(new_key), valid_from_ts)
    return {"kid": key_id(old_key.verify_key), "sig": b64url(old_key.sign(statement).signature)}


def trusted_records(
    node: str, records: Mapping[str, KeyRecord], pinned: Mapping[str, VerifyKey], denied: Collection[str]
) -> dict[str, KeyRecord]:
    """The records of `node`'s key document reachable from `pinned` keys by endorsements.

    A denied key is neither trusted nor followed, so a compromised key cannot vouch for another.
    """
    trusted = {kid: records[kid] for kid in pinned if kid in records and kid not in denied}
    changed = True
    while changed:
        changed = False
        for kid, record in records.items():
            if kid in trusted or kid in denied or record.endorsement is None:
                continue
            by = record.endorsement.get("kid")
            if by not in trusted:
                continue
            statement = _endorsement_statement(node, kid, record.public_key, record.valid_from_ts)
            try:
                trusted[by].verify_key().verify(statement, b64url_decode(record.endorsement.get("sig", "")))
            except (BadSignatureError, ValueError):
                continue
            trusted[kid] = record
            changed = True
    return trusted


def build_key_document(
    node: str,
    active: SigningKey,
    active_since_ts: int,
    retired: Sequence[KeyRecord],
    now_ts: int,
    validity_s: int,
    endorsement: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The signed key document for `node`, valid from `now_ts` for `validity_s` seconds."""
    records = [active_record(active, active_since_ts, endorsement), *retired]
    document = {
        "type": KEY_DOCUMENT_TYPE,
        "issuer": node,
        "issued_ts": now_ts,
        "expires_ts": now_ts + validity_s,
        "keys": [record.to_json() for record in records],
    }
    return sign_document(document, active)


def _record(raw: Any) -> KeyRecord:
    if not isinstance(raw, dict):
        raise DocumentError("key entry must be an object")
    try:
        record = KeyRecord(
            kid=raw["kid"],
            public_key=raw["public_key"],
            status=raw["status"],
            valid_from_ts=raw["valid_from_ts"],
            retired_ts=raw.get("retired_ts"),
            endorsement=raw.get("endorsement"),
        )
    except KeyError as exc:
        raise DocumentError(f"key entry lacks {exc.args[0]!r}") from None
    if record.status not in ("active", "retired") or not isinstance(record.valid_from_ts, int):
        raise DocumentError("key entry has a bad status or valid_from_ts")
    if record.retired_ts is not None and not isinstance(record.retired_ts, int):
        raise DocumentError("key entry has a bad retired_ts")
    if record.endorsement is not None and not (
        isinstance(record.endorsement, dict)
        and all(isinstance(record.endorsement.get(k), str) for k in ("kid", "sig"))
    ):
        raise DocumentError("key entry has a malformed endorsement")
    try:
        if key_id(record.verify_key()) != record.kid:
            raise DocumentError(f"key id {record.kid!r} does not match its public key")
    except KeyFormatError as exc:
        raise DocumentError(str(exc)) from None
    return record


def verify_key_document(document: Mapping[str, Any], expected_node: str, now_ts: int) -> dict[str, KeyRecord]:
    """Check a key document is `expected_node`'s, unexpired and self-signed; return its keys by id."""
    if document.get("type") != KEY_DOCUMENT_TYPE:
        raise DocumentError("not a key document", code="wrong_type")
    if document.get("issuer") != expected_node:
        raise DocumentError(
            f"key document is for {document.get('issuer')!r}, expected {expected_node!r}", code="wrong_issuer"
        )
    expires = document.get("expires_ts")
    if not isinstance(expires, int) or expires <= now_ts:
        raise DocumentError("key document is expired", code="expired")
    keys_raw = document.get("keys")
    if not isinstance(keys_raw, list) or not keys_raw:
        raise DocumentError("key document lists no keys")
    records = {record.kid: record for record in map(_record, keys_raw)}
    active = [r for r in records.values() if r.status == "active"]
    if len(active) != 1:
        raise DocumentError("key document must have exactly one active key")
    verify_document(document, expected_node, {active[0].kid: active[0].verify_key()})
    return records
