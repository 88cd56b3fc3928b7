"""Console sessions: sealed cookies nobody can read or forge, and CSRF tokens bound to a session."""

from __future__ import annotations

import pytest

from node.console.session import SessionKeys

SECRET = b"k" * 32


def test_a_sealed_session_opens_to_what_was_sealed() -> None:
    """Sealing then opening gives back the token, the consumer and the expiry."""
    keys = SessionKeys(SECRET)
    session = keys.new_session("cpc_token", "alice", 1000, 3600)
    opened = keys.open(keys.seal(session), 1001)
    assert opened == session
    assert not opened.is_admin
    assert keys.open(keys.seal(keys.new_session("admin", None, 1000, 60)), 1001).is_admin  # type: ignore[union-attr]


def test_a_session_keeps_the_role_and_user_it_was_given() -> None:
    """A staff user's session opens with its role and name, and says who it is for the header."""
    keys = SessionKeys(SECRET)
    session = keys.new_session("cpu_x", None, 1000, 3600, role="auditor", user="ann")
    opened = keys.open(keys.seal(session), 1001)
    assert opened == session
    assert opened is not None
    assert (opened.is_admin, opened.who) == (True, "ann (auditor)")
    consumer = keys.new_session("cpc_x", "alice", 1000, 3600, role="consumer")
    assert consumer.who == "alice (consumer)"
    assert keys.new_session("admin", None, 1000, 60).who == "admin token (admin)"


def test_the_cookie_does_not_show_the_token() -> None:
    """The cookie is ciphertext: the bearer token does not appear in it."""
    keys = SessionKeys(SECRET)
    cookie = keys.seal(keys.new_session("cpc_SECRETSECRET", "alice", 1000, 3600))
    assert "SECRET" not in cookie
    assert "alice" not in cookie


@pytest.mark.parametrize("change", ["flip", "truncate", "other_key", "garbage", "empty"])
def test_an_altered_or_foreign_cookie_opens_to_nothing(change: str) -> None:
    """A changed byte, a cut cookie, another node's key or garbage: no session."""
    keys = SessionKeys(SECRET)
    cookie = keys.seal(keys.new_session("t", None, 1000, 3600))
    altered = {
        "flip": cookie[:20] + ("A" if cookie[20] != "A" else "B") + cookie[21:],
        "truncate": cookie[:-4],
        "other_key": SessionKeys(b"x" * 32).seal(keys.new_session("t", None, 1000, 3600)),
        "garbage": "not a cookie at all!",
        "empty": "",
    }[change]
    assert keys.open(altered, 1001) is None


def test_an_expired_session_opens_to_nothing() -> None:
    """At and after its expiry a session is gone."""
    keys = SessionKeys(SECRET)
    cookie = keys.seal(keys.new_session("t", None, 1000, 60))
    assert keys.open(cookie, 1059) is not None
    assert keys.open(cookie, 1060) is None


def test_csrf_tokens_belong_to_one_session() -> None:
    """A session's CSRF token checks for it, not for another session, and not when missing."""
    keys = SessionKeys(SECRET)
    one = keys.new_session("t", None, 1000, 60)
    two = keys.new_session("t", None, 1000, 60)
    assert keys.csrf_ok(one, keys.csrf_token(one))
    assert not keys.csrf_ok(one, keys.csrf_token(two))
    assert not keys.csrf_ok(one, None)
    assert not keys.csrf_ok(one, "")


def test_a_short_secret_is_refused() -> None:
    """Fewer than 32 bytes of secret is a programming error, said at once."""
    with pytest.raises(ValueError, match="32 bytes"):
        SessionKeys(b"short")
