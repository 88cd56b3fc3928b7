"""The API the console reads: `/api/v1/partners` and `/api/v1/partners/links` (the operator's view of partners, pinning,
trusting, removing; consumers refused; bad input changes nothing; the listing as the stored partners hold it), `/api/v1/whoami`, `limit` and
`state` on `/api/v1/orders`, and `/api/v1/trading/summary`."""

from __future__ import annotations

import json
from pathlib import Path

from nacl.signing import SigningKey
from sqlalchemy.engine import Engine

from federation import store
from federation.keys import fingerprint, parse_public_key, public_key_text
from federation.partners import Agreement, Partner
from federation.tables import partners_t
from node.db import write_transaction
from node.peering.partners import partner_rows
from tests.support.cli import cpnode_async
from tests.support.console import LOOPBACK_PARTNERS
from tests.support.tasks import pool_node


async def test_partners_are_listed_pinned_and_removed_by_the_admin_only(tmp_path: Path) -> None:
    """Pin (201), see it with its link state, refuse a duplicate (409) and a consumer (403), remove it."""
    async with pool_node(tmp_path, extra_toml=LOOPBACK_PARTNERS) as node:
        assert node.server.ctx is not None
        key = node.server.ctx.identity.public_key
        body = {"name": "peer", "urls": ["http://127.0.0.1:9/"], "public_key": key, "credit_limit": 500}
        status, pinned = await node.call("POST", "/api/v1/partners", body)
        assert status == 201, pinned
        assert pinned["fingerprint"].startswith("SHA256:")
        status, listing = await node.call("GET", "/api/v1/partners")
        assert status == 200
        [row] = listing["partners"]
        assert (row["name"], row["status"], row["catalog_version"], row["source"]) == (
            "peer",
            "never",
            None,
            "api",
        )
        assert listing["alerts"] == []
        assert listing["discovered"] == []
        status, links = await node.call("GET", "/api/v1/partners/links")
        assert status == 200, links
        assert links["counts"] == {"never": 1}
        assert links["alerts"] == []
        assert links["partners"] == [
            {
                "name": "peer",
                "status": "never",
                "failures": 0,
                "last_error": None,
                "last_success_ts": None,
                "catalog_version": None,
                "catalog_age_s": None,
                "offers": 0,
            }
        ]
        status, answer = await node.call("POST", "/api/v1/partners", body)
        assert (status, answer["error"]) == (409, "conflict")
        _, token = await node.call("POST", "/api/v1/consumers/alice/tokens")
        for method, path, payload in (
            ("GET", "/api/v1/partners", None),
            ("GET", "/api/v1/partners/links", None),
            ("POST", "/api/v1/partners/peer/remove", None),
            ("POST", "/api/v1/partners", {**body, "name": "other"}),
        ):
            status, answer = await node.call(method, path, payload, token=token["token"])
            assert (status, answer["error"]) == (403, "admin_only")
        status, answer = await node.call("POST", "/api/v1/partners/peer/remove")
        assert (status, answer) == (200, {"removed": "peer"})
        status, answer = await node.call("POST", "/api/v1/partners/peer/remove")
        assert status == 404


async def test_bad_partners_are_refused_and_nothing_is_pinned(tmp_path: Path) -> None:
    """A bad key, a bad name, a URL of another scheme or a link-local address or an unknown candidate: a 4xx,
    and the partner list stays empty."""
    async with pool_node(tmp_path, extra_toml=LOOPBACK_PARTNERS) as node:
        assert node.server.ctx is not None
        key = node.server.ctx.identity.public_key
        good = {"name": "peer", "urls": ["http://127.0.0.1:9/"], "public_key": key}
        changes: tuple[dict[str, object], ...] = (
            {"public_key": "ed25519:nope"},
            {"name": "Not A Name"},
            {"urls": []},
            {"urls": ["ftp://127.0.0.1/"]},
            {"urls": ["http://169.254.169.254/"]},
            {"credit_limit": -1},
            {"extra": 1},
        )
        for change in changes:
            status, answer = await node.call("POST", "/api/v1/partners", {**good, **change})
            assert 400 <= status < 500, (change, answer)
        status, answer = await node.call(
            "POST", "/api/v1/partners/trust", {"name": "ghost", "fingerprint": "SHA256:x"}
        )
        assert status == 404, answer
        _, listing = await node.call("GET", "/api/v1/partners")
        assert listing["partners"] == []


async def test_whoami_names_the_admin_or_the_consumer_and_refuses_bad_tokens(tmp_path: Path) -> None:
    """The admin token is the admin; a consumer token is its consumer; a revoked one is a 401."""
    async with pool_node(tmp_path) as node:
        assert await node.call("GET", "/api/v1/whoami") == (
            200,
            {"admin": True, "consumer": None, "role": "admin", "user": None},
        )
        _, token = await node.call("POST", "/api/v1/consumers/alice/tokens")
        assert await node.call("GET", "/api/v1/whoami", token=token["token"]) == (
            200,
            {"admin": False, "consumer": "alice", "role": "consumer", "user": None},
        )
        await node.call("POST", f"/api/v1/consumers/alice/tokens/{token['id']}/revoke")
        status, answer = await node.call("GET", "/api/v1/whoami", token=token["token"])
        assert (status, answer["error"]) == (401, "bad_consumer_token")


async def test_orders_are_listed_by_state_and_limit_and_the_day_is_summed(
    tmp_path: Path, db_url: str
) -> None:
    """Three orders, one cancelled: `limit` keeps the newest, `state` filters, a bad limit is a
    400; the summary counts and sums what was created since a moment, and is for the admin only
    (SQLite and PostgreSQL)."""
    database = None if db_url.startswith("sqlite") else db_url
    async with pool_node(tmp_path, db_url=database, slots=4) as node:
        placed = []
        for _ in range(3):
            status, order = await node.call(
                "POST",
                "/api/v1/orders",
                {
                    "consumer": "alice",
                    "offer_id": "cpu/local/local-1",
                    "source": "own:connectors",
                    "units": 1,
                    "hours": 1,
                },
            )
            assert status == 201, order
            placed.append(order)
        status, _ = await node.call("POST", f"/api/v1/orders/{placed[0]['id']}/cancel", {})
        assert status == 200
        _, newest = await node.call("GET", "/api/v1/orders?limit=2")
        assert len(newest["orders"]) == 2
        _, cancelled = await node.call("GET", "/api/v1/orders?state=cancelled")
        assert [o["id"] for o in cancelled["orders"]] == [placed[0]["id"]]
        status, answer = await node.call("GET", "/api/v1/orders?limit=-1")
        assert (status, answer["field"]) == (400, "limit")
        _, summary = await node.call("GET", f"/api/v1/trading/summary?since_ts={placed[0]['created_ts']}")
        assert summary["orders"]["count"] == 3
        assert summary["orders"]["amount"] == {"CNY": sum(o["amount"] for o in placed)}
        assert summary["sales"] == {"count": 0, "amount": {}, "settled": {}, "fees": {}}
        _, later = await node.call("GET", f"/api/v1/trading/summary?since_ts={placed[-1]['created_ts'] + 1}")
        assert later["orders"]["count"] == 0
        _, token = await node.call("POST", "/api/v1/consumers/alice/tokens")
        status, answer = await node.call("GET", "/api/v1/trading/summary", token=token["token"])
        assert status == 403


async def test_whoami_names_the_role_and_user_in_the_api_and_the_cli(tmp_path: Path) -> None:
    """A staff user's token names its role and user; `cpnode whoami` shows the admin token by
    default and the user's with --token-file, in JSON and in text."""
    async with pool_node(tmp_path) as node:
        _, user = await node.call("POST", "/api/v1/users", {"name": "ann", "role": "auditor"})
        status, who = await node.call("GET", "/api/v1/whoami", token=user["token"])
        assert (status, who) == (200, {"admin": True, "consumer": None, "role": "auditor", "user": "ann"})
        config = node.server.settings.base_dir / "node.toml"
        done = await cpnode_async("whoami", "--json", config=config)
        assert done.code == 0, done.output
        assert json.loads(done.out) == {"admin": True, "consumer": None, "role": "admin", "user": None}
        token_file = tmp_path / "ann.token"
        token_file.write_text(user["token"] + "\n", encoding="utf-8")
        done = await cpnode_async("whoami", "--token-file", str(token_file), config=config)
        assert done.code == 0, done.output
        assert "user ann (auditor)" in done.out
        token_file.write_text("cpu_not_a_token\n", encoding="utf-8")
        done = await cpnode_async("whoami", "--token-file", str(token_file), config=config)
        assert done.code != 0
        assert "401" in done.output or "token" in done.output


def test_the_partner_listing_shows_what_the_stored_partners_hold(engine: Engine) -> None:
    """Each row's URLs, fingerprint and agreement are those of the partner as parsed and checked
    (federation.store.list_partners), in the same key order; an agreement stored before a field
    existed shows that field's default; link state comes from the sync state."""
    now = 1_700_000_000
    full = Agreement(
        pools=("pool-a",),
        tags=("gpu",),
        price_list={"o1": 5},
        markup_bp=250,
        credit_limit=900,
        currency="USD",
        republish=True,
        relay=("*",),
    )
    for n, agreement in enumerate((Agreement(), full)):
        key = public_key_text(SigningKey.generate().verify_key)
        store.add_partner(engine, Partner(f"p{n}", (f"http://127.0.0.1:{9000 + n}",), key, agreement), now)
    store.put_sync_state(
        engine, "p1", status="failing", failures=3, last_error="refused", last_success_ts=now
    )
    with write_transaction(engine) as conn:  # as stored before `republish` and `relay` existed
        old = json.dumps({"credit_limit": 7, "currency": "CNY"})
        conn.execute(partners_t.update().where(partners_t.c.name == "p0").values(agreement_json=old))
    rows = partner_rows(engine, now)
    parsed = store.list_partners(engine)
    assert [row["name"] for row in rows] == ["p0", "p1"]
    for row, partner in zip(rows, parsed, strict=True):
        assert row["urls"] == list(partner.urls)
        assert row["fingerprint"] == fingerprint(parse_public_key(partner.public_key))
        assert list(row["agreement"].items()) == list(partner.agreement.to_json().items())
    assert rows[0]["agreement"]["credit_limit"] == 7
    assert (rows[1]["status"], rows[1]["failures"], rows[1]["last_error"]) == ("failing", 3, "refused")
    assert (rows[0]["status"], rows[0]["catalog_version"], rows[0]["offers"]) == ("never", None, 0)
