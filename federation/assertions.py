"""Account assertions and account status documents (账号互通): how a node vouches for its own
consumer at a partner, and tells the partner when that consumer's account changes. No I/O.

- An **assertion** (`cpnode.account-assertion/v1`) is signed by the consumer's home node (the
  issuer) for one partner (the audience). It names the consumer (`subject`), its real-name
  verification, the agreement the issuer acts under (`agreement`: the SHA-256 of the issuer's stored
  agreement with the audience), the account's status version, and the public key of the consumer's
  client (`key`). It is valid for at most `MAX_ASSERTION_S` seconds. The consumer presents it with
  every request to the audience, and proves it holds the key by signing the request (RFC 9421, as
  peer requests are signed: federation.httpsig, with `cpnode-node` = `subject@issuer`).
- A **status** document (`cpnode.account-status/v1`) carries a list of account states
  (subject, status, version, verification), signed by the issuer for one audience. The issuer pushes
  one on every lifecycle change and answers one when the audience asks on its sync; the audience keeps
  the highest version it has seen, so a status or assertion issued before a suspension can never
  undo it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nacl.signing import SigningKey, VerifyKey

from federation import canonical
from federation.documents import sign_document, verify_document
from federation.errors import AuthError, DocumentError, KeyFormatError
from federation.httpsig import Identity, sign_request
from federation.keys import b64url, key_id, parse_public_key

ASSERTION_TYPE = "cpnode.account-assertion/v1"
STATUS_TYPE = "cpnode.account-status/v1"
MAX_ASSERTION_S = 600
CLOCK_SKEW_S = 60
MAX_STATUS_ITEMS = 1000
STATUSES = ("active", "suspended", "closed")
VERIFICATIONS = ("unverified", "verified", "rejected")
SUBJECT_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


@dataclass(frozen=True)
class Verification:
    """A consumer's real-name verification as its home node states it (who checked it and when)."""

    status: str = "unverified"
    by: str | None = None
    ts: int | None = None  # UTC seconds

    def to_json(self) -> dict[str, Any]:
        """As a document carries it."""
        return {"status": self.status, "by": self.by, "ts": self.ts}


@dataclass(frozen=True)
class AccountState:
    """One account's state at its home node: status, status version and verification."""

    subject: str
    status: str
    version: int
    verification: Verification

    def to_json(self) -> dict[str, Any]:
        """As a status document lists it."""
        return {
            "subject": self.subject,
            "status": self.status,
            "version": self.version,
            "verification": self.verification.to_json(),
        }


@dataclass(frozen=True)
class Assertion:
    """A checked assertion: who the consumer is, for whom, bound to which key, until when."""

    issuer: str
    audience: str
    state: AccountState
    agreement: str
    key: VerifyKey
    assertion_id: str
    issued_ts: int
    expires_ts: int

    @property
    def account(self) -> str:
        """The federated account name at the audience: `subject@issuer`."""
        return f"{self.state.subject}@{self.issuer}"

    @property
    def kid(self) -> str:
        """The key id of the consumer's key (what its request signatures must name)."""
        return key_id(self.key)


def issue_assertion(
    issuer: str,
    signing_key: SigningKey,
    *,
    audience: str,
    state: AccountState,
    agreement: str,
    client_key: str,
    assertion_id: str,
    now_ts: int,
    validity_s: int,
) -> dict[str, Any]:
    """The issuer's signed assertion about `state.subject` for `audience`, bound to `client_key`."""
    if not 1 <= validity_s <= MAX_ASSERTION_S:
        raise DocumentError(f"an assertion is valid for 1 to {MAX_ASSERTION_S} s")
    parse_public_key(client_key)
    return sign_document(
        {
            "type": ASSERTION_TYPE,
            "issuer": issuer,
            "audience": audience,
            "id": assertion_id,
            "account": state.to_json(),
            "agreement": agreement,
            "key": client_key,
            "issued_ts": now_ts,
            "expires_ts": now_ts + validity_s,
        },
        signing_key,
    )


def _field(document: Mapping[str, Any], name: str, kind: type) -> Any:
    value = document.get(name)
    if type(value) is not kind:
        raise DocumentError(f"{name} must be a {kind.__name__}", code="bad_assertion")
    return value


def _verification(raw: Any) -> Verification:
    if not isinstance(raw, dict) or set(raw) != {"status", "by", "ts"} or raw["status"] not in VERIFICATIONS:
        raise DocumentError("verification must be {status, by, ts}", code="bad_assertion")
    by, ts = raw["by"], raw["ts"]
    if not (by is None or (isinstance(by, str) and len(by) <= 100)) or not (ts is None or type(ts) is int):
        raise DocumentError(
            "verification.by must be a string or null, ts an integer or null", code="bad_assertion"
        )
    return Verification(raw["status"], by, ts)


def account_state(raw: Any) -> AccountState:
    """Parse one account state of a document; DocumentError naming the bad part."""
    if not isinstance(raw, dict) or set(raw) != {"subject", "status", "version", "verification"}:
        raise DocumentError(
            "an account must be {subject, status, version, verification}", code="bad_assertion"
        )
    subject, status, version = raw["subject"], raw["status"], raw["version"]
    if not isinstance(subject, str) or not SUBJECT_RE.fullmatch(subject):
        raise DocumentError("account.subject is not a consumer id", code="bad_assertion")
    if status not in STATUSES:
        raise DocumentError(f"account.status must be one of {', '.join(STATUSES)}", code="bad_assertion")
    if type(version) is not int or version < 0:
        raise DocumentError("account.version must be a non-negative integer", code="bad_assertion")
    return AccountState(subject, status, version, _verification(raw["verification"]))


def check_assertion(
    document: Mapping[str, Any],
    keys: Mapping[str, VerifyKey],
    *,
    audience: str,
    now_ts: int,
    payload: bytes | None = None,
) -> Assertion:
    """Check an assertion's type, signature (by its issuer, with one of `keys`), audience and times;
    AuthError (`forged_assertion`, `wrong_audience`, `assertion_expired`) or DocumentError
    (`bad_assertion`) say why not."""
    if document.get("type") != ASSERTION_TYPE:
        raise DocumentError(f"not an account assertion (type must be {ASSERTION_TYPE})", code="bad_assertion")
    issuer = _field(document, "issuer", str)
    try:
        verify_document(document, issuer, keys, payload)
    except (DocumentError, ValueError) as exc:
        raise AuthError(f"assertion signature does not verify: {exc}", code="forged_assertion") from None
    if _field(document, "audience", str) != audience:
        raise AuthError(f"assertion is for {document['audience']!r}, not this node", code="wrong_audience")
    issued, expires = _field(document, "issued_ts", int), _field(document, "expires_ts", int)
    if not 0 < expires - issued <= MAX_ASSERTION_S:
        raise AuthError(f"assertion validity must be 1 to {MAX_ASSERTION_S} s", code="bad_assertion_time")
    if issued > now_ts + CLOCK_SKEW_S:
        raise AuthError("assertion is issued in the future", code="bad_assertion_time")
    if expires < now_ts - CLOCK_SKEW_S:
        raise AuthError("assertion has expired", code="assertion_expired")
    try:
        key = parse_public_key(_field(document, "key", str))
    except KeyFormatError as exc:
        raise DocumentError(f"assertion key: {exc}", code="bad_assertion") from None
    return Assertion(
        issuer,
        audience,
        account_state(document.get("account")),
        _field(document, "agreement", str),
        key,
        _field(document, "id", str),
        issued,
        expires,
    )


def status_document(
    issuer: str, signing_key: SigningKey, audience: str, states: list[AccountState], now_ts: int
) -> dict[str, Any]:
    """The issuer's signed account states for `audience`."""
    if len(states) > MAX_STATUS_ITEMS:
        raise DocumentError(f"a status document lists at most {MAX_STATUS_ITEMS} accounts")
    return sign_document(
        {
            "type": STATUS_TYPE,
            "issuer": issuer,
            "audience": audience,
            "issued_ts": now_ts,
            "accounts": [state.to_json() for state in states],
        },
        signing_key,
    )


def check_status_document(
    document: Mapping[str, Any], issuer: str, keys: Mapping[str, VerifyKey], audience: str, now_ts: int
) -> list[AccountState]:
    """Check a status document from `issuer` for `audience` (signature, type, freshness) and return
    its account states; AuthError or DocumentError say why not."""
    if document.get("type") != STATUS_TYPE or document.get("issuer") != issuer:
        raise DocumentError(f"not an account status document from {issuer}", code="bad_status_document")
    try:
        verify_document(document, issuer, keys)
    except (DocumentError, ValueError) as exc:
        raise AuthError(f"status document signature does not verify: {exc}", code="forged_status") from None
    if document.get("audience") != audience:
        raise AuthError("status document is for another node", code="wrong_audience")
    issued = document.get("issued_ts")
    if type(issued) is not int or abs(issued - now_ts) > MAX_ASSERTION_S:
        raise AuthError("status document is stale or from the future", code="stale_status")
    accounts = document.get("accounts")
    if not isinstance(accounts, list) or len(accounts) > MAX_STATUS_ITEMS:
        raise DocumentError(
            f"accounts must be a list of at most {MAX_STATUS_ITEMS}", code="bad_status_document"
        )
    return [account_state(raw) for raw in accounts]


def agreement_digest(agreement: Mapping[str, Any]) -> str:
    """`sha256:<hex>` of an agreement's canonical JSON: how an assertion names the agreement."""
    return "sha256:" + hashlib.sha256(canonical.encode(dict(agreement))).hexdigest()


SCHEME = "Cpnode-Assertion"


def present(
    assertion: Mapping[str, Any],
    client_key: SigningKey,
    method: str,
    url: str,
    body: bytes,
    now_ts: int,
    headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers a consumer's client sends with one request to the assertion's audience: the
    assertion (`Authorization: Cpnode-Assertion <base64url>`) and the request signed with its key,
    as `subject@issuer` (the signature covers the authorization header, so it binds the two)."""
    account = assertion.get("account")
    subject = account.get("subject") if isinstance(account, dict) else None
    if not isinstance(subject, str):
        raise DocumentError("not an account assertion", code="bad_assertion")
    out = dict(headers or {})
    out["Authorization"] = f"{SCHEME} {b64url(canonical.encode(dict(assertion)))}"
    signer = Identity(f"{subject}@{assertion['issuer']}", client_key)
    return sign_request(signer, method, url, body, to=str(assertion["audience"]), now_ts=now_ts, headers=out)
