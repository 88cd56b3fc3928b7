"""The pure cores of accounts: the lifecycle transition table, what blocks closing, and the signed
assertion and status documents (forged, expired, other audience, bad shape)."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from federation.assertions import (
    MAX_ASSERTION_S,
    AccountState,
    Verification,
    check_assertion,
    check_status_document,
    issue_assertion,
    status_document,
)
from federation.errors import AuthError, DocumentError
from federation.keys import key_id, public_key_text
from node.accounts.lifecycle import (
    ACTIONS,
    STATUSES,
    TRANSITIONS,
    AccountStateError,
    close_blockers,
    next_status,
    refusal,
)

NOW = 1_800_000_000
HOME = SigningKey(b"\x01" * 32)
CLIENT = SigningKey(b"\x02" * 32)
KEYS = {key_id(HOME.verify_key): HOME.verify_key}
STATE = AccountState("alice", "active", 3, Verification("verified", "user:olga", NOW - 10))


def _assertion(**changes: object) -> dict[str, object]:
    args: dict[str, object] = {
        "audience": "b",
        "state": STATE,
        "agreement": "sha256:ab",
        "client_key": public_key_text(CLIENT.verify_key),
        "assertion_id": "id1",
        "now_ts": NOW,
        "validity_s": 300,
    }
    args.update(changes)
    return issue_assertion("a", HOME, **args)  # type: ignore[arg-type]


def test_the_lifecycle_table() -> None:
    """Exactly these transitions exist; closed is final; an account being closed can only be
    closed; everything else names the status."""
    assert TRANSITIONS == {
        ("active", "suspend"): "suspended",
        ("suspended", "reinstate"): "active",
        ("active", "close"): "closed",
        ("suspended", "close"): "closed",
        ("closing", "close"): "closed",
    }
    for status in STATUSES:
        for action in ACTIONS:
            if (status, action) in TRANSITIONS:
                assert next_status(status, action) == TRANSITIONS[status, action]
            else:
                with pytest.raises(AccountStateError, match=f"that is {status}"):
                    next_status(status, action)
    assert refusal("active", "x") is None
    assert [refusal(s, "x").code for s in ("suspended", "closed")] == ["account_suspended", "account_closed"]  # type: ignore[union-attr]
    assert refusal("closing", "x").code == "account_closed"  # type: ignore[union-attr]


def test_close_blockers_name_what_is_left() -> None:
    """Money, holds, orders and tasks each block closing, and each is named."""
    assert close_blockers(0, 0, [], []) == []
    blockers = close_blockers(5, 2, ["o1"], ["t1", "t2"])
    assert len(blockers) == 4
    assert "balance is 5" in blockers[0]
    assert "o1" in blockers[2]
    assert "t1, t2" in blockers[3]


def test_an_assertion_checks_out_and_names_its_key() -> None:
    """A fresh assertion verifies for its audience and carries the account, agreement and key."""
    checked = check_assertion(_assertion(), KEYS, audience="b", now_ts=NOW + 5)
    assert checked.account == "alice@a"
    assert checked.state == STATE
    assert checked.kid == key_id(CLIENT.verify_key)
    assert (checked.agreement, checked.expires_ts) == ("sha256:ab", NOW + 300)


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda d: d.update(audience="c"), "forged_assertion"),  # changed after signing
        (lambda d: d["account"].update(status="suspended"), "forged_assertion"),
        (lambda d: d.update(signatures={}), "forged_assertion"),
    ],
)
def test_a_tampered_assertion_is_refused(mutate: object, code: str) -> None:
    """Any change after signing breaks the signature."""
    document = _assertion()
    mutate(document)  # type: ignore[operator]
    with pytest.raises(AuthError) as caught:
        check_assertion(document, KEYS, audience="b", now_ts=NOW)
    assert caught.value.code == code


def test_audience_times_and_shape_are_checked() -> None:
    """Another audience, an expired or future assertion, a too long validity and a bad key refuse."""
    with pytest.raises(AuthError, match="not this node") as caught:
        check_assertion(_assertion(audience="c"), KEYS, audience="b", now_ts=NOW)
    assert caught.value.code == "wrong_audience"
    with pytest.raises(AuthError) as caught:
        check_assertion(_assertion(), KEYS, audience="b", now_ts=NOW + 300 + 61)
    assert caught.value.code == "assertion_expired"
    with pytest.raises(AuthError) as caught:
        check_assertion(_assertion(now_ts=NOW + 120), KEYS, audience="b", now_ts=NOW)
    assert caught.value.code == "bad_assertion_time"
    with pytest.raises(DocumentError):
        _assertion(validity_s=MAX_ASSERTION_S + 1)
    with pytest.raises(ValueError, match="public key"):
        _assertion(client_key="AAAA")


def test_status_documents_are_signed_for_one_audience() -> None:
    """A status document verifies for its audience only, and not with another key."""
    document = status_document("a", HOME, "b", [STATE], NOW)
    assert check_status_document(document, "a", KEYS, "b", NOW) == [STATE]
    with pytest.raises(AuthError):
        check_status_document(document, "a", KEYS, "c", NOW)
    with pytest.raises(AuthError):
        check_status_document(document, "a", {key_id(CLIENT.verify_key): CLIENT.verify_key}, "b", NOW)
    with pytest.raises(AuthError, match="stale"):
        check_status_document(document, "a", KEYS, "b", NOW + 3600)
