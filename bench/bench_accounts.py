"""Accounts benchmarks between two real nodes on loopback (SQLite), each against a baseline measured
in the same run.

1. What a credential costs per request: `GET /api/v1/whoami` with a consumer token (the token and
   the account's status read from the database, the permission table checked) against the same
   request with the admin token (compared in memory). p50 and ratio.
2. A partner's consumer at the seller: `GET /api/v1/whoami` on the buyer's assertion, signed with
   the consumer's key (assertion signature, request signature, nonce claimed in the database,
   federated account updated) against one signed peer round trip between the same nodes
   (`GET /fed/v1/catalog/head` with a session token). p50 and ratio.
3. The home node's answer to a partner's status check about 1,000 of its consumers (the partner's
   batch), the accounts read in one query per 500 (`store.get_many`), against the same answer with
   each account read alone, as it was before; rounds alternate, medians and their ratio.

Run: .venv/bin/python -m bench accounts
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from nacl.signing import SigningKey

from bench.report import bench_parser, emit_json, percentile_ms, time_awaits
from federation import store
from federation.assertions import present, status_document
from federation.keys import public_key_text
from federation.partners import Partner
from federation.sync import ensure_session
from node.accounts import federated_store
from node.accounts import store as accounts
from node.accounts.federated import Interconnect, account_state
from tests.support.federation import service_of
from tests.support.trading import market

REQUESTS = 400
STATUS_ACCOUNTS = 1000
STATUS_ROUNDS = 10


async def _answer_one_by_one(
    interconnect: Interconnect, partner: Partner, subjects: list[str]
) -> dict[str, Any]:
    """The status answer as it was before: each account read with its own query."""
    engine = interconnect.ctx.engine
    seen = await asyncio.to_thread(federated_store.seen_by, engine, partner.name, subjects)
    states = [
        account_state(await asyncio.to_thread(accounts.get, engine, "consumer", s)) for s in sorted(seen)
    ]
    identity = interconnect.service.identity()
    return status_document(identity.node, identity.key, partner.name, states, interconnect.service.clock())


async def status_answers(interconnect: Interconnect, partner: Partner) -> dict[str, Any]:
    """Median seconds of the status answer about STATUS_ACCOUNTS consumers, read at once and one by
    one, in alternating rounds (the answers checked equal)."""
    engine = interconnect.ctx.engine
    names = [f"c{i:04}" for i in range(STATUS_ACCOUNTS)]
    now = accounts.now_ms()
    for name in names:
        accounts.created(engine, "consumer", name, "admin", now)
        federated_store.saw(engine, name, partner.name, now)
    at_once = await interconnect.answer_statuses(partner, names)
    assert at_once["accounts"] == (await _answer_one_by_one(interconnect, partner, names))["accounts"]
    assert len(at_once["accounts"]) == STATUS_ACCOUNTS
    after: list[float] = []
    before: list[float] = []
    for _ in range(STATUS_ROUNDS):
        after += await time_awaits(1, lambda: interconnect.answer_statuses(partner, names))
        before += await time_awaits(1, lambda: _answer_one_by_one(interconnect, partner, names))
    return {
        "status_answer_1000_at_once_ms": percentile_ms(after, 0.5),
        "status_answer_1000_one_by_one_ms": percentile_ms(before, 0.5),
        "one_by_one_over_at_once": round(percentile_ms(before, 0.5) / percentile_ms(after, 0.5), 2),
    }


async def run(tmp: Path) -> dict[str, Any]:
    """Both measurements on one pair of nodes."""
    async with market(tmp) as m:
        buyer, seller = m.buyer, m.seller
        assert buyer.ctx is not None
        assert seller.ctx is not None
        status, issued = await m.post("/api/v1/consumers/alice/tokens", {})
        assert status == 201, issued
        key = SigningKey.generate()
        async with aiohttp.ClientSession(buyer.url) as http:
            headers = {"Authorization": f"Bearer {issued['token']}"}
            async with http.post(
                "/api/v1/account-assertions",
                json={"audience": seller.ctx.name, "public_key": public_key_text(key.verify_key)},
                headers=headers,
            ) as response:
                assert response.status == 201, await response.text()
                assertion = await response.json()

            async def whoami(token: str) -> None:
                async with http.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}) as r:
                    assert r.status == 200, await r.text()
                    await r.read()

            admin_token = buyer.ctx.admin_token
            admin = await time_awaits(REQUESTS, lambda: whoami(admin_token))
            consumer = await time_awaits(REQUESTS, lambda: whoami(issued["token"]))

        service = service_of(buyer)
        partner = store.get_partner(buyer.ctx.engine, seller.ctx.name)
        assert partner is not None
        token = await ensure_session(service, partner)
        client = service.client(partner)

        async def peer() -> None:
            response = await client.request("GET", "/fed/v1/catalog/head", token=token)
            assert response.status == 200

        url = seller.url + "/api/v1/whoami"
        async with aiohttp.ClientSession() as http:

            async def federated() -> None:
                headers = present(assertion, key, "GET", url, b"", int(time.time()))
                async with http.get(url, headers=headers) as r:
                    assert r.status == 200, await r.text()
                    await r.read()

            trips = await time_awaits(REQUESTS, peer)
            assertions = await time_awaits(REQUESTS, federated)
        seller_partner = store.get_partner(buyer.ctx.engine, seller.ctx.name)
        assert seller_partner is not None
        answers = await status_answers(Interconnect(buyer.ctx, service), seller_partner)
    figures = {
        "admin_token_p50_ms": percentile_ms(admin, 0.5),
        "consumer_token_p50_ms": percentile_ms(consumer, 0.5),
        "signed_peer_round_trip_p50_ms": percentile_ms(trips, 0.5),
        "federated_request_p50_ms": percentile_ms(assertions, 0.5),
    }
    figures["consumer_over_admin"] = round(
        figures["consumer_token_p50_ms"] / figures["admin_token_p50_ms"], 2
    )
    figures["federated_over_peer"] = round(
        figures["federated_request_p50_ms"] / figures["signed_peer_round_trip_p50_ms"], 2
    )
    return {**figures, **answers}


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    return bench_parser(
        "What a credential costs per request, own and a partner's consumer; a status answer for 1,000."
    )


def main() -> None:
    """Run the benchmark and print its figures."""
    args = build_parser().parse_args()
    with tempfile.TemporaryDirectory(prefix="cpnode-bench-accounts-") as tmp:
        figures = asyncio.run(run(Path(tmp)))
    for name, value in figures.items():
        print(f"{name:32} {value}")
    if args.json:
        emit_json("accounts", figures)


if __name__ == "__main__":
    main()
