"""The ledger inside a running node (real HTTP on 127.0.0.1): the admin API, its errors, and the
scheduled checkpoint and sweep jobs, on both backends."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from ledger import verify_checkpoint
from node.config import load_settings
from node.identity import load_identity
from tests.support.nodes import make_node_dir, running_node
from tests.support.polling import eventually

NO_TIMED_CHECKPOINT = "[ledger]\ncheckpoint_every_s = 86400\n"

FAST = "[ledger]\ncheckpoint_every_transfers = 2\ncheckpoint_every_s = 0.2\nsweep_every_s = 0.2\n"


async def test_admin_api(tmp_path: Path, db_url: str) -> None:
    """Accounts and a batch of transfers go in over HTTP; results, reads and bad input come back as JSON."""
    # No timed checkpoint while the test runs, however slow a loaded machine makes it.
    config = make_node_dir(tmp_path, "alpha", db_url=db_url, extra_toml=NO_TIMED_CHECKPOINT)
    async with running_node(config) as server, aiohttp.ClientSession(server.url) as http:
        assert server.ctx is not None
        admin = {"Authorization": f"Bearer {server.ctx.admin_token}"}
        # Asked before any transfer: the first checkpoint is due as soon as the log holds one.
        async with http.get("/api/v1/ledger/checkpoint", headers=admin) as r:
            assert (r.status, (await r.json())["error"]) == (404, "no_checkpoint")
        accounts = {
            "accounts": [
                {"id": "bank", "currency": "CNY", "kind": "external"},
                {
                    "id": "alice",
                    "currency": "CNY",
                    "kind": "consumer",
                    "debits_must_not_exceed_credits": True,
                },
            ]
        }
        async with http.post("/api/v1/ledger/accounts", json=accounts, headers=admin) as r:
            assert r.status == 200
            assert [x["status"] for x in (await r.json())["results"]] == ["created", "created"]
        batch = {
            "transfers": [
                {
                    "id": "t1",
                    "kind": "single",
                    "debit_account": "bank",
                    "credit_account": "alice",
                    "currency": "CNY",
                    "amount": 500,
                },
                {
                    "id": "t2",
                    "kind": "single",
                    "debit_account": "alice",
                    "credit_account": "bank",
                    "currency": "CNY",
                    "amount": 900,
                },
            ]
        }
        async with http.post("/api/v1/ledger/transfers", json=batch, headers=admin) as r:
            assert r.status == 200
            assert [(x["status"], x["seq"]) for x in (await r.json())["results"]] == [
                ("created", 0),
                ("exceeds_credits", None),
            ]
        async with http.get("/api/v1/ledger/transfers/t1", headers=admin) as r:
            assert (r.status, (await r.json())["amount"]) == (200, 500)
        async with http.get("/api/v1/ledger/transfers/t2", headers=admin) as r:
            assert (r.status, (await r.json())["error"]) == (404, "transfer_failed")
        async with http.get("/api/v1/ledger/accounts?id=alice", headers=admin) as r:
            [alice] = (await r.json())["accounts"]
            assert alice["credits_posted"] == 500
        for body, code in (
            (b"{", "bad_json"),
            (b'{"transfers": []}', "too_many_items"),
            (b'{"transfers": [{"id": "x", "kind": "refund"}]}', "invalid_request"),
            (b'{"transfers": [{"id": "x", "kind": "single", "colour": 1}]}', "invalid_request"),
            (b'{"other": []}', "bad_request"),
        ):
            async with http.post("/api/v1/ledger/transfers", data=body, headers=admin) as r:
                assert (r.status, (await r.json())["error"]) == (400, code), body
        async with http.post("/api/v1/ledger/transfers", json=batch) as r:
            assert r.status == 401


async def test_scheduled_checkpoints_and_sweeps(tmp_path: Path, db_url: str) -> None:
    """The node's jobs sign a checkpoint once transfers arrive and expire a hold after its deadline."""
    config = make_node_dir(tmp_path, "alpha", db_url=db_url, extra_toml=FAST)
    key = load_identity(load_settings(config, environ={})).signing_key.verify_key
    async with running_node(config) as server, aiohttp.ClientSession(server.url) as http:
        assert server.ctx is not None
        admin = {"Authorization": f"Bearer {server.ctx.admin_token}"}
        accounts = {
            "accounts": [
                {"id": "a", "currency": "CNY", "kind": "provider"},
                {"id": "b", "currency": "CNY", "kind": "provider"},
            ]
        }
        async with http.post("/api/v1/ledger/accounts", json=accounts, headers=admin) as r:
            assert r.status == 200
        hold = {
            "id": "h1",
            "kind": "pending",
            "debit_account": "a",
            "credit_account": "b",
            "currency": "CNY",
            "amount": 5,
            "timeout_s": 1,
        }
        async with http.post("/api/v1/ledger/transfers", json={"transfers": [hold]}, headers=admin) as r:
            assert (await r.json())["results"][0]["status"] == "created"

        async def expired() -> bool:
            async with http.get("/api/v1/ledger/transfers/~expire:h1", headers=admin) as r:
                return r.status == 200

        async def checkpoint_covers_expiry() -> bool:
            async with http.get("/api/v1/ledger/checkpoint", headers=admin) as r:
                if r.status != 200:
                    return False
                return verify_checkpoint((await r.text()).encode(), key).size == 2

        await eventually(expired)
        await eventually(checkpoint_covers_expiry)
