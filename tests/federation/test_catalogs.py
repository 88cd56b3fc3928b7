"""Checklist cases 17–20, 23, 26 and 28: catalogs a fake partner serves to a real node's sync job,
and 5 and 27 for trades. Each refused catalog leaves the last good one in place and records why."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from nacl.signing import SigningKey

from federation import canonical, store
from federation.catalog import CATALOG_TYPE, sha256_hex
from federation.documents import sign_document
from federation.nonces import RecentNonces
from federation.partners import Partner
from federation.sync import run_round
from node.service import NodeServer
from tests.support.federation import FakePeer, Recorder, nodes, service_of, trade_body

SLOW_TOML = """
request_timeout_s = 0.5
partner_timeout_s = 2.0
max_catalog_bytes = 65536
max_catalog_offers = 5
"""


def offers(count: int = 2) -> list[dict[str, Any]]:
    """Well-formed offers."""
    return [
        {
            "id": f"m-{i}",
            "pool": "p",
            "region": "r",
            "chip_vendor": "v",
            "chip_model": "m",
            "chips_per_unit": 1,
            "cpus": 2,
            "memory_mib": 3,
            "storage_gib": 4,
            "free_units": 5,
            "price_per_unit_hour": 6,
            "currency": "CNY",
            "networks": [],
            "tags": [],
        }
        for i in range(count)
    ]


class CatalogPeer:
    """Makes a FakePeer act as a partner that serves catalogs to `alpha`."""

    def __init__(self, peer: FakePeer) -> None:
        self.peer = peer
        self.body = b""
        peer.routes[("POST", "/fed/v1/login/challenge")] = lambda _r: {
            "challenge": "c" * 43,
            "node": peer.name,
            "expires_ts": int(time.time()) + 60,
        }
        peer.routes[("POST", "/fed/v1/login")] = lambda _r: {
            "token": "t",
            "token_type": "Bearer",
            "expires_ts": int(time.time()) + 600,
            "node": peer.name,
        }
        peer.routes[("GET", "/fed/v1/catalog/head")] = lambda _r: {"sha256": sha256_hex(self.body)}
        peer.routes[("GET", "/fed/v1/catalog")] = lambda _r: web.Response(
            body=self.body, content_type="application/json"
        )

    def document(self, version: int = 1, **changes: Any) -> dict[str, Any]:
        """An unsigned catalog document for alpha."""
        now = int(time.time())
        document = {
            "type": CATALOG_TYPE,
            "issuer": self.peer.name,
            "audience": "alpha",
            "version": version,
            "issued_ts": now,
            "expires_ts": now + 3600,
            "prev_sha256": None,
            "offers": offers(),
        }
        document.update(changes)
        return document

    def serve(
        self, document: dict[str, Any], key: SigningKey | None = None, raw: bytes | None = None
    ) -> None:
        """Serve `document` signed with the peer's key (or `key`), or exactly `raw`."""
        self.body = (
            raw if raw is not None else canonical.encode(sign_document(document, key or self.peer.key))
        )


@pytest.fixture(name="alpha")
async def fixture_alpha(tmp_path: Path, fake_peer: FakePeer) -> AsyncIterator[NodeServer]:
    """A real node that pins the fake peer; short time and size limits."""
    async with nodes(tmp_path, ["alpha"], extra=SLOW_TOML) as (alpha,):
        assert alpha.ctx is not None
        store.add_partner(alpha.ctx.engine, fake_peer.partner(), int(time.time()))
        yield alpha


@pytest.fixture(name="partner")
def fixture_partner(fake_peer: FakePeer) -> CatalogPeer:
    """The fake peer acting as a catalog-serving partner."""
    return CatalogPeer(fake_peer)


async def sync(alpha: NodeServer) -> tuple[str, str | None]:
    """Run one sync round now; return the fake partner's (outcome, error). A round that found the
    partner unreachable runs again, twice at most: these tests are not about time, and the node's
    0.5 s request limit (for the slow-peer tests) can pass on a loaded machine (6 workers, 2 cores)."""
    for _ in range(3):
        results = await run_round(service_of(alpha), force=True)
        result = next(r for r in results if r.partner == "mallory")
        if result.outcome != "unreachable":
            break
    return result.outcome, result.error


def held(alpha: NodeServer) -> int | None:
    """Version of the catalog alpha holds from the fake partner."""
    assert alpha.ctx is not None
    head = store.received_head(alpha.ctx.engine, "mallory")
    return head.version if head else None


def last_event(alpha: NodeServer) -> dict[str, Any]:
    """The newest catalog event alpha recorded for the fake partner."""
    assert alpha.ctx is not None
    return store.catalog_events(alpha.ctx.engine, "mallory", limit=1)[0]


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("unsigned", "unsigned"),
        ("wrong-key", "unknown_key"),
        ("issuer-changed", "wrong_issuer"),
        ("tampered", "bad_signature"),
    ],
)
async def test_bad_signatures_are_rejected(
    alpha: NodeServer, partner: CatalogPeer, fault: str, code: str
) -> None:
    """17. Unsigned, wrongly signed, issuer-changed or tampered catalogs are rejected, nothing stored."""
    document = partner.document()
    if fault == "unsigned":
        partner.serve(document, raw=canonical.encode(document))
    elif fault == "wrong-key":
        partner.serve(document, key=SigningKey.generate())
    elif fault == "issuer-changed":
        signed = sign_document(document, partner.peer.key)
        partner.serve(
            document,
            raw=canonical.encode(
                {**signed, "issuer": "eve", "signatures": {"eve": signed["signatures"]["mallory"]}}
            ),
        )
    else:
        signed = sign_document(document, partner.peer.key)
        signed["offers"][0]["price_per_unit_hour"] = 1
        partner.serve(document, raw=canonical.encode(signed))
    outcome, error = await sync(alpha)
    assert outcome == "rejected", error
    assert last_event(alpha)["code"] == code
    assert held(alpha) is None


async def test_rollback_and_equivocation(alpha: NodeServer, partner: CatalogPeer) -> None:
    """18. A lower version is refused (rollback); the same version with other bytes is an alert; v2 is kept."""
    partner.serve(partner.document(version=2))
    assert (await sync(alpha))[0] == "ok"
    partner.serve(partner.document(version=1))
    assert (await sync(alpha))[0] == "rejected"
    assert (last_event(alpha)["kind"], last_event(alpha)["code"]) == ("rejected", "rollback")
    partner.serve(partner.document(version=2, offers=offers(1)))
    assert (await sync(alpha))[0] == "rejected"
    assert (last_event(alpha)["kind"], last_event(alpha)["code"]) == ("alert", "equivocation")
    assert held(alpha) == 2
    assert alpha.ctx is not None
    assert store.received_catalogs(alpha.ctx.engine, "mallory")[0]["offer_count"] == 2


@pytest.mark.parametrize(
    ("offsets_s", "code"),
    [
        ({"issued_ts": -7200, "expires_ts": -3600}, "expired"),
        ({"issued_ts": 0, "expires_ts": 24 * 3600 + 60}, "validity_too_long"),
    ],
    ids=["expired", "over-24h"],
)
async def test_expiry_rules(
    alpha: NodeServer, partner: CatalogPeer, offsets_s: dict[str, int], code: str
) -> None:
    """19. An expired catalog, or one that expires more than 24 h after issue, is rejected."""
    now = int(time.time())  # taken when the test runs, not when it is collected
    partner.serve(partner.document(**{name: now + offset for name, offset in offsets_s.items()}))
    assert (await sync(alpha))[0] == "rejected"
    assert last_event(alpha)["code"] == code
    assert held(alpha) is None


async def test_reordered_and_spaced_catalog_still_verifies(alpha: NodeServer, partner: CatalogPeer) -> None:
    """20. A signed catalog re-serialised with other key order and whitespace is accepted."""
    signed = sign_document(partner.document(), partner.peer.key)
    reordered = dict(reversed(list(signed.items())))
    partner.serve(signed, raw=json.dumps(reordered, indent=3).encode())
    assert (await sync(alpha))[0] == "ok"
    assert held(alpha) == 1


async def test_unknown_fields_are_signed(alpha: NodeServer, partner: CatalogPeer) -> None:
    """23. Unknown fields are covered by the signature: accepted as signed, rejected when changed."""
    document = partner.document(note="extra", offers=[{**offers(1)[0], "colour": "blue"}])
    signed = sign_document(document, partner.peer.key)
    partner.serve(document, raw=canonical.encode({**signed, "note": "changed"}))
    assert (await sync(alpha))[0] == "rejected"
    assert last_event(alpha)["code"] == "bad_signature"
    partner.serve(document)
    assert (await sync(alpha))[0] == "ok"


async def test_bad_json_and_too_many_items(alpha: NodeServer, partner: CatalogPeer) -> None:
    """21, 22, 26. Duplicate keys, floats and more offers than the limit are rejected."""
    partner.serve(partner.document(), raw=b'{"type":"a","type":"b"}')
    assert (await sync(alpha))[0] == "rejected"
    assert last_event(alpha)["code"] == "duplicate_key"
    partner.serve(partner.document(), raw=b'{"version":1.0}')
    assert (await sync(alpha))[0] == "rejected"
    assert last_event(alpha)["code"] == "bad_number"
    partner.serve(partner.document(offers=offers(6)))
    assert (await sync(alpha))[0] == "rejected"
    assert last_event(alpha)["code"] == "too_many_items"
    assert held(alpha) is None


async def test_slow_and_endless_peers_do_not_stall_sync(tmp_path: Path, fake_peer: FakePeer) -> None:
    """28. A peer that never answers times out, one that streams forever hits the size cap, and a
    good partner in the same round still syncs."""
    async with nodes(tmp_path, ["alpha", "beta"], extra=SLOW_TOML) as (alpha, beta):
        assert alpha.ctx is not None
        assert beta.ctx is not None
        store.add_partner(alpha.ctx.engine, Partner("beta", (beta.url,), beta.ctx.identity.public_key), 0)
        store.add_partner(beta.ctx.engine, Partner("alpha", (alpha.url,), alpha.ctx.identity.public_key), 0)
        store.add_partner(alpha.ctx.engine, fake_peer.partner(), 0)
        partner = CatalogPeer(fake_peer)

        async def never(_request: web.Request) -> web.Response:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        async def endless(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse()
            await response.prepare(request)
            for _ in range(10_000):
                await response.write(b" " * 65536)
            return response

        handlers: list[Callable[[web.Request], Any]] = [never, endless]
        for handler, code in zip(handlers, ["peer_timeout", "response_too_large"], strict=True):
            partner.peer.routes[("GET", "/fed/v1/catalog/head")] = handler
            started = time.monotonic()
            results = {r.partner: r for r in await run_round(service_of(alpha), force=True)}
            assert time.monotonic() - started < 5
            assert results["mallory"].outcome == "unreachable"
            assert (results["mallory"].error or "").startswith(code)
            assert results["beta"].outcome in ("ok", "unchanged")
        states = store.sync_states(alpha.ctx.engine)
        assert states["mallory"]["status"] == "unreachable"
        assert states["mallory"]["failures"] == 2
        assert states["mallory"]["next_attempt_ts"] > int(time.time())
        assert states["beta"]["status"] == "ok"
        # Backoff: a normal (not forced) round skips the failing partner until its next attempt.
        outcomes = {r.partner: r.outcome for r in await run_round(service_of(alpha))}
        assert outcomes["mallory"] == "backoff"


async def test_trade_replay_and_concurrency(alpha: NodeServer, fake_peer: FakePeer) -> None:
    """5, 26, 27. A replayed trade id gets the stored answer without a second call; too many items is 400;
    a second concurrent trade from the same peer is 429."""
    recorder = Recorder()
    service_of(alpha).trade_handler = recorder
    token = await fake_peer.login(alpha.url, "alpha")
    url = alpha.url + "/fed/v1/trades"

    async def post(body: bytes) -> tuple[int, Any]:
        return await fake_peer.send("POST", url, body, fake_peer.sign("POST", url, body, token=token))

    body = trade_body(fake_peer, "t-1")
    first = await post(body)
    second = await post(body)
    assert first == second
    assert first[0] == 201
    assert recorder.calls == 1
    assert alpha.ctx is not None
    assert store.get_trade(alpha.ctx.engine, "mallory", "t-1") is not None
    status, answer = await post(trade_body(fake_peer, "t-2", items=101))
    assert (status, answer["error"]) == (400, "too_many_items")
    recorder.release.clear()
    recorder.entered.clear()
    pending = asyncio.ensure_future(post(trade_body(fake_peer, "t-3")))
    await asyncio.wait_for(recorder.entered.wait(), 10)
    status, answer = await post(trade_body(fake_peer, "t-4"))
    assert (status, answer["error"]) == (429, "rate_limited")
    recorder.release.set()
    assert (await pending)[0] == 201
    assert store.get_trade(alpha.ctx.engine, "mallory", "t-4") is None


async def test_trade_nonce_is_recorded_whatever_the_answer(alpha: NodeServer, fake_peer: FakePeer) -> None:
    """The trade route claims its nonce with the trade claim: a request answered 201, refused 400 or
    refused 429 is each refused as `replayed` when sent again with the same signature, by the
    database (the process's front cache emptied), and the replay runs nothing."""
    recorder = Recorder()
    service = service_of(alpha)
    service.trade_handler = recorder
    token = await fake_peer.login(alpha.url, "alpha")
    url = alpha.url + "/fed/v1/trades"
    signed: list[tuple[bytes, dict[str, str]]] = []

    async def post(body: bytes) -> tuple[int, Any]:
        headers = fake_peer.sign("POST", url, body, token=token)
        signed.append((body, headers))
        return await fake_peer.send("POST", url, body, headers)

    assert (await post(trade_body(fake_peer, "n-1")))[0] == 201
    status, answer = await post(trade_body(fake_peer, "n-2", items=101))
    assert (status, answer["error"]) == (400, "too_many_items")
    recorder.release.clear()
    recorder.entered.clear()
    pending = asyncio.ensure_future(post(trade_body(fake_peer, "n-3")))
    await asyncio.wait_for(recorder.entered.wait(), 10)
    status, answer = await post(trade_body(fake_peer, "n-4"))
    assert (status, answer["error"]) == (429, "rate_limited")
    recorder.release.set()
    assert (await pending)[0] == 201
    calls = recorder.calls
    service.recent_nonces = RecentNonces()  # only the database can refuse now
    for body, headers in signed:
        status, answer = await fake_peer.send("POST", url, body, headers)
        assert (status, answer["error"]) == (401, "replayed")
    assert recorder.calls == calls
