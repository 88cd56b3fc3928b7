"""A partner's key document as an attack surface: size limits, endorsement checking in linear time
and off the event loop, and retirement that survives the document's expiry."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from nacl.signing import SigningKey, VerifyKey

from federation import store
from federation.errors import DocumentError
from federation.httpsig import Identity
from federation.keydoc import (
    DEFAULT_MAX_KEYS,
    KeyRecord,
    active_record,
    build_key_document,
    endorse,
    trusted_records,
    verify_key_document,
)
from federation.keys import b64url, key_id, public_key_text
from node.service import NodeServer
from tests.support.federation import FakePeer, nodes, service_of

CHALLENGE = "/fed/v1/login/challenge"


@pytest.fixture(name="alpha")
async def fixture_alpha(tmp_path: Path, fake_peer: FakePeer) -> AsyncIterator[NodeServer]:
    """A real node that pins the fake peer as a partner."""
    async with nodes(tmp_path, ["alpha"]) as (alpha,):
        assert alpha.ctx is not None
        store.add_partner(alpha.ctx.engine, fake_peer.partner(), int(time.time()))
        yield alpha


def _chain(node: str, root: SigningKey, length: int, bad: int, now: int) -> list[KeyRecord]:
    """Retired records: a chain of `length` keys each endorsed by the previous (the first by `root`),
    listed newest first, and `bad` keys whose endorsement by `root` does not verify."""
    records: list[KeyRecord] = []
    previous = root
    for _ in range(length):
        key = SigningKey.generate()
        endorsement = endorse(node, key.verify_key, now - 100, previous)
        records.append(
            KeyRecord(
                key_id(key.verify_key),
                public_key_text(key.verify_key),
                "retired",
                now - 100,
                now - 50,
                endorsement,
            )
        )
        previous = key
    records.reverse()
    forged = {"kid": key_id(root.verify_key), "sig": b64url(b"\x00" * 64)}
    for _ in range(bad):
        key = SigningKey.generate()
        records.append(
            KeyRecord(
                key_id(key.verify_key),
                public_key_text(key.verify_key),
                "retired",
                now - 100,
                now - 50,
                forged,
            )
        )
    return records


def _hostile_document(peer: FakePeer, length: int, bad: int) -> dict[str, Any]:
    """A key document self-signed by the peer's pinned key, listing `length` chained and `bad` forged keys."""
    now = int(time.time())
    retired = _chain(peer.name, peer.key, length, bad, now)
    return build_key_document(peer.name, peer.key, now - 3600, retired, now, 3600)


async def _healthz_s(http: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with http.get(url + "/healthz") as response:
        assert response.status == 200
    return time.perf_counter() - started


async def test_hostile_key_document_does_not_freeze_the_node(
    alpha: NodeServer, fake_peer: FakePeer, caplog: pytest.LogCaptureFixture
) -> None:
    """1,000 keys + 700 forged endorsements: /healthz keeps answering during the refetch, and the
    document is refused as too_many_keys (named in the log), learning nothing."""
    document = _hostile_document(fake_peer, 300, 700)
    fake_peer.routes[("GET", "/fed/v1/keys")] = lambda _r: document
    url = alpha.url + CHALLENGE
    stranger = Identity(fake_peer.name, SigningKey.generate())
    async with aiohttp.ClientSession() as http:
        baseline = statistics.median([await _healthz_s(http, alpha.url) for _ in range(7)])
        caplog.set_level(logging.WARNING, logger="cpnode.federation")
        request = asyncio.create_task(
            fake_peer.send("POST", url, b"", fake_peer.sign("POST", url, identity=stranger))
        )
        during = []
        while not request.done():
            during.append(await _healthz_s(http, alpha.url))
        status, answer = await request
    assert (status, answer["error"]) == (401, "unknown_key")
    assert fake_peer.hits.get("/fed/v1/keys") == 1
    # Relative to the same node's idle latency, with a floor for a loaded shared machine.
    assert max(during) < max(20 * baseline, 0.5), (baseline, max(during))
    assert "too_many_keys" in caplog.text
    assert alpha.ctx is not None
    learned, _ = store.peer_keys(alpha.ctx.engine, fake_peer.name)
    assert learned == {}
    with pytest.raises(DocumentError) as refused:
        await service_of(alpha).refresh_keys(fake_peer.partner(), force=True)
    assert refused.value.code == "too_many_keys"


def test_key_document_limit() -> None:
    """A key document with more keys than the limit is refused before any record is checked."""
    root = SigningKey.generate()
    now = int(time.time())
    fits = build_key_document("p", root, now, _chain("p", root, DEFAULT_MAX_KEYS - 1, 0, now), now, 60)
    assert len(verify_key_document(fits, "p", now)) == DEFAULT_MAX_KEYS
    over = build_key_document("p", root, now, _chain("p", root, DEFAULT_MAX_KEYS, 0, now), now, 60)
    with pytest.raises(DocumentError) as refused:
        verify_key_document(over, "p", now)
    assert refused.value.code == "too_many_keys"


def test_endorsements_are_checked_once_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a large document (a 200-key chain listed newest first, 200 forged endorsements) every
    endorsement signature is verified at most once, and exactly the chain is trusted."""
    root = SigningKey.generate()
    now = int(time.time())
    records = {r.kid: r for r in [active_record(root, now - 3600), *_chain("p", root, 200, 200, now)]}
    calls = 0
    real_verify = VerifyKey.verify

    def counting(self: VerifyKey, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real_verify(self, *args, **kwargs)

    monkeypatch.setattr(VerifyKey, "verify", counting)
    trusted = trusted_records("p", records, {key_id(root.verify_key): root.verify_key}, set())
    assert calls <= len(records)
    assert len(trusted) == 201
    forged = b64url(b"\x00" * 64)
    assert all(r.endorsement is None or r.endorsement["sig"] != forged for r in trusted.values())


def _rotated(peer: FakePeer, new_key: SigningKey, now: int, list_old: bool = True) -> dict[str, Any]:
    """The peer's key document issued at `now` after rotating to `new_key` ten seconds before the
    clock's start; the old (pinned) key is listed as retired unless `list_old` is False."""
    endorsement = endorse(peer.name, new_key.verify_key, ROTATED_TS, peer.key)
    old = KeyRecord(peer.identity.kid, peer.public_key, "retired", 0, ROTATED_TS)
    retired = (old,) if list_old else ()
    return build_key_document(peer.name, new_key, ROTATED_TS, retired, now, 600, endorsement)


ROTATED_TS = int(time.time()) - 10


@pytest.mark.parametrize("list_old", [True, False], ids=["old-key-listed", "old-key-dropped"])
async def test_retired_key_stays_retired_after_expiry(
    alpha: NodeServer, fake_peer: FakePeer, list_old: bool
) -> None:
    """After the stored key document expires the node refetches it, and the pinned key the partner
    retired is still refused (also when the new document no longer lists it); the new key works."""
    service = service_of(alpha)
    clock = {"now": int(time.time())}
    service.clock = lambda: clock["now"]
    new_key = SigningKey.generate()
    rotated = Identity(fake_peer.name, new_key)
    served = {"first": True}

    def keys(_request: Any) -> dict[str, Any]:
        document = _rotated(fake_peer, new_key, clock["now"], list_old or served["first"])
        served["first"] = False
        return document

    fake_peer.routes[("GET", "/fed/v1/keys")] = keys
    url = alpha.url + CHALLENGE

    async def call(identity: Identity | None) -> tuple[int, Any]:
        headers = fake_peer.sign("POST", url, now_ts=clock["now"], identity=identity)
        return await fake_peer.send("POST", url, b"", headers)

    status, answer = await call(rotated)
    assert status == 200, answer
    status, answer = await call(None)
    assert (status, answer["error"]) == (401, "key_retired")
    assert fake_peer.hits["/fed/v1/keys"] == 1

    clock["now"] += 3600  # the stored document (valid 600 s) has expired
    status, answer = await call(None)
    assert (status, answer["error"]) == (401, "key_retired"), answer
    assert fake_peer.hits["/fed/v1/keys"] == 2  # refetched because it expired
    status, answer = await call(rotated)
    assert status == 200, answer
    assert alpha.ctx is not None
    learned, expires_ts = store.peer_keys(alpha.ctx.engine, fake_peer.name)
    assert learned[fake_peer.identity.kid].status == "retired"
    assert expires_ts > clock["now"]


async def test_retired_key_stays_retired_when_partner_is_unreachable(
    alpha: NodeServer, fake_peer: FakePeer
) -> None:
    """When the expired key document cannot be refetched, the learned keys are kept as they were:
    the retired pinned key is still refused and the endorsed new key still works."""
    service = service_of(alpha)
    clock = {"now": int(time.time())}
    service.clock = lambda: clock["now"]
    new_key = SigningKey.generate()
    rotated = Identity(fake_peer.name, new_key)
    fake_peer.routes[("GET", "/fed/v1/keys")] = lambda _r: _rotated(fake_peer, new_key, clock["now"])
    url = alpha.url + CHALLENGE

    async def call(identity: Identity | None) -> tuple[int, Any]:
        headers = fake_peer.sign("POST", url, now_ts=clock["now"], identity=identity)
        return await fake_peer.send("POST", url, b"", headers)

    assert (await call(rotated))[0] == 200
    fake_peer.routes[("GET", "/fed/v1/keys")] = lambda _r: web.Response(status=503)
    clock["now"] += 3600
    status, answer = await call(None)
    assert (status, answer["error"]) == (401, "key_retired"), answer
    assert (await call(rotated))[0] == 200
    assert fake_peer.hits["/fed/v1/keys"] == 2
