"""Platform login: a challenge–response that yields a session token. Pure rules; storage is the caller's.

1. Caller → callee `POST /fed/v1/login/challenge` (signed request). The callee issues a random,
   single-use challenge bound to its own name and to the caller, valid `CHALLENGE_TTL_S`.
2. Caller → callee `POST /fed/v1/login` (signed request) with a login document it signs:
   {"type": "cpnode.login.v1", "issuer": CALLER, "audience": CALLEE, "challenge": C,
    "client_nonce": N, "issued_ts": T}.
3. The callee consumes the challenge (once), checks the document, and answers with a session
   token (see `tokens`) bound to the key that signed both the request and the document.

A challenge's life is one transition table (below); every change is stored before it is acted on.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from nacl.signing import VerifyKey

from federation.documents import sign_document, verify_document
from federation.errors import AuthError, DocumentError, FederationError
from federation.httpsig import CLOCK_SKEW_S, Identity

LOGIN_TYPE = "cpnode.login.v1"
CHALLENGE_TTL_S = 120

ChallengeState = Literal["issued", "used", "expired"]
ChallengeEvent = Literal["consume", "expire"]
# Challenge states: (state, event) → next state. Anything absent is refused. A challenge nobody
# consumes simply lapses at `expires_ts` (checked on use; old rows are deleted when new ones are stored).
CHALLENGE_TRANSITIONS: dict[tuple[ChallengeState, ChallengeEvent], ChallengeState] = {
    ("issued", "consume"): "used",
    ("issued", "expire"): "expired",
}


@dataclass(frozen=True)
class Challenge:
    """A challenge as the callee stores it."""

    value: str
    node: str
    partner: str
    expires_ts: int
    state: ChallengeState = "issued"

    def to_json(self) -> dict[str, Any]:
        """The challenge as sent to the caller."""
        return {"challenge": self.value, "node": self.node, "expires_ts": self.expires_ts}


def transition(state: ChallengeState, event: ChallengeEvent) -> ChallengeState:
    """The next challenge state, or AuthError if `event` is not allowed in `state`."""
    try:
        return CHALLENGE_TRANSITIONS[(state, event)]
    except KeyError:
        raise AuthError(f"login challenge is {state}; cannot {event} it", code="bad_challenge") from None


def new_challenge(node: str, partner: str, now_ts: int, ttl_s: int = CHALLENGE_TTL_S) -> Challenge:
    """A fresh challenge issued by `node` for `partner`."""
    return Challenge(secrets.token_urlsafe(32), node, partner, now_ts + ttl_s)


def login_document(caller: Identity, callee: str, challenge: str, now_ts: int) -> dict[str, Any]:
    """The caller's signed login document answering `challenge` from `callee`."""
    document = {
        "type": LOGIN_TYPE,
        "issuer": caller.node,
        "audience": callee,
        "challenge": challenge,
        "client_nonce": secrets.token_urlsafe(24),
        "issued_ts": now_ts,
    }
    return sign_document(document, caller.key)


def check_login(
    document: Mapping[str, Any],
    payload: bytes,
    node: str,
    partner: str,
    partner_keys: Mapping[str, VerifyKey],
    stored: Challenge | None,
    now_ts: int,
) -> str:
    """Check a login document from `partner` to `node` against the stored challenge; return the key id.

    The caller must then consume the challenge (`transition(stored.state, "consume")`) atomically.
    """
    if document.get("type") != LOGIN_TYPE:
        raise DocumentError("not a login document", code="wrong_type")
    if document.get("issuer") != partner:
        raise AuthError("login document issuer is not the signing partner", code="bad_login")
    if document.get("audience") != node:
        raise AuthError(
            f"login document is for {document.get('audience')!r}, not this node", "wrong_destination"
        )
    nonce = document.get("client_nonce")
    issued = document.get("issued_ts")
    if not isinstance(nonce, str) or not 16 <= len(nonce) <= 128 or type(issued) is not int:
        raise DocumentError("login document needs client_nonce (16–128 chars) and integer issued_ts")
    if abs(issued - now_ts) > CLOCK_SKEW_S:
        raise AuthError("login document is not fresh", code="bad_login")
    try:
        kid = verify_document(document, partner, partner_keys, payload)
    except FederationError as exc:
        raise AuthError(f"login document signature: {exc}", code="bad_login") from None
    if stored is None or stored.node != node or stored.value != document.get("challenge"):
        raise AuthError("unknown login challenge (never issued here, or for another node)", "bad_challenge")
    if stored.partner != partner:
        raise AuthError("login challenge was issued to another partner", code="bad_challenge")
    if stored.expires_ts < now_ts:
        raise AuthError("login challenge has expired", code="challenge_expired")
    transition(stored.state, "consume")
    return kid
