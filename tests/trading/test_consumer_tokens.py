"""Consumer tokens over real HTTP against real nodes: a consumer places and follows its own orders
with its own token, never sees or touches another consumer's orders or balance, cannot use admin
routes, and revoked or malformed tokens are refused, on every replica at once."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from tests.support.nodes import running_node
from tests.support.trading import Market, engine_of, market

LOCAL = {"offer_id": "beijing-local", "source": "own:config"}
PARTNER = {"offer_id": "shanghai-gpu", "source": "partner:shanghai"}


@asynccontextmanager
async def as_token(url: str, token: str) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP session to a node that sends `token` as its bearer token."""
    async with aiohttp.ClientSession(url, headers={"Authorization": f"Bearer {token}"}) as http:
        yield http


async def call(http: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request; (status, JSON answer)."""
    async with http.request(method, path, json=body) as response:
        return response.status, await response.json()


async def issue(m: Market, consumer: str = "alice") -> dict[str, Any]:
    """Issue a token for `consumer` through the buyer's admin API."""
    status, body = await m.post(f"/api/v1/consumers/{consumer}/tokens", {})
    assert status == 201, body
    return dict(body)


async def add_consumer(m: Market, name: str, deposit: int = 100_000) -> None:
    """Open and fund another consumer at the buyer."""
    assert (await m.post("/api/v1/consumers", {"id": name}))[0] == 201
    status, body = await m.post(
        f"/api/v1/consumers/{name}/deposits", {"amount": deposit, "id": f"dep-{name}"}
    )
    assert status == 201, body


def stored_tokens(m: Market) -> list[dict[str, Any]]:
    """Every row of the buyer's token table, as stored."""
    with engine_of(m.buyer).connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.text("SELECT * FROM trading_consumer_tokens"))]


async def test_consumer_places_and_follows_its_own_orders(
    tmp_path: Path, db_urls: tuple[str | None, str | None]
) -> None:
    """With its token alone a consumer reads offers, places a partner and a local order (its id taken
    from the token), lists, shows and cancels them (settling by hand is the operator's) and reads its balance; the node stores
    only the SHA-256 of the secret."""
    async with market(tmp_path, db_urls) as m:
        issued = await issue(m)
        token = issued["token"]
        assert (issued["consumer"], issued["revoked_ts"]) == ("alice", None)
        prefix, token_id, secret = token.split("_")
        assert (prefix, token_id, len(secret)) == ("cpc", issued["id"], 43)
        [row] = stored_tokens(m)
        assert row["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
        assert (row["token_id"], row["consumer"], row["revoked_ts"]) == (token_id, "alice", None)
        assert not any(secret in str(value) for value in row.values())

        async with as_token(m.buyer.url, token) as alice:
            status, offers = await call(alice, "GET", "/api/v1/offers")
            assert status == 200
            assert {"beijing-local", "shanghai-gpu"} <= {o["id"] for o in offers["offers"]}
            status, remote = await call(alice, "POST", "/api/v1/orders", {**PARTNER, "units": 1, "hours": 3})
            assert (status, remote["consumer"], remote["state"]) == (201, "alice", "accepted"), remote
            body = {**LOCAL, "consumer": "alice", "units": 1, "hours": 2}
            status, local = await call(alice, "POST", "/api/v1/orders", body)
            assert (status, local["consumer"], local["state"]) == (201, "alice", "accepted"), local

            status, listed = await call(alice, "GET", "/api/v1/orders")
            assert (status, {o["id"] for o in listed["orders"]}) == (200, {local["id"], remote["id"]})
            status, same = await call(alice, "GET", "/api/v1/orders?consumer=alice")
            assert (status, same) == (200, listed)
            status, shown = await call(alice, "GET", f"/api/v1/orders/{remote['id']}")
            assert (status, shown["receipt_sha256"]) == (200, remote["receipt_sha256"])
            assert shown["receipt"] is not None

            path = f"/api/v1/orders/{remote['id']}/settle"
            status, refused = await call(alice, "POST", path, {"used_hours": 2})
            assert (status, refused["error"]) == (403, "admin_only")  # hand-typed usage: the operator's
            status, settled = await m.post(path, {"used_hours": 2})
            assert (status, settled["state"], settled["settled_amount"]) == (200, "settled", 20_000)
            status, cancelled = await call(alice, "POST", f"/api/v1/orders/{local['id']}/cancel", {})
            assert (status, cancelled["state"]) == (200, "cancelled")
            status, me = await call(alice, "GET", "/api/v1/consumers/alice")
            assert (status, me["balance"], me["held"]) == (200, 500_000 - 20_000, 0)


async def test_a_consumer_cannot_reach_another_consumers_orders_or_balance(tmp_path: Path) -> None:
    """Alice's token finds bob's order and account exactly as if they did not exist (404), cannot
    cancel bob's order, order or list for bob (403 forbidden), nor use any admin route
    (403 admin_only); bob's order and money are untouched."""
    async with market(tmp_path) as m:
        await add_consumer(m, "bob")
        status, bobs = await m.post("/api/v1/orders", {**LOCAL, "consumer": "bob", "units": 1, "hours": 1})
        assert status == 201, bobs
        bob_before = await m.consumer("bob")
        token = (await issue(m))["token"]
        async with as_token(m.buyer.url, token) as alice:
            missing = "beijing.nosuchorder0000"
            for method, suffix, body in (("GET", "", None), ("POST", "/cancel", {})):
                status, theirs = await call(alice, method, f"/api/v1/orders/{bobs['id']}{suffix}", body)
                status_missing, nothing = await call(alice, method, f"/api/v1/orders/{missing}{suffix}", body)
                assert (status, status_missing) == (404, 404)
                assert theirs == {"error": "unknown_order", "message": f"no order {bobs['id']!r}"}
                assert nothing == {"error": "unknown_order", "message": f"no order {missing!r}"}
            status, theirs = await call(alice, "GET", "/api/v1/consumers/bob")
            status_missing, nothing = await call(alice, "GET", "/api/v1/consumers/nobody")
            assert (status, theirs) == (404, {"error": "unknown_consumer", "message": "no consumer 'bob'"})
            assert (status_missing, nothing["error"]) == (404, "unknown_consumer")

            status, body = await call(
                alice, "POST", "/api/v1/orders", {**LOCAL, "consumer": "bob", "units": 1, "hours": 1}
            )
            assert (status, body["error"]) == (403, "forbidden")
            status, body = await call(alice, "GET", "/api/v1/orders?consumer=bob")
            assert (status, body["error"]) == (403, "forbidden")
            status, listed = await call(alice, "GET", "/api/v1/orders")
            assert (status, listed["orders"]) == (200, [])

            admin_only: list[tuple[str, str, Any]] = [
                ("GET", "/api/v1/consumers", None),
                ("POST", "/api/v1/consumers", {"id": "carol"}),
                ("POST", "/api/v1/consumers/alice/deposits", {"amount": 1}),
                ("POST", "/api/v1/consumers/alice/tokens", {}),
                ("GET", "/api/v1/consumers/alice/tokens", None),
                ("POST", "/api/v1/consumers/alice/tokens/AAAAAAAA/revoke", {}),
                ("GET", "/api/v1/sales", None),
                ("GET", "/api/v1/ledger/accounts", None),
                ("POST", "/api/v1/ledger/transfers", {"transfers": []}),
                ("GET", "/api/v1/ledger/checkpoint", None),
                ("GET", "/api/v1/plugins", None),
                ("GET", "/api/v1/pools", None),
            ]
            for method, path, body in admin_only:
                status, answer = await call(alice, method, path, body)
                assert (status, answer["error"]) == (403, "admin_only"), (method, path, answer)
        # A token that only looks like a consumer token gets the same 403 there: no oracle for tokens.
        async with as_token(m.buyer.url, "cpc_AAAAAAAA_" + "B" * 43) as forged:
            assert (await call(forged, "GET", "/api/v1/consumers"))[0] == 403
        status, order = await m.get(f"/api/v1/orders/{bobs['id']}")
        assert (status, order["state"]) == (200, "accepted")
        assert await m.consumer("bob") == bob_before
        status, everyone = await m.get("/api/v1/consumers")
        assert "carol" not in {c["id"] for c in everyone["consumers"]}


async def test_revoked_and_malformed_tokens_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A revoked token, and every malformed, unknown or wrong-secret token, is a 401 while the
    consumer's other token still works; listing tokens never shows a secret; unknown consumers and
    tokens are 404; no token or secret ever reaches the log."""
    caplog.set_level(logging.DEBUG)
    async with market(tmp_path) as m:
        await add_consumer(m, "bob")
        first, second = await issue(m), await issue(m)
        bobs = await issue(m, "bob")
        status, revoked = await m.post(f"/api/v1/consumers/alice/tokens/{first['id']}/revoke", {})
        assert (status, revoked["id"], revoked["consumer"]) == (200, first["id"], "alice")
        assert revoked["revoked_ts"] >= first["created_ts"]
        status, again = await m.post(f"/api/v1/consumers/alice/tokens/{first['id']}/revoke", {})
        assert (status, again) == (200, revoked)

        token_id, secret = first["id"], first["token"].split("_")[2]
        other_secret = second["token"].split("_")[2]
        refused = {
            first["token"]: "bad_consumer_token",  # revoked
            f"cpc_{second['id']}_{secret}": "bad_consumer_token",  # right id, wrong secret
            f"cpc_{second['id']}_{other_secret[:-1]}": "bad_consumer_token",  # secret too short
            f"cpc_{second['id']}_{other_secret}_x": "bad_consumer_token",  # a part too many
            f"cpc_{second['id']}{other_secret}": "bad_consumer_token",  # a part too few
            f"cpc_ZZZZZZZZ_{other_secret}": "bad_consumer_token",  # unknown id
            f"cpc_{token_id}x_{secret}": "bad_consumer_token",  # id too long
            "cpc_": "bad_consumer_token",
            f"{second['id']}_{other_secret}": "bad_admin_token",  # no prefix
            other_secret: "bad_admin_token",
        }
        for token, code in refused.items():
            async with as_token(m.buyer.url, token) as http:
                status, body = await call(http, "GET", "/api/v1/orders")
                assert (status, body["error"]) == (401, code), token
        async with aiohttp.ClientSession(m.buyer.url) as anonymous:
            status, body = await call(anonymous, "GET", "/api/v1/orders")
            assert (status, body["error"]) == (401, "admin_auth_required")
            async with anonymous.get(
                "/api/v1/offers", headers={"Authorization": f"Basic {second['token']}"}
            ) as r:
                assert r.status == 401
        async with as_token(m.buyer.url, second["token"]) as alice:
            assert (await call(alice, "GET", "/api/v1/orders"))[0] == 200

        status, listed = await m.get("/api/v1/consumers/alice/tokens")
        assert status == 200
        assert [(t["id"], t["revoked_ts"] is not None) for t in listed["tokens"]] == [
            (first["id"], True),
            (second["id"], False),
        ]
        assert all(set(t) == {"id", "consumer", "created_ts", "revoked_ts"} for t in listed["tokens"])
        assert secret not in str(listed)
        assert other_secret not in str(listed)

        status, body = await m.post(f"/api/v1/consumers/alice/tokens/{bobs['id']}/revoke", {})
        assert (status, body["error"]) == (404, "unknown_token")  # bob's token, named under alice
        status, body = await m.post("/api/v1/consumers/alice/tokens/NoSuchId/revoke", {})
        assert (status, body["error"]) == (404, "unknown_token")
        status, body = await m.post("/api/v1/consumers/alice/tokens/not-a-token-id/revoke", {})
        assert (status, body["error"]) == (404, "unknown_token")
        status, body = await m.post("/api/v1/consumers/nobody/tokens", {})
        assert (status, body["error"]) == (404, "unknown_consumer")
        status, body = await m.get("/api/v1/consumers/nobody/tokens")
        assert (status, body["error"]) == (404, "unknown_consumer")
        assert (await m.get("/api/v1/consumers/bob/tokens"))[1]["tokens"][0]["revoked_ts"] is None

        for row in stored_tokens(m):
            assert not any(s in str(v) for v in row.values() for s in (secret, other_secret))
    logged = caplog.text
    assert "api/v1/orders" in logged  # the access log was captured
    for issued in (first, second, bobs):
        assert issued["token"].split("_")[2] not in logged


async def test_a_revoke_through_one_replica_holds_on_every_replica(
    tmp_path: Path, db_urls: tuple[str | None, str | None]
) -> None:
    """A second replica of the buyer over the same database accepts a token issued through the
    first, and refuses it as soon as the first has revoked it."""
    async with market(tmp_path, db_urls) as m:
        config = m.buyer.settings.base_dir / "node.toml"
        async with running_node(config, frozenset({"api"})) as replica:
            issued = await issue(m)
            async with as_token(replica.url, issued["token"]) as alice:
                status, me = await call(alice, "GET", "/api/v1/consumers/alice")
                assert (status, me["id"]) == (200, "alice")
                status, body = await m.post(f"/api/v1/consumers/alice/tokens/{issued['id']}/revoke", {})
                assert status == 200, body
                status, body = await call(alice, "GET", "/api/v1/consumers/alice")
                assert (status, body["error"]) == (401, "bad_consumer_token")
