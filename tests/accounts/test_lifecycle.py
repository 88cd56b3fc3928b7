"""Account lifecycle over real HTTP against a real node, on SQLite and PostgreSQL: consumers are
verified, suspended, reinstated and closed; operator users act by role; every change is an audit
event; a suspension holds on every replica at the next request; closing refuses while anything is
left on the account and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from node.service import NodeServer
from tests.support.nodes import make_node_dir, offer_entry, running_node
from tests.support.services import replica_spec
from tests.support.tasks import pool_node, python_task

OFFER = offer_entry("beijing-local", "beijing", 10, 1000, pool="pool-a")


@dataclass
class Api:
    """A running node and a way to call it with any token."""

    server: NodeServer

    async def call(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        """One request with `token` (the admin token when None); (status, JSON answer)."""
        assert self.server.ctx is not None
        headers = {"Authorization": f"Bearer {token or self.server.ctx.admin_token}"}
        async with (
            aiohttp.ClientSession(self.server.url) as http,
            http.request(method, path, json=body, headers=headers) as response,
        ):
            return response.status, await response.json()

    async def ok(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        """A request that must succeed; its answer."""
        status, answer = await self.call(method, path, body, token)
        assert status in (200, 201), (method, path, status, answer)
        return answer


async def pay_out(api: Api) -> None:
    """Pay alice's 5000 back out (a ledger transfer to external deposits), leaving her account empty."""
    transfer = {
        "id": "refund-1",
        "kind": "single",
        "debit_account": "consumer:alice",
        "credit_account": "external:deposits",
        "currency": "CNY",
        "amount": 5000,
    }
    status, body = await api.call("POST", "/api/v1/ledger/transfers", {"transfers": [transfer]})
    assert (status, body["results"][0]["status"]) == (200, "created"), body


@asynccontextmanager
async def node(tmp_path: Path, db_url: str, name: str = "a") -> AsyncIterator[Api]:
    """A node on `db_url` with one offer and a consumer alice holding 5000."""
    url = None if db_url.startswith("sqlite") else db_url
    config = make_node_dir(tmp_path, name, db_url=url, extra_toml="[scheduler]\nenabled = false\n" + OFFER)
    async with running_node(config) as server:
        api = Api(server)
        await api.ok("POST", "/api/v1/consumers", {"id": "alice"})
        await api.ok("POST", "/api/v1/consumers/alice/deposits", {"amount": 5000, "id": "d1"})
        yield api


async def test_a_consumer_is_verified_suspended_reinstated_and_every_change_is_an_event(
    tmp_path: Path, db_url: str
) -> None:
    """Verification records who and when; a suspended consumer's token is refused (403) at once and
    works again after reinstatement; the audit trail lists each change with its actor."""
    async with node(tmp_path, db_url) as api:
        issued = await api.ok("POST", "/api/v1/consumers/alice/tokens", {})
        token = issued["token"]
        assert (await api.ok("GET", "/api/v1/consumers/alice", token=token))["id"] == "alice"
        shown = await api.ok("GET", "/api/v1/accounts/alice")
        assert (shown["status"], shown["verification"]["status"], shown["balance"]) == (
            "active",
            "unverified",
            5000,
        )

        verified = await api.ok(
            "POST", "/api/v1/accounts/alice/verify", {"verdict": "verified", "note": "id card"}
        )
        assert verified["verification"]["status"] == "verified"
        assert verified["verification"]["by"] == "admin"
        assert verified["verification"]["ts_ms"] > 0

        suspended = await api.ok("POST", "/api/v1/accounts/alice/suspend", {"reason": "chargeback"})
        assert suspended["status"] == "suspended"
        status, body = await api.call("GET", "/api/v1/consumers/alice", token=token)
        assert (status, body["error"]) == (403, "account_suspended"), body
        status, body = await api.call(
            "POST",
            "/api/v1/orders",
            {"offer_id": "x", "source": "own:config", "units": 1, "hours": 1},
            token=token,
        )
        assert (status, body["error"]) == (403, "account_suspended"), body
        status, body = await api.call("POST", "/api/v1/accounts/alice/suspend", {})
        assert (status, body["error"]) == (409, "bad_transition"), body
        order = {
            "consumer": "alice",
            "offer_id": "beijing-local",
            "source": "own:config",
            "units": 1,
            "hours": 1,
        }
        status, body = await api.call("POST", "/api/v1/orders", order)  # not even the admin places one
        assert (status, body["error"]) == (403, "account_suspended"), body
        service = {"name": "svc", "spec": replica_spec(), "replicas": 1, "consumer": "alice"}
        status, body = await api.call("POST", "/api/v1/services", service)  # nor starts a service
        assert (status, body["error"]) == (403, "account_suspended"), body
        assert (await api.ok("GET", "/api/v1/services"))["services"] == []
        assert (await api.ok("GET", "/api/v1/orders?consumer=alice"))["orders"] == []

        await api.ok("POST", "/api/v1/accounts/alice/reinstate", {})
        assert (await api.ok("GET", "/api/v1/consumers/alice", token=token))["id"] == "alice"

        await api.ok("POST", f"/api/v1/consumers/alice/tokens/{issued['id']}/revoke", {})

        events = (await api.ok("GET", "/api/v1/account-events?kind=consumer&subject=alice"))["events"]
        assert [e["action"] for e in events] == [
            "create",
            "token",
            "verify",
            "suspend",
            "reinstate",
            "revoke-token",
        ]
        assert all(e["actor"] == "admin" and e["ts_ms"] > 0 for e in events)
        assert events[3]["detail"] == {"from": "active", "to": "suspended", "reason": "chargeback"}
        assert events[5]["detail"] == {"token_id": issued["id"]}


async def test_closing_needs_an_empty_account_and_is_final(tmp_path: Path, db_url: str) -> None:
    """Closing with money left or an open order is refused naming each and changes nothing; with the
    order cancelled and the money gone the account closes, its token stops working, and nothing reopens it."""
    async with node(tmp_path, db_url) as api:
        token = (await api.ok("POST", "/api/v1/consumers/alice/tokens", {}))["token"]
        status, body = await api.call("POST", "/api/v1/accounts/alice/close", {})
        assert (status, body["error"]) == (409, "close_blocked"), body
        assert any("balance is 5000" in b for b in body["blockers"]), body
        assert (await api.ok("GET", "/api/v1/accounts/alice"))["status"] == "active"
        assert (await api.ok("GET", "/api/v1/consumers/alice", token=token))["available"] == 5000

        order = {
            "consumer": "alice",
            "offer_id": "beijing-local",
            "source": "own:config",
            "units": 1,
            "hours": 1,
        }
        placed = await api.ok("POST", "/api/v1/orders", order)
        status, body = await api.call("POST", "/api/v1/accounts/alice/close", {})
        assert (status, body["error"]) == (409, "close_blocked"), body
        assert any(placed["id"] in b for b in body["blockers"]), body
        assert any("1000 is held" in b for b in body["blockers"]), body
        await api.ok("POST", f"/api/v1/orders/{placed['id']}/cancel", {})

        await pay_out(api)

        closed = await api.ok("POST", "/api/v1/accounts/alice/close", {"reason": "left"})
        assert (closed["status"], closed["closed"]) == ("closed", True)
        status, body = await api.call("GET", "/api/v1/consumers/alice", token=token)
        assert (status, body["error"]) == (403, "account_closed"), body
        for action in ("reinstate", "suspend", "close"):
            status, body = await api.call("POST", f"/api/v1/accounts/alice/{action}", {})
            assert (status, body["error"]) == (409, "bad_transition"), (action, body)
        status, body = await api.call("POST", "/api/v1/accounts/alice/verify", {"verdict": "verified"})
        assert (status, body["error"]) == (409, "bad_transition"), body


async def test_operator_users_act_by_role(tmp_path: Path, db_url: str) -> None:
    """An operator runs the day-to-day but manages no users; an auditor reads the ledger and the
    audit trail and changes nothing; a suspended user's token stops at once; the bootstrap admin
    token keeps working."""
    async with node(tmp_path, db_url) as api:
        op = (await api.ok("POST", "/api/v1/users", {"name": "olga", "role": "operator"}))["token"]
        aud = (await api.ok("POST", "/api/v1/users", {"name": "ann", "role": "auditor"}))["token"]
        assert op.startswith("cpu_")
        assert aud.startswith("cpu_")

        assert (await api.ok("GET", "/api/v1/whoami", token=op)) == {
            "admin": True,
            "consumer": None,
            "role": "operator",
            "user": "olga",
        }
        assert (await api.ok("GET", "/api/v1/whoami", token=aud))["role"] == "auditor"
        await api.ok("POST", "/api/v1/consumers", {"id": "bob"}, token=op)
        await api.ok("POST", "/api/v1/accounts/bob/verify", {"verdict": "rejected"}, token=op)
        status, body = await api.call("POST", "/api/v1/users", {"name": "eve", "role": "admin"}, token=op)
        assert (status, body["error"]) == (403, "forbidden_role"), body
        status, body = await api.call("GET", "/api/v1/users", token=op)
        assert (status, body["error"]) == (403, "forbidden_role"), body

        ledger_accounts = (await api.ok("GET", "/api/v1/ledger/accounts", token=aud))["accounts"]
        assert "consumer:alice" in [a["id"] for a in ledger_accounts]
        events = (await api.ok("GET", "/api/v1/account-events?subject=bob", token=aud))["events"]
        assert [(e["action"], e["actor"]) for e in events] == [
            ("create", "user:olga"),
            ("verify", "user:olga"),
        ]
        for method, path, body in (
            ("POST", "/api/v1/consumers", {"id": "carol"}),
            ("POST", "/api/v1/consumers/alice/deposits", {"amount": 1}),
            ("POST", "/api/v1/accounts/alice/suspend", {}),
            ("POST", "/api/v1/reload", {}),
        ):
            status, answer = await api.call(method, path, body, token=aud)
            assert (status, answer["error"]) == (403, "forbidden_role"), (path, answer)
        assert (await api.ok("GET", "/api/v1/consumers/alice"))["balance"] == 5000
        status, answer = await api.call("GET", "/api/v1/consumers/carol")
        assert status == 404, answer

        await api.ok("POST", "/api/v1/users/olga/suspend", {})
        status, body = await api.call("GET", "/api/v1/whoami", token=op)
        assert (status, body["error"]) == (403, "account_suspended"), body
        await api.ok("POST", "/api/v1/users/olga/reinstate", {})
        fresh = (await api.ok("POST", "/api/v1/users/olga/token", {}))["token"]
        status, body = await api.call("GET", "/api/v1/whoami", token=op)
        assert (status, body["error"]) == (401, "bad_user_token"), body
        assert (await api.ok("GET", "/api/v1/whoami", token=fresh))["admin"] is True
        assert (await api.ok("GET", "/api/v1/whoami"))["admin"] is True

        status, body = await api.call("POST", "/api/v1/users", {"name": "olga", "role": "auditor"})
        assert (status, body["error"]) == (400, "user_exists"), body
        status, body = await api.call("POST", "/api/v1/users", {"name": "x", "role": "root"})
        assert (status, body["error"]) == (400, "bad_request"), body
        users = (await api.ok("GET", "/api/v1/users"))["users"]
        assert [(u["id"], u["role"], u["status"]) for u in users] == [
            ("ann", "auditor", "active"),
            ("olga", "operator", "active"),
        ]


async def test_a_suspension_through_one_replica_holds_on_every_replica(tmp_path: Path, db_url: str) -> None:
    """A second replica over the same database refuses a consumer's token at the next request after
    the first replica suspended the consumer, and accepts it again once reinstated; the same holds
    for an operator user's token, and for a closed consumer's and a closed user's."""
    async with node(tmp_path, db_url) as api:
        token = (await api.ok("POST", "/api/v1/consumers/alice/tokens", {}))["token"]
        await api.ok("POST", "/api/v1/consumers", {"id": "bob"})
        bob = (await api.ok("POST", "/api/v1/consumers/bob/tokens", {}))["token"]
        olga = (await api.ok("POST", "/api/v1/users", {"name": "olga", "role": "operator"}))["token"]
        config = api.server.settings.base_dir / "node.toml"
        async with running_node(config, frozenset({"api"})) as replica:
            other = Api(replica)
            assert (await other.ok("GET", "/api/v1/consumers/alice", token=token))["id"] == "alice"
            assert (await other.ok("GET", "/api/v1/whoami", token=olga))["user"] == "olga"
            assert (await other.ok("GET", "/api/v1/consumers/bob", token=bob))["id"] == "bob"
            await api.ok("POST", "/api/v1/accounts/alice/suspend", {})
            await api.ok("POST", "/api/v1/users/olga/suspend", {})
            status, body = await other.call("GET", "/api/v1/consumers/alice", token=token)
            assert (status, body["error"]) == (403, "account_suspended"), body
            status, body = await other.call("GET", "/api/v1/accounts", token=olga)
            assert (status, body["error"]) == (403, "account_suspended"), body
            await api.ok("POST", "/api/v1/accounts/alice/reinstate", {})
            await api.ok("POST", "/api/v1/users/olga/reinstate", {})
            assert (await other.ok("GET", "/api/v1/consumers/alice", token=token))["id"] == "alice"
            assert (await other.ok("GET", "/api/v1/accounts", token=olga))["accounts"]

            await api.ok("POST", "/api/v1/accounts/bob/close", {})
            await api.ok("POST", "/api/v1/users/olga/close", {})
            status, body = await other.call("GET", "/api/v1/consumers/bob", token=bob)
            assert (status, body["error"]) == (403, "account_closed"), body
            status, body = await other.call("GET", "/api/v1/whoami", token=olga)
            assert (status, body["error"]) == (403, "account_closed"), body


async def test_users_are_verified_closed_for_good_and_cannot_close_themselves(
    tmp_path: Path, db_url: str
) -> None:
    """A user's real-name verification records who and when; a user may not suspend or close its
    own account; a closed user gets no new token and nothing reopens it; each change is an event."""
    async with node(tmp_path, db_url) as api:
        root = (await api.ok("POST", "/api/v1/users", {"name": "root", "role": "admin"}))["token"]
        await api.ok("POST", "/api/v1/users", {"name": "olga", "role": "operator"})
        verified = await api.ok(
            "POST", "/api/v1/users/olga/verify", {"verdict": "verified", "note": "badge"}, token=root
        )
        assert (verified["verification"]["status"], verified["verification"]["by"]) == (
            "verified",
            "user:root",
        )
        assert verified["verification"]["ts_ms"] > 0
        for action in ("suspend", "close"):
            status, body = await api.call("POST", f"/api/v1/users/root/{action}", {}, token=root)
            assert (status, body["error"]) == (409, "own_account"), body
        assert (await api.ok("GET", "/api/v1/users/root"))["status"] == "active"

        closed = await api.ok("POST", "/api/v1/users/olga/close", {"reason": "left"}, token=root)
        assert closed["status"] == "closed"
        status, body = await api.call("POST", "/api/v1/users/olga/token", {})
        assert (status, body["error"]) == (400, "account_closed"), body
        for action in ("reinstate", "suspend", "close"):
            status, body = await api.call("POST", f"/api/v1/users/olga/{action}", {})
            assert (status, body["error"]) == (409, "bad_transition"), (action, body)
        status, body = await api.call("POST", "/api/v1/users/olga/verify", {"verdict": "verified"})
        assert (status, body["error"]) == (409, "bad_transition"), body
        events = (await api.ok("GET", "/api/v1/account-events?kind=user&subject=olga"))["events"]
        assert [(e["action"], e["actor"]) for e in events] == [
            ("create", "admin"),
            ("verify", "user:root"),
            ("close", "user:root"),
        ]
        assert events[2]["detail"] == {"from": "active", "to": "closed", "reason": "left"}


async def test_closing_is_refused_while_a_task_runs(tmp_path: Path) -> None:
    """A consumer whose task runs on the node's pool cannot be closed: the refusal names the task
    (and its order, and the money held for it), and the account stays active."""
    async with pool_node(tmp_path) as pool:
        task = await pool.submit(python_task("import time; time.sleep(60)"))
        await pool.wait(task["id"], states=("running",), timeout_s=60)
        status, body = await pool.call("POST", "/api/v1/accounts/alice/close", {})
        assert (status, body["error"]) == (409, "close_blocked"), body
        assert any(task["id"] in b for b in body["blockers"] if b.startswith("open tasks")), body
        assert any(b.startswith("open orders") for b in body["blockers"]), body
        _, shown = await pool.call("GET", "/api/v1/accounts/alice")
        assert (shown["status"], shown["closed"]) == ("active", False)
        stopped = await pool.call("POST", f"/api/v1/tasks/{task['id']}/stop", {})
        assert stopped[0] == 200, stopped
