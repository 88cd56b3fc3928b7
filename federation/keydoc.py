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

A key document comes from outside, so it is bounded before it costs anything: at most
`DEFAULT_MAX_KEYS` keys (configurable), each endorsement signature checked at most once (the chain
is followed from the trusted keys through an index by endorsing key id, so a document costs time
linear in its size). What a reader has learned is merged with what it knew (`merge_records`):
a retired key stays retired whatever a later document says.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from federation.canonical import encode
from federation.documents import sign_document, verify_document
from federation.errors import DocumentError, KeyFormatError
from federation.keys import b64url, b64url_decode, key_id, parse_public_key, public_key_text

KEY_DOCUMENT_TYPE = "cpnode.keys.v1"
ENDORSEMENT_TYPE = "cpnode.key-endorsement.v1"
DEFAULT_MAX_KEYS = 64
"""Keys one key document may list; a node rotating yearly lists a handful."""
KEY_DOCUMENT_MAX_BYTES = 1024 * 1024
"""Bytes a partner's key document may have (1,024 keys with endorsements fit in half of it)."""


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
    node: str,
    records: Mapping[str, KeyRecord],
    anchors: Mapping[str, VerifyKey],
    denied: Collection[str],
) -> dict[str, KeyRecord]:
    """The records of `node`'s key document reachable from the `anchors` (keys already trusted:
    the pinned one and those learned before) by endorsements.

    Each endorsement signature is verified at most once: records are indexed by the key that
    endorses them and visited when that key becomes trusted. A denied key is neither trusted nor
    followed, so a compromised key cannot vouch for another.
    """
    keys = {kid: key for kid, key in anchors.items() if kid not in denied}
    trusted = {kid: records[kid] for kid in keys if kid in records}
    endorsed: dict[str, list[KeyRecord]] = {}
    for kid, record in records.items():
        if kid not in trusted and kid not in denied and record.endorsement is not None:
            endorsed.setdefault(record.endorsement["kid"], []).append(record)
    queue = list(keys)
    while queue:
        by = queue.pop()
        for record in endorsed.pop(by, ()):
            if record.kid in trusted or record.endorsement is None:
                continue
            statement = _endorsement_statement(node, record.kid, record.public_key, record.valid_from_ts)
            try:
                keys[by].verify(statement, b64url_decode(record.endorsement["sig"]))
            except (BadSignatureError, ValueError):
                continue
            trusted[record.kid] = record
            keys[record.kid] = record.verify_key()
            queue.append(record.kid)
    return trusted


def merge_records(
    known: Mapping[str, KeyRecord], fresh: Mapping[str, KeyRecord], now_ts: int
) -> dict[str, KeyRecord]:
    """What a reader knows of a partner's keys after trusting `fresh` records, given what it `known`.

    Retirement is for ever: a key known as retired stays retired (at the earliest time any
    document said), even if a later document lists it as active or not at all. A key known as
    active that a later document no longer lists has been replaced: it is retired from when the
    new active key begins. Keys no document lists any more are kept, so their state survives.
    """
    merged: dict[str, KeyRecord] = {}
    successor_ts = min((r.valid_from_ts for r in fresh.values() if r.status == "active"), default=now_ts)
    for kid in known.keys() | fresh.keys():
        old, new = known.get(kid), fresh.get(kid)
        retired_at = [
            r.retired_ts if r.retired_ts is not None else now_ts
            for r in (old, new)
            if r is not None and (r.status == "retired" or r.retired_ts is not None)
        ]
        if new is None and old is not None and not retired_at:
            retired_at = [successor_ts]
        base = new if new is not None else old
        if base is None:  # every kid comes from one of the two
            continue
        if retired_at:
            base = replace(base, status="retired", retired_ts=min(retired_at))
        merged[kid] = base
    return merged


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


def verify_key_document(
    document: Mapping[str, Any], expected_node: str, now_ts: int, max_keys: int = DEFAULT_MAX_KEYS
) -> dict[str, KeyRecord]:
    """Check a key document is `expected_node`'s, unexpired, within `max_keys` and self-signed;
    return its keys by id."""
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
    if len(keys_raw) > max_keys:
        raise DocumentError(
            f"key document lists {len(keys_raw)} keys, more than the limit of {max_keys}",
            code="too_many_keys",
        )
    records = {record.kid: record for record in map(_record, keys_raw)}
    if len(records) != len(keys_raw):
        raise DocumentError("key document lists a key twice", code="duplicate_key")
    active = [r for r in records.values() if r.status == "active"]
    if len(active) != 1:
        raise DocumentError("key document must have exactly one active key")
    verify_document(document, expected_node, {active[0].kid: active[0].verify_key()})
    return records
