"""Closing a consumer against a real node on SQLite and PostgreSQL, with a database failure injected
between its steps (`closing` written, ledger account closed, `closed` written): the account is left
`closing` and refused as closed, nothing else is half-changed, and a retried close or the node's job
finishes it; a hold that turns up after the check puts the account back as it was."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc

import ledger
from node.accounts import closing, store
from tests.accounts.test_lifecycle import Api, node, pay_out

ORDER = {"consumer": "alice", "offer_id": "beijing-local", "source": "own:config", "units": 1, "hours": 1}


def _fails_once(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, error: Exception) -> list[int]:
    """Make `owner.name` raise `error` on its first call and work after; the calls it had."""
    calls: list[int] = []
    real: Callable[..., Any] = getattr(owner, name)

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing)
    return calls


def _lost_connection() -> Exception:
    return sqlalchemy.exc.OperationalError(
        "UPDATE accounts", None, ConnectionError("server closed the connection")
    )


async def _emptied(api: Api) -> str:
    """Pay alice's 5000 back out so her account may close; a token of hers."""
    await pay_out(api)
    return str((await api.ok("POST", "/api/v1/consumers/alice/tokens", {}))["token"])


async def _refused_while_closing(api: Api, token: str, ledger_closed: bool) -> None:
    """alice is `closing`: her token, new business and other changes are refused."""
    shown = await api.ok("GET", "/api/v1/accounts/alice")
    assert (shown["status"], shown["closed"]) == ("closing", ledger_closed), shown
    status, body = await api.call("GET", "/api/v1/consumers/alice", token=token)
    assert (status, body["error"]) == (403, "account_closed"), body
    status, body = await api.call("POST", "/api/v1/orders", ORDER)
    assert (status, body["error"]) == (403, "account_closed"), body
    for action in ("suspend", "reinstate"):
        status, body = await api.call("POST", f"/api/v1/accounts/alice/{action}", {})
        assert (status, body["error"]) == (409, "bad_transition"), (action, body)
    status, body = await api.call("POST", "/api/v1/accounts/alice/verify", {"verdict": "verified"})
    assert (status, body["error"]) == (409, "bad_transition"), body


async def _actions(api: Api) -> list[tuple[str, str]]:
    events = (await api.ok("GET", "/api/v1/account-events?kind=consumer&subject=alice"))["events"]
    return [
        (e["action"], e["detail"].get("to", "")) for e in events if e["action"] not in ("create", "token")
    ]


async def test_a_failure_after_the_ledger_closed_is_finished_by_a_retried_close(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database fails as `closed` is written, after the ledger account is closed: alice stays
    `closing` with her ledger account closed, refused everywhere; closing again finishes it."""
    async with node(tmp_path, db_url) as api:
        token = await _emptied(api)
        calls = _fails_once(monkeypatch, store, "end_close", _lost_connection())
        status, _ = await api.call("POST", "/api/v1/accounts/alice/close", {"reason": "left"})
        assert (status, len(calls)) == (500, 1)
        await _refused_while_closing(api, token, ledger_closed=True)

        closed = await api.ok("POST", "/api/v1/accounts/alice/close", {})
        assert (closed["status"], closed["closed"]) == ("closed", True)
        status, body = await api.call("GET", "/api/v1/consumers/alice", token=token)
        assert (status, body["error"]) == (403, "account_closed"), body
        assert await _actions(api) == [("close", "closing"), ("closed", "closed")]
        status, body = await api.call("POST", "/api/v1/accounts/alice/close", {})
        assert (status, body["error"]) == (409, "bad_transition"), body


async def test_a_failure_before_the_ledger_closed_is_finished_by_the_job(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database fails as the ledger account is closed: alice stays `closing` with her ledger
    account open and refused; the job finishing stopped closes closes both."""
    async with node(tmp_path, db_url) as api:
        assert api.server.ctx is not None
        engine = api.server.ctx.engine
        token = await _emptied(api)
        _fails_once(monkeypatch, ledger, "close_account", _lost_connection())
        status, _ = await api.call("POST", "/api/v1/accounts/alice/close", {})
        assert status == 500
        await _refused_while_closing(api, token, ledger_closed=False)

        assert closing.finish_stopped(engine, older_than_ms=60_000) == {}  # too recent: maybe running
        assert closing.finish_stopped(engine, older_than_ms=-1) == {"alice": "closed"}
        shown = await api.ok("GET", "/api/v1/accounts/alice")
        assert (shown["status"], shown["closed"]) == ("closed", True)
        assert closing.finish_stopped(engine, older_than_ms=-1) == {}


async def test_a_hold_found_after_the_check_puts_the_account_back(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ledger refuses to close (a hold placed after the check): the close is refused naming it
    and the suspended account is suspended again, its ledger account open; a later close works."""
    async with node(tmp_path, db_url) as api:
        await _emptied(api)
        await api.ok("POST", "/api/v1/accounts/alice/suspend", {})
        conflict = ledger.ConflictError("account 'consumer:alice' has pending holds")
        _fails_once(monkeypatch, ledger, "close_account", conflict)
        status, body = await api.call("POST", "/api/v1/accounts/alice/close", {})
        assert (status, body["error"]) == (409, "close_blocked"), body
        assert body["blockers"] == [str(conflict)]
        shown = await api.ok("GET", "/api/v1/accounts/alice")
        assert (shown["status"], shown["closed"]) == ("suspended", False)

        closed = await api.ok("POST", "/api/v1/accounts/alice/close", {})
        assert (closed["status"], closed["closed"]) == ("closed", True)
        assert await _actions(api) == [
            ("suspend", "suspended"),
            ("close", "closing"),
            ("close_undone", "suspended"),
            ("close", "closing"),
            ("closed", "closed"),
        ]
