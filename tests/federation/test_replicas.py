"""Two replicas of one node sharing one database (in-process servers, and `cpnode run` processes),
on both backends: a signed request is accepted once whichever replica it reaches, a partner's
trades in flight are limited over both replicas (and a dead replica's claims lapse), and catalog
versions issued by either replica only rise."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
import sqlalchemy as sa

from federation import claims, nonces, store
from federation.catalog import offers_for
from federation.nonces import RecentNonces
from federation.tables import claims_t
from node.config import load_settings
from node.db import make_engine, upgrade
from node.offers import CatalogOffer
from node.peering.component import PURGE_JOB
from node.ports import free_port
from tests.federation import replicas
from tests.federation.replicas import Replicas, replica_config, replica_pair
from tests.support.federation import FakePeer, Recorder, trade_body
from tests.support.nodes import NodeProcess
from tests.support.polling import eventually

CHALLENGE = "/fed/v1/login/challenge"
TRADES = "/fed/v1/trades"
DEADLINE_S = 10.0


@pytest.fixture(name="pair")
async def fixture_pair(tmp_path: Path, db_url: str, fake_peer: FakePeer) -> AsyncIterator[Replicas]:
    """Replicas A and B of node alpha on one database, pinning the fake peer as a partner."""
    async with replica_pair(tmp_path, db_url) as pair:
        assert pair.a.ctx is not None
        store.add_partner(pair.a.ctx.engine, fake_peer.partner(), int(time.time()))
        yield pair


def count_rows(pair: Replicas, table: str) -> int:
    """Rows in one of the node's tables."""
    assert pair.a.ctx is not None
    with pair.a.ctx.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


async def signed_post(
    peer: FakePeer, pair: Replicas, which: str, path: str, body: bytes, token: str | None = None
) -> tuple[int, Any]:
    """POST `body`, signed for the node's public URL, to replica `which`."""
    headers = peer.sign("POST", pair.public_url + path, body, token=token)
    return await peer.send("POST", pair.url(which) + path, body, headers)


async def test_request_replayed_to_the_other_replica_is_refused(pair: Replicas, fake_peer: FakePeer) -> None:
    """A request signed once and accepted by replica A is refused as replayed by replica B (and by A
    again), and the replay stores nothing."""
    url = pair.public_url + CHALLENGE
    headers = fake_peer.sign("POST", url)
    status, _ = await fake_peer.send("POST", pair.a_url + CHALLENGE, b"", headers)
    assert status == 200
    assert count_rows(pair, "fed_challenges") == 1
    for which in ("b", "a", "b"):
        status, answer = await fake_peer.send("POST", pair.url(which) + CHALLENGE, b"", headers)
        assert (status, answer["error"]) == (401, "replayed"), which
    assert count_rows(pair, "fed_challenges") == 1
    # The other way round: first seen by B, replayed to A.
    headers = fake_peer.sign("POST", url)
    assert (await fake_peer.send("POST", pair.b_url + CHALLENGE, b"", headers))[0] == 200
    status, answer = await fake_peer.send("POST", pair.a_url + CHALLENGE, b"", headers)
    assert (status, answer["error"]) == (401, "replayed")
    assert count_rows(pair, "fed_challenges") == 2


async def test_trade_replayed_to_the_other_replica_runs_once(pair: Replicas, fake_peer: FakePeer) -> None:
    """A trade request replayed byte for byte to the other replica is refused without running the trade;
    re-sent under a new signature it gets the stored answer from either replica."""
    recorder = Recorder()
    for service in pair.services():
        service.trade_handler = recorder
    token = await fake_peer.login(pair.a_url, "alpha")
    body = trade_body(fake_peer, "t-1")
    headers = fake_peer.sign("POST", pair.public_url + TRADES, body, token=token)
    first = await fake_peer.send("POST", pair.a_url + TRADES, body, headers)
    assert first[0] == 201
    status, answer = await fake_peer.send("POST", pair.b_url + TRADES, body, headers)
    assert (status, answer["error"]) == (401, "replayed")
    assert recorder.calls == 1
    for which in ("b", "a"):
        assert await signed_post(fake_peer, pair, which, TRADES, body, token) == first
    assert recorder.calls == 1
    assert count_rows(pair, "fed_trade_requests") == 1


async def test_front_cache_never_admits_a_replay(pair: Replicas, fake_peer: FakePeer) -> None:
    """With the in-process nonce cache too small to remember, a replay to the same replica is still
    refused: the database decides."""
    service_a, _ = pair.services()
    service_a.recent_nonces = RecentNonces(max_entries=2)
    url = pair.public_url + CHALLENGE
    first = fake_peer.sign("POST", url)
    assert (await fake_peer.send("POST", pair.a_url + CHALLENGE, b"", first))[0] == 200
    for _ in range(4):
        assert (await fake_peer.send("POST", pair.a_url + CHALLENGE, b"", fake_peer.sign("POST", url)))[
            0
        ] == 200
    assert len(service_a.recent_nonces) <= 2
    status, answer = await fake_peer.send("POST", pair.a_url + CHALLENGE, b"", first)
    assert (status, answer["error"]) == (401, "replayed")


async def test_trades_in_flight_are_limited_across_replicas(pair: Replicas, fake_peer: FakePeer) -> None:
    """While a partner's trade runs on replica A, a second trade on replica B is 429 and the same trade id
    on B is 429 `trade_in_progress`; once A answers, B takes the next trade."""
    recorder = Recorder()
    for service in pair.services():
        service.trade_handler = recorder
    token = await fake_peer.login(pair.a_url, "alpha")
    assert pair.a.ctx is not None
    engine = pair.a.ctx.engine
    t1 = trade_body(fake_peer, "t-1")
    recorder.release.clear()
    pending = asyncio.ensure_future(signed_post(fake_peer, pair, "a", TRADES, t1, token))
    try:
        await asyncio.wait_for(recorder.entered.wait(), DEADLINE_S)
        assert claims.in_progress(engine, "mallory", int(time.time())) == ["t-1"]
        t2 = trade_body(fake_peer, "t-2")
        status, answer = await signed_post(fake_peer, pair, "b", TRADES, t2, token)
        assert (status, answer["error"]) == (429, "rate_limited")
        status, answer = await signed_post(fake_peer, pair, "b", TRADES, t1, token)
        assert (status, answer["error"]) == (429, "trade_in_progress")
    finally:
        recorder.release.set()
    assert (await pending)[0] == 201
    assert claims.in_progress(engine, "mallory", int(time.time())) == []
    status, answer = await signed_post(fake_peer, pair, "b", TRADES, t2, token)
    assert (status, answer["trade_id"]) == (201, "t-2")
    assert recorder.calls == 2
    assert store.get_trade(engine, "mallory", "t-2") is not None


async def test_dead_replicas_claim_lapses(pair: Replicas, fake_peer: FakePeer) -> None:
    """A claim left by a replica that died mid-trade blocks the partner only until it lapses; then the
    other replica takes trades again, and the dead claim is purged."""
    recorder = Recorder()
    _, service_b = pair.services()
    service_b.trade_handler = recorder
    token = await fake_peer.login(pair.a_url, "alpha")
    assert pair.a.ctx is not None
    engine = pair.a.ctx.engine
    now = int(time.time())
    ttl_s = service_b.settings.trade_claim_ttl_s
    assert claims.claim_trade(engine, "mallory", "t-dead", "0" * 64, "dead-replica", now, ttl_s, 1) is None
    status, answer = await signed_post(fake_peer, pair, "b", TRADES, trade_body(fake_peer, "t-2"), token)
    assert (status, answer["error"]) == (429, "rate_limited")
    service_b.clock = lambda: int(time.time()) + ttl_s + 1
    status, _ = await signed_post(fake_peer, pair, "b", TRADES, trade_body(fake_peer, "t-2"), token)
    assert status == 201
    assert await service_b.purge_expired() == (0, 1)
    assert count_rows(pair, "fed_trade_claims") == 0


async def test_running_trade_keeps_its_claim(pair: Replicas, fake_peer: FakePeer) -> None:
    """While a trade's handler runs, its replica keeps pushing the claim's expiry forward, so a live
    replica's long trade does not lapse."""
    recorder = Recorder()
    service_a, _ = pair.services()
    service_a.trade_handler = recorder
    service_a.settings = dataclasses.replace(service_a.settings, trade_claim_ttl_s=3)
    token = await fake_peer.login(pair.a_url, "alpha")
    recorder.release.clear()
    pending = asyncio.ensure_future(
        signed_post(fake_peer, pair, "a", TRADES, trade_body(fake_peer, "t-1"), token)
    )
    await asyncio.wait_for(recorder.entered.wait(), DEADLINE_S)
    assert pair.a.ctx is not None
    engine = pair.a.ctx.engine

    def expiry() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(claims_t.c.expires_ts)).scalar_one())

    first = expiry()
    try:
        await eventually(lambda: expiry() > first, DEADLINE_S, "the claim renewed")
    finally:
        recorder.release.set()
    assert (await pending)[0] == 201
    assert count_rows(pair, "fed_trade_claims") == 0


async def head(peer: FakePeer, pair: Replicas, which: str, token: str) -> dict[str, Any]:
    """The catalog head replica `which` answers the fake peer."""
    path = "/fed/v1/catalog/head"
    headers = peer.sign("GET", pair.public_url + path, token=token)
    status, answer = await peer.send("GET", pair.url(which) + path, b"", headers)
    assert status == 200, answer
    return dict(answer)


async def test_catalog_versions_are_cached_and_only_rise(
    pair: Replicas, fake_peer: FakePeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Repeated head polls on either replica give the same version without filtering and hashing the
    offers again; a changed offer gives a new version; a replica whose cache predates another replica's
    newer version never answers with its older one."""
    assert pair.a.ctx is not None
    assert pair.b.ctx is not None
    base = await pair.a.ctx.offer_sources["config"]()
    views: dict[str, list[dict[str, Any]]] = {"a": [dict(o) for o in base], "b": [dict(o) for o in base]}
    for which, server in (("a", pair.a), ("b", pair.b)):
        assert server.ctx is not None

        async def source(which: str = which) -> list[CatalogOffer]:
            return [cast(CatalogOffer, dict(offer)) for offer in views[which]]

        server.ctx.offer_sources["config"] = source  # no content version: the fingerprint path
    filtered = []

    def counting_offers_for(*args: Any) -> Any:
        filtered.append(1)
        return offers_for(*args)

    monkeypatch.setattr("federation.issuing.offers_for", counting_offers_for)
    token = await fake_peer.login(pair.a_url, "alpha")
    polls = [await head(fake_peer, pair, which, token) for which in ("a", "a", "b", "b", "a")]
    assert {(h["version"], h["sha256"]) for h in polls} == {(1, polls[0]["sha256"])}
    assert len(filtered) == 2  # once per replica
    for view in views.values():
        view[0]["free_units"] += 5
    changed = [await head(fake_peer, pair, which, token) for which in ("b", "a", "a")]
    assert [h["version"] for h in changed] == [2, 2, 2]
    assert changed[0]["sha256"] != polls[0]["sha256"]
    # Only B's view goes back to the first offers: B issues version 3, and A (whose cache last saw
    # version 2's content) follows with 4 for its own view, never answering an older version.
    views["b"][0]["free_units"] -= 5
    assert (await head(fake_peer, pair, "b", token))["version"] == 3
    assert (await head(fake_peer, pair, "a", token))["version"] == 4
    path = "/fed/v1/catalog"
    headers = fake_peer.sign("GET", pair.public_url + path, token=token)
    status, body = await fake_peer.send("GET", pair.a_url + path, b"", headers)
    assert status == 200
    assert body["version"] == 4
    assert [offer["free_units"] for offer in body["offers"]] == [
        base[0]["free_units"] + 5,
        base[1]["free_units"],
    ]


async def test_versioned_offer_source_is_not_called_on_unchanged_polls(
    pair: Replicas, fake_peer: FakePeer
) -> None:
    """With offer sources that declare a content version (config offers do), an unchanged poll does not
    call the source at all; replacing the offers gives a new version on both replicas."""
    from node.peering.offers import ConfigOffers

    assert pair.a.ctx is not None
    assert pair.b.ctx is not None
    base = await pair.a.ctx.offer_sources["config"]()

    class Counted(ConfigOffers):
        calls = 0

        async def __call__(self) -> list[CatalogOffer]:
            Counted.calls += 1
            return await super().__call__()

    for server in (pair.a, pair.b):
        assert server.ctx is not None
        server.ctx.offer_sources["config"] = Counted(base)
    token = await fake_peer.login(pair.a_url, "alpha")
    first = [await head(fake_peer, pair, which, token) for which in ("a", "b")]
    calls = Counted.calls
    again = [await head(fake_peer, pair, which, token) for which in ("a", "b", "a", "b")]
    assert Counted.calls == calls
    assert {h["version"] for h in first + again} == {1}
    cheaper = [{**offer, "price_per_unit_hour": offer["price_per_unit_hour"] - 1} for offer in base]
    for server in (pair.a, pair.b):
        assert server.ctx is not None
        server.ctx.offer_sources["config"] = Counted(cheaper)
    after = [await head(fake_peer, pair, which, token) for which in ("a", "b")]
    assert [h["version"] for h in after] == [2, 2]
    assert after[0]["sha256"] == after[1]["sha256"] != first[0]["sha256"]


async def test_two_node_processes_share_replay_protection(
    tmp_path: Path, db_url: str, fake_peer: FakePeer
) -> None:
    """Two `cpnode run` processes of one node (one folder, key and database): a request accepted by one
    process is refused as replayed by the other."""
    config, port_a = replica_config(tmp_path, db_url)
    engine = make_engine(load_settings(config, environ={}).database_url)
    try:
        upgrade(engine)
        store.add_partner(engine, fake_peer.partner(), int(time.time()))
    finally:
        engine.dispose()
    port_b = free_port()
    processes = [NodeProcess(config, env={"CPNODE_HTTP_PORT": str(port)}) for port in (port_a, port_b)]
    try:
        for process in processes:
            await asyncio.to_thread(process.start)
        public = f"http://127.0.0.1:{port_a}"
        urls = [public, f"http://127.0.0.1:{port_b}"]
        for first, second in ((0, 1), (1, 0)):
            headers = fake_peer.sign("POST", public + CHALLENGE)
            assert (await fake_peer.send("POST", urls[first] + CHALLENGE, b"", headers))[0] == 200
            status, answer = await fake_peer.send("POST", urls[second] + CHALLENGE, b"", headers)
            assert (status, answer["error"]) == (401, "replayed")
        for process in processes:
            assert await asyncio.to_thread(process.stop) == 0
    finally:
        for process in processes:
            process.kill()


async def test_purge_job_deletes_only_expired_state(pair: Replicas, fake_peer: FakePeer) -> None:
    """The node's scheduled `federation.purge` job deletes expired nonces and lapsed claims and keeps
    live ones, so a replay inside its window is still refused afterwards."""
    assert pair.a.ctx is not None
    engine = pair.a.ctx.engine
    now = int(time.time())
    assert nonces.claim_nonce(engine, fake_peer.identity.kid, "long-gone-nonce", now - 10, now - 400)
    assert claims.claim_trade(engine, "mallory", "t-old", "0" * 64, "gone", now - 100, 30, 1) is None
    headers = fake_peer.sign("POST", pair.public_url + CHALLENGE)
    assert (await fake_peer.send("POST", pair.a_url + CHALLENGE, b"", headers))[0] == 200
    assert await pair.a.ctx.scheduler.run_job(PURGE_JOB) == "ok"
    assert count_rows(pair, "fed_seen_nonces") == 1
    assert count_rows(pair, "fed_trade_claims") == 0
    status, answer = await fake_peer.send("POST", pair.b_url + CHALLENGE, b"", headers)
    assert (status, answer["error"]) == (401, "replayed")


async def test_replica_a_moves_to_another_port_when_its_port_was_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pair's public port may be taken by another test between choosing and binding it: replica
    A then listens on another free port, and the node's public URL names that one."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = int(taken.getsockname()[1])
    ports = iter([busy])
    monkeypatch.setattr(replicas, "free_port", lambda: next(ports, None) or free_port())
    try:
        async with replica_pair(tmp_path) as pair:
            assert pair.a.url != f"http://127.0.0.1:{busy}"
            assert pair.a.url.startswith("http://127.0.0.1:")
            async with aiohttp.ClientSession() as http, http.get(pair.a_url + "/healthz") as answer:
                assert answer.status == 200
    finally:
        taken.close()
