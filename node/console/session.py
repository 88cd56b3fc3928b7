"""Console sessions as sealed cookies, and the CSRF tokens that go with them; pure (no I/O).

A session is the bearer token the person signed in with, who it names (the admin or a consumer),
a random nonce and an expiry, sealed with AES-256-GCM under a key derived from the node's own
signing key: the browser holds an opaque value it can neither read nor forge, and every replica of
the node (which shares the key) opens it, so no session table is needed. The console never acts on
who the cookie says it is alone: every page calls the node's API with the sealed token, and the
API checks it on every call (a revoked consumer token ends its sessions at once).

The CSRF token of a session is an HMAC of its nonce under a second derived key; a form carries it
in a hidden field and the console refuses a POST whose token does not match the session's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

COOKIE_NAME = "cpnode_console"
NONCE_BYTES = 12
MAX_COOKIE_CHARS = 4000


@dataclass(frozen=True)
class Session:
    """Who signed in: their bearer token, the consumer it names (None for the node's staff), when the
    session ends (UTC seconds), and the role and user name the API gave at sign-in (for display)."""

    token: str
    consumer: str | None
    nonce: str
    expires_ts: int
    role: str = ""
    user: str | None = None

    @property
    def is_admin(self) -> bool:
        """True when the node's staff signed in (the admin token or a user's)."""
        return self.consumer is None

    @property
    def who(self) -> str:
        """Who signed in, for the header: `alice (consumer)`, `olga (operator)`, `admin token (admin)`."""
        role = self.role or ("admin" if self.consumer is None else "consumer")
        name = self.consumer or self.user or "admin token"
        return f"{name} ({role})"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionKeys:
    """Seals and opens session cookies and derives CSRF tokens, from one secret (32+ bytes)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("a session secret needs at least 32 bytes")
        self._seal_key = hmac.new(secret, b"cpnode console session seal v1", hashlib.sha256).digest()
        self._csrf_key = hmac.new(secret, b"cpnode console csrf v1", hashlib.sha256).digest()
        self._aead = AESGCM(self._seal_key)

    def new_session(
        self,
        token: str,
        consumer: str | None,
        now_ts: int,
        lifetime_s: int,
        role: str = "",
        user: str | None = None,
    ) -> Session:
        """A fresh session for `token` (a new random nonce), ending `lifetime_s` after `now_ts`."""
        return Session(token, consumer, secrets.token_urlsafe(16), now_ts + lifetime_s, role, user)

    def seal(self, session: Session) -> str:
        """The cookie value of `session`: nonce and ciphertext, URL-safe base64."""
        plain = json.dumps(
            {
                "t": session.token,
                "c": session.consumer,
                "n": session.nonce,
                "e": session.expires_ts,
                "r": session.role,
                "u": session.user,
            },
            separators=(",", ":"),
        ).encode()
        nonce = secrets.token_bytes(NONCE_BYTES)
        return _b64(nonce + self._aead.encrypt(nonce, plain, COOKIE_NAME.encode()))

    def open(self, cookie: str | None, now_ts: int) -> Session | None:
        """The session in `cookie`, or None when it is missing, altered, sealed under another key,
        malformed or expired."""
        if not cookie or len(cookie) > MAX_COOKIE_CHARS:
            return None
        try:
            raw = _unb64(cookie)
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], COOKIE_NAME.encode())
            data = json.loads(plain)
            consumer = data["c"]
            if consumer is not None and not isinstance(consumer, str):
                return None
            user = data.get("u")
            if user is not None and not isinstance(user, str):
                return None
            session = Session(
                str(data["t"]), consumer, str(data["n"]), int(data["e"]), str(data.get("r") or ""), user
            )
        except (ValueError, InvalidTag, KeyError, TypeError):
            return None
        return session if now_ts < session.expires_ts else None

    def csrf_token(self, session: Session) -> str:
        """The CSRF token every form of `session` carries."""
        return _b64(hmac.new(self._csrf_key, session.nonce.encode(), hashlib.sha256).digest())

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        """Whether `token` is `session`'s CSRF token (compared in constant time)."""
        return bool(token) and hmac.compare_digest(self.csrf_token(session).encode(), str(token).encode())
