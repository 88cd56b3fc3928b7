"""Transfer grants (pure): a storage credential scoped to one migration's files and a time window.

A pool that receives a migrated program from a partner's pool lets the partner's data express write
the state into one bucket without handing out the pool's own storage token. The grant is

    cpg1.<base64url of the claims' canonical JSON>.<base64url of HMAC-SHA256(key, "cpg1." + claims)>

with the key derived from the pool's storage token (`grant_key`), so the storage endpoint checks a
grant with no state of its own. Claims: `bucket` (the destination instance), `files` (the only
paths it may write), `migration` and `audience` (whom it was issued for: shown, and bound into the
MAC), `not_before` and `expires` (UTC epoch seconds). `check_grant` answers why a request is
refused: `credential_invalid` (not a grant of this pool, or altered), `credential_expired` (outside
its window), `credential_scope` (another bucket, that is another migration, or a file not listed).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

PREFIX = "cpg1."
MAX_GRANT_FILES = 1000
# A grant travels as a bearer header: it stays under the 8 KiB an HTTP server takes in one field.
MAX_GRANT_BYTES = 8000


@dataclass(frozen=True)
class Grant:
    """What a grant allows: writes of `files` into `bucket` between `not_before` and `expires`."""

    bucket: str
    files: frozenset[str]
    migration: str
    audience: str
    not_before: int
    expires: int


class GrantRefused(ValueError):
    """A request a grant does not allow: `code` (see the module docstring) and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def grant_key(storage_token: str) -> bytes:
    """The MAC key of a pool's grants, derived from its storage token (never the token itself)."""
    return hashlib.sha256(b"cpnode transfer grant\x00" + storage_token.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, (PREFIX + payload).encode(), hashlib.sha256).digest())


def issue_grant(key: bytes, grant: Grant) -> str:
    """The grant token for `grant`, signed with `key`."""
    if not grant.files or len(grant.files) > MAX_GRANT_FILES:
        raise ValueError(f"a grant names 1–{MAX_GRANT_FILES} files")
    if grant.expires <= grant.not_before:
        raise ValueError("a grant's window must end after it starts")
    claims = {
        "bucket": grant.bucket,
        "files": sorted(grant.files),
        "migration": grant.migration,
        "audience": grant.audience,
        "not_before": grant.not_before,
        "expires": grant.expires,
    }
    payload = _b64(json.dumps(claims, sort_keys=True, separators=(",", ":")).encode())
    token = f"{PREFIX}{payload}.{_mac(key, payload)}"
    if len(token) > MAX_GRANT_BYTES:
        raise ValueError(f"the grant's file names take more than {MAX_GRANT_BYTES} bytes")
    return token


def is_grant(token: str) -> bool:
    """Whether a bearer token is a grant (rather than a pool's own storage token)."""
    return token.startswith(PREFIX)


def read_grant(key: bytes, token: str) -> Grant:
    """The grant a token carries, its MAC checked with `key`; GrantRefused if it is not one."""
    if not is_grant(token) or len(token) > MAX_GRANT_BYTES or token.count(".") != 2:
        raise GrantRefused("credential_invalid", "not a transfer credential")
    payload, mac = token[len(PREFIX) :].split(".")
    if not hmac.compare_digest(mac.encode(), _mac(key, payload).encode()):
        raise GrantRefused(
            "credential_invalid", "the transfer credential was not issued here, or was altered"
        )
    try:
        claims: Any = json.loads(_unb64(payload))
        return Grant(
            bucket=str(claims["bucket"]),
            files=frozenset(str(f) for f in claims["files"]),
            migration=str(claims["migration"]),
            audience=str(claims["audience"]),
            not_before=int(claims["not_before"]),
            expires=int(claims["expires"]),
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise GrantRefused("credential_invalid", "the transfer credential cannot be read") from None


def check_grant(grant: Grant, bucket: str, path: str | None, now_s: int) -> None:
    """GrantRefused unless `grant` allows a request on `bucket` and `path` (None: the bucket
    itself, which a grant never lists) at `now_s`."""
    if not grant.not_before <= now_s < grant.expires:
        raise GrantRefused(
            "credential_expired",
            f"the transfer credential of migration {grant.migration} is valid from {grant.not_before} "
            f"to {grant.expires}, not at {now_s}",
        )
    if bucket != grant.bucket:
        raise GrantRefused(
            "credential_scope",
            f"the transfer credential of migration {grant.migration} is not for this bucket",
        )
    if path is None or path not in grant.files:
        raise GrantRefused(
            "credential_scope",
            f"the transfer credential of migration {grant.migration} does not cover {path or 'listing the bucket'!r}",
        )
