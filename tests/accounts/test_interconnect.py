"""Account interconnection (账号互通) between two real nodes over real HTTP: alice, a consumer of `a`,
reads the log of her task that `b` ran directly at `b` on `a`'s assertion, without registering at
`b`; `b` keeps her as the federated account `alice@a`; a suspension at `a` is refused at `b` at
once when pushed and within one sync interval when the push was lost; forged, expired,
other-audience, replayed and key-not-held requests are refused and change nothing."""

from __future__ import annotations

import base64
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from nacl.signing import SigningKey

from federation import store as fed_store
from federation.assertions import AccountState, Assertion, Verification, issue_assertion, present
from federation.documents import sign_document
from federation.keys import public_key_text
from federation.partners import Agreement, Partner
from node.accounts import federated, federated_store, store
from node.accounts.component import CHECK_JOB
from tests.support.tasks import Node, pair, python_task

CODE = "print('ran at b')"


async def call_as(
    node: Node, assertion: dict[str, Any], key: SigningKey, path: str, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    """GET `path` at `node` as the assertion's consumer, signing with `key`; (status, JSON, headers sent)."""
    url = node.server.url + path
    sent = headers or present(assertion, key, "GET", url, b"", int(time.time()))
    async with aiohttp.ClientSession() as http, http.get(url, headers=sent) as response:
        return response.status, await response.json(), sent


async def assertion_for(node: Node, token: str, audience: str, key: SigningKey) -> tuple[int, Any]:
    """Ask `node` for an assertion about the token's consumer for `audience`."""
    body = {"audience": audience, "public_key": public_key_text(key.verify_key)}
    return await node.call("POST", "/api/v1/account-assertions", body, token=token)


async def test_a_partners_consumer_reads_its_task_at_the_partner_until_suspended(tmp_path: Path) -> None:
    """The whole interconnection path between real nodes, with its refusals (see module doc)."""
    async with pair(tmp_path) as p:
        a, b = p.buyer, p.seller
        status, issued = await a.call("POST", "/api/v1/consumers/alice/tokens", {})
        assert status == 201, issued
        token = issued["token"]
        task = await a.submit(python_task(CODE))
        done = await a.wait(task["id"], timeout_s=60)
        assert (done["kind"], done["outcome"]) == ("remote", "succeeded"), done
        at_b = done["order_id"]  # the task's id at the seller is the trade id

        key = SigningKey.generate()
        status, assertion = await assertion_for(a, token, "b", key)
        assert status == 201, assertion
        assert (assertion["issuer"], assertion["audience"], assertion["account"]["subject"]) == (
            "a",
            "b",
            "alice",
        )

        status, chunk, sent = await call_as(b, assertion, key, f"/api/v1/tasks/{at_b}/logs")
        assert status == 200, chunk
        assert base64.b64decode(chunk["data_b64"]) == b"ran at b\n"
        status, me, _ = await call_as(b, assertion, key, "/api/v1/whoami")
        assert (status, me) == (
            200,
            {"admin": False, "consumer": "alice@a", "role": "federated", "user": None},
        ), me
        status, listed, _ = await call_as(b, assertion, key, "/api/v1/tasks")
        assert [t["id"] for t in listed["tasks"]] == [at_b], listed
        _, seen = await b.call("GET", "/api/v1/federated-accounts")
        [account] = seen["accounts"]
        assert (account["id"], account["status"], account["issuer"]) == ("alice@a", "active", "a")
        assert account["agreement"].startswith("sha256:")
        _, sold = await b.call("GET", f"/api/v1/tasks/{at_b}")
        assert (sold["kind"], sold["consumer"], sold["partner"]) == ("sold", "alice@a", "a")

        await _refusals(a, b, assertion, key, at_b, sent)
        await _lifecycle(a, b, assertion, key, at_b, token)
        await _suspended_before_first_use(a, b)


async def _refusals(
    a: Node, b: Node, assertion: dict[str, Any], key: SigningKey, at_b: str, sent: dict[str, str]
) -> None:
    """Replayed, key-not-held, forged, other-audience, expired and write requests are refused."""
    # The same signed request again: its nonce was used.
    status, body, _ = await call_as(b, assertion, key, f"/api/v1/tasks/{at_b}/logs", headers=sent)
    assert (status, body["error"]) == (401, "replayed"), body
    # Signed with a key the assertion does not name.
    status, body, _ = await call_as(b, assertion, SigningKey.generate(), "/api/v1/whoami")
    assert (status, body["error"]) == (401, "key_not_held"), body
    # A field changed after signing.
    forged = {**assertion, "account": {**assertion["account"], "subject": "mallory"}}
    status, body, _ = await call_as(b, forged, key, "/api/v1/whoami")
    assert (status, body["error"]) == (401, "forged_assertion"), body
    # Signed by a key that is not a's.
    impostor = sign_document({k: v for k, v in assertion.items() if k != "signatures"}, SigningKey.generate())
    status, body, _ = await call_as(b, impostor, key, "/api/v1/whoami")
    assert (status, body["error"]) == (401, "forged_assertion"), body
    # Issued by a (its real key) but for another node, or long expired.
    assert a.server.ctx is not None
    a_key = a.server.ctx.identity.signing_key
    state = AccountState("alice", "active", 99, Verification())
    pk = public_key_text(key.verify_key)
    now = int(time.time())
    for audience, issued_ts, error in (
        ("c", now, "wrong_audience"),
        ("b", now - 3600, "assertion_expired"),
    ):
        other = issue_assertion(
            "a",
            a_key,
            audience=audience,
            state=state,
            agreement="sha256:x",
            client_key=pk,
            assertion_id="x",
            now_ts=issued_ts,
            validity_s=300,
        )
        status, body, _ = await call_as(b, other, key, "/api/v1/whoami")
        assert (status, body["error"]) == (401, error), body
    # A partner's consumer may only read.
    url = b.server.url + "/api/v1/tasks"
    signed = present(
        assertion, key, "POST", url, b"{}", int(time.time()), {"Content-Type": "application/json"}
    )
    async with aiohttp.ClientSession() as http, http.post(url, data=b"{}", headers=signed) as response:
        body = await response.json()
    assert (response.status, body["error"]) == (403, "admin_only"), body


async def _lifecycle(
    a: Node, b: Node, assertion: dict[str, Any], key: SigningKey, at_b: str, token: str
) -> None:
    """Suspension and reinstatement at `a` reach `b`, pushed or on `b`'s status check."""
    # Suspended at a: a tells b at once; the assertion issued before is refused at b.
    status, suspended = await a.call("POST", "/api/v1/accounts/alice/suspend", {"reason": "review"})
    assert (status, suspended["partners_told"]) == (200, {"b": "told"}), suspended
    status, body, _ = await call_as(b, assertion, key, f"/api/v1/tasks/{at_b}/logs")
    assert (status, body["error"]) == (403, "account_suspended"), body
    status, body = await assertion_for(a, token, "b", key)
    assert (status, body["error"]) == (403, "account_suspended"), body

    # Reinstated: b follows, and the same assertion works again.
    status, back = await a.call("POST", "/api/v1/accounts/alice/reinstate", {})
    assert back["partners_told"] == {"b": "told"}, back
    status, _, _ = await call_as(b, assertion, key, "/api/v1/whoami")
    assert status == 200

    # A real-name verification at a reaches b's federated account too.
    status, verified = await a.call("POST", "/api/v1/accounts/alice/verify", {"verdict": "verified"})
    assert (status, verified["partners_told"]) == (200, {"b": "told"}), verified
    _, seen = await b.call("GET", "/api/v1/federated-accounts?issuer=a")
    assert seen["accounts"][0]["verification"]["status"] == "verified", seen

    # A suspension whose push was lost (written straight to a's database): b refuses alice
    # after its next status check, one sync interval.
    assert a.server.ctx is not None
    store.change(a.server.ctx.engine, "consumer", "alice", "suspend", "admin", store.now_ms())
    status, _, _ = await call_as(b, assertion, key, "/api/v1/whoami")
    assert status == 200
    assert b.server.ctx is not None
    assert await b.server.ctx.scheduler.run_job(CHECK_JOB) == "ok"
    status, body, _ = await call_as(b, assertion, key, "/api/v1/whoami")
    assert (status, body["error"]) == (403, "account_suspended"), body
    _, events = await b.call("GET", "/api/v1/account-events?kind=federated")
    assert [(e["action"], e["detail"].get("via")) for e in events["events"]] == [
        ("create", None),
        ("suspended", "push"),
        ("active", "push"),
        ("suspended", "sync"),
    ]


async def _suspended_before_first_use(a: Node, b: Node) -> None:
    """Bob gets an assertion for `b` and is suspended at `a` before he uses it: `b`, told by the
    push, refuses the assertion the first time it is shown (it was issued before the suspension);
    closed at `a`, he is refused at `b` as closed."""
    status, _ = await a.call("POST", "/api/v1/consumers", {"id": "bob"})
    assert status == 201
    status, issued = await a.call("POST", "/api/v1/consumers/bob/tokens", {})
    assert status == 201, issued
    key = SigningKey.generate()
    status, assertion = await assertion_for(a, issued["token"], "b", key)
    assert status == 201, assertion
    status, suspended = await a.call("POST", "/api/v1/accounts/bob/suspend", {"reason": "fraud"})
    assert (status, suspended["partners_told"]) == (200, {"b": "told"}), suspended
    status, body, _ = await call_as(b, assertion, key, "/api/v1/whoami")
    assert (status, body["error"]) == (403, "account_suspended"), body
    _, seen = await b.call("GET", "/api/v1/federated-accounts?issuer=a")
    bob = {row["id"]: row for row in seen["accounts"]}["bob@a"]
    assert (bob["status"], bob["version"]) == ("suspended", 1), bob

    # Closed at a (nothing on his account): b is told, and refuses him as closed from then on.
    status, closed = await a.call("POST", "/api/v1/accounts/bob/close", {})
    assert (status, closed["status"], closed["partners_told"]) == (200, "closed", {"b": "told"}), closed
    status, body, _ = await call_as(b, assertion, key, "/api/v1/whoami")
    assert (status, body["error"]) == (403, "account_closed"), body


async def test_the_partners_policy_and_pins_decide_whose_consumers_it_accepts(tmp_path: Path) -> None:
    """`b` set to accept only real-name verified consumers refuses alice's assertion while she is
    unverified at `a` and accepts the one `a` issues after verifying her; an assertion from a node
    `b` has not pinned is refused; nothing is created at `b` by a refusal."""
    async with pair(tmp_path, seller_toml='\n[accounts]\nfederated = "verified"\n') as p:
        a, b = p.buyer, p.seller
        status, issued = await a.call("POST", "/api/v1/consumers/alice/tokens", {})
        assert status == 201, issued
        key = SigningKey.generate()
        _, unverified = await assertion_for(a, issued["token"], "b", key)
        status, body, _ = await call_as(b, unverified, key, "/api/v1/whoami")
        assert (status, body["error"]) == (403, "unverified"), body

        stranger = SigningKey.generate()
        state = AccountState("eve", "active", 1, Verification("verified", "admin", int(time.time())))
        foreign = issue_assertion(
            "c",
            stranger,
            audience="b",
            state=state,
            agreement="sha256:x",
            client_key=public_key_text(key.verify_key),
            assertion_id="c1",
            now_ts=int(time.time()),
            validity_s=300,
        )
        status, body, _ = await call_as(b, foreign, key, "/api/v1/whoami")
        assert (status, body["error"]) == (401, "unknown_issuer"), body
        _, seen = await b.call("GET", "/api/v1/federated-accounts")
        assert seen["accounts"] == [], seen

        status, verified = await a.call("POST", "/api/v1/accounts/alice/verify", {"verdict": "verified"})
        assert status == 200, verified
        _, fresh = await assertion_for(a, issued["token"], "b", key)
        status, me, _ = await call_as(b, fresh, key, "/api/v1/whoami")
        assert (status, me["consumer"]) == (200, "alice@a"), me


async def test_a_partner_that_accepts_no_consumers_refuses_them_all(tmp_path: Path) -> None:
    """`accounts.federated = "none"`: a valid assertion of a partner's verified consumer is refused."""
    async with pair(tmp_path, seller_toml='\n[accounts]\nfederated = "none"\n') as p:
        a, b = p.buyer, p.seller
        status, issued = await a.call("POST", "/api/v1/consumers/alice/tokens", {})
        assert status == 201, issued
        await a.call("POST", "/api/v1/accounts/alice/verify", {"verdict": "verified"})
        key = SigningKey.generate()
        _, assertion = await assertion_for(a, issued["token"], "b", key)
        status, body, _ = await call_as(b, assertion, key, "/api/v1/whoami")
        assert (status, body["error"]) == (403, "federated_refused"), body


async def test_the_status_check_asks_about_every_account_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An issuer with more accounts seen here than one status request holds (2 here) is asked about
    all of them, a batch at a time: five consumers suspended at `a` with their pushes lost are all
    refused at `b` after one status check."""
    monkeypatch.setattr(federated, "CHECK_BATCH", 2)
    async with pair(tmp_path) as p:
        assert p.buyer.server.ctx is not None
        assert p.seller.server.ctx is not None
        a_engine, b_ctx = p.buyer.server.ctx.engine, p.seller.server.ctx
        client = SigningKey.generate().verify_key
        names = [f"c{i}" for i in range(5)]
        for name in names:
            now = store.now_ms()
            store.created(a_engine, "consumer", name, "admin", now)
            federated_store.saw(a_engine, name, "b", now)
            state = AccountState(name, "active", 0, Verification())
            federated_store.seen(
                b_ctx.engine, Assertion("a", "b", state, "sha256:x", client, name, 1, 2), now
            )
            store.change(a_engine, "consumer", name, "suspend", "admin", now)  # not pushed
        assert await b_ctx.scheduler.run_job(CHECK_JOB) == "ok"
        seen = federated_store.list_accounts(b_ctx.engine, "a")
        assert {account.subject: account.status for account in seen} == dict.fromkeys(names, "suspended")


async def test_a_partner_that_cannot_be_told_does_not_stop_the_change(tmp_path: Path) -> None:
    """Alice seen by `b` and by `c`, which does not answer: suspending her at `a` succeeds, `b` is
    told, and the answer names why `c` was not (it will ask on its own next check)."""
    async with pair(tmp_path) as p:
        a, b = p.buyer, p.seller
        assert a.server.ctx is not None
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            port = closed.getsockname()[1]
        silent = Partner(
            "c", (f"http://127.0.0.1:{port}",), public_key_text(SigningKey.generate().verify_key), Agreement()
        )
        fed_store.add_partner(a.server.ctx.engine, silent, int(time.time()))
        for partner in ("b", "c"):
            federated_store.saw(a.server.ctx.engine, "alice", partner, store.now_ms())
        status, suspended = await a.call("POST", "/api/v1/accounts/alice/suspend", {})
        assert status == 200, suspended
        assert suspended["status"] == "suspended"
        assert suspended["partners_told"]["b"] == "told", suspended
        assert suspended["partners_told"]["c"] == "unreachable", suspended
        _, seen = await b.call("GET", "/api/v1/federated-accounts?issuer=a")
        assert [(row["id"], row["status"]) for row in seen["accounts"]] == [("alice@a", "suspended")], seen
