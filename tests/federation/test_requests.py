"""Checklist cases 1–11 and 16: signed requests against a real node, sent by a scripted fake peer."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from federation import canonical, store
from federation.client import PeerClient, make_session
from federation.errors import UnsafeURLError
from federation.httpsig import Identity, sign_request
from federation.keydoc import KeyRecord, build_key_document, endorse
from federation.keys import key_id
from federation.partners import check_url, parse_allow_list
from node.service import NodeServer
from tests.support.federation import FakePeer, nodes


@pytest.fixture(name="alpha")
async def fixture_alpha(tmp_path: Path, fake_peer: FakePeer) -> AsyncIterator[NodeServer]:
    """A real node that pins the fake peer as a partner."""
    async with nodes(tmp_path, ["alpha"]) as (alpha,):
        assert alpha.ctx is not None
        store.add_partner(alpha.ctx.engine, fake_peer.partner(), int(time.time()))
        yield alpha


CHALLENGE = "/fed/v1/login/challenge"


async def test_missing_or_garbled_signature(alpha: NodeServer, fake_peer: FakePeer) -> None:
    """1. No signature is a 401; signature headers that are not structured fields are a 400."""
    url = alpha.url + CHALLENGE
    status, body = await fake_peer.send("POST", url)
    assert (status, body["error"]) == (401, "missing_signature")
    headers = fake_peer.sign("POST", url)
    headers["Signature-Input"] = "cpnode=(((("
    status, body = await fake_peer.send("POST", url, b"", headers)
    assert (status, body["error"]) == (400, "malformed_signature")


async def test_body_changed_after_signing(alpha: NodeServer, fake_peer: FakePeer) -> None:
    """2. One body byte changed after signing fails the digest check."""
    url = alpha.url + "/fed/v1/login"
    body = b'{"type":"cpnode.login.v1"}'
    headers = fake_peer.sign("POST", url, body)
    status, answer = await fake_peer.send("POST", url, body.replace(b"v1", b"v2"), headers)
    assert (status, answer["error"]) == (401, "digest_mismatch")


async def test_method_path_or_query_changed(alpha: NodeServer, fake_peer: FakePeer) -> None:
    """3. Changing the method, the path or the query after signing is a 401."""
    signed_for = alpha.url + "/fed/v1/catalog/head?x=1"
    cases = [
        ("POST", signed_for, "GET", signed_for),
        ("GET", signed_for, "GET", alpha.url + "/fed/v1/catalog?x=1"),
        ("GET", signed_for, "GET", alpha.url + "/fed/v1/catalog/head?x=2"),
    ]
    for signed_method, signed_url, sent_method, sent_url in cases:
        headers = fake_peer.sign(signed_method, signed_url)
        status, answer = await fake_peer.send(sent_method, sent_url, b"", headers)
        assert status == 401, (sent_method, sent_url, answer)


async def test_request_for_another_node(tmp_path: Path, fake_peer: FakePeer) -> None:
    """4. A request signed for node B and replayed to node C is refused as a destination mismatch."""
    async with nodes(tmp_path, ["bnode", "cnode"]) as (b, c):
        for server in (b, c):
            assert server.ctx is not None
            store.add_partner(server.ctx.engine, fake_peer.partner(), int(time.time()))
        headers = fake_peer.sign("POST", b.url + CHALLENGE, to="bnode")
        status, answer = await fake_peer.send("POST", c.url + CHALLENGE, b"", headers)
        assert (status, answer["error"]) == (401, "wrong_destination")
        status, _ = await fake_peer.send("POST", b.url + CHALLENGE, b"", headers)
        assert status == 200


async def test_exact_replay_is_refused(alpha: NodeServer, fake_peer: FakePeer) -> None:
    """5. The same signed request twice: the second is refused because its nonce was used."""
    url = alpha.url + CHALLENGE
    headers = fake_peer.sign("POST", url)
    assert (await fake_peer.send("POST", url, b"", headers))[0] == 200
    status, answer = await fake_peer.send("POST", url, b"", headers)
    assert (status, answer["error"]) == (401, "replayed")


@pytest.mark.parametrize(
    ("created_offset_s", "validity_s", "expected"),
    [(-600, 300, 401), (120, 60, 401), (-45, 60, 200), (45, 60, 200)],
    ids=["10-min-old", "2-min-future", "45s-behind", "45s-ahead"],
)
async def test_clock_skew(
    alpha: NodeServer, fake_peer: FakePeer, created_offset_s: int, validity_s: int, expected: int
) -> None:
    """6. `created` 10 minutes old or 2 minutes ahead is refused; 45 s of skew either way is accepted."""
    url = alpha.url + CHALLENGE
    headers = fake_peer.sign("POST", url, now_ts=int(time.time()) + created_offset_s, validity_s=validity_s)
    status, answer = await fake_peer.send("POST", url, b"", headers)
    assert status == expected, answer


@pytest.mark.parametrize("validity_s", [-10, 0, 301], ids=["expires-before-created", "zero", "over-300s"])
async def test_expires_rules(alpha: NodeServer, fake_peer: FakePeer, validity_s: int) -> None:
    """7. `expires` not after `created`, or more than 300 s after it, is refused."""
    url = alpha.url + CHALLENGE
    headers = fake_peer.sign("POST", url, validity_s=validity_s)
    status, answer = await fake_peer.send("POST", url, b"", headers)
    assert (status, answer["error"]) == (401, "bad_signature_time")


async def test_unknown_key_refetches_once_then_denied_key(alpha: NodeServer, fake_peer: FakePeer) -> None:
    """8. An unknown key id causes at most one (rate-limited) key-document fetch, then 401; a denied key is 401."""
    url = alpha.url + CHALLENGE
    stranger = Identity(fake_peer.name, SigningKey.generate())
    for _ in range(3):
        status, answer = await fake_peer.send(
            "POST", url, b"", fake_peer.sign("POST", url, identity=stranger)
        )
        assert (status, answer["error"]) == (401, "unknown_key")
    assert fake_peer.hits.get("/fed/v1/keys") == 1
    assert alpha.ctx is not None
    store.deny_key(alpha.ctx.engine, fake_peer.identity.kid, "compromised", int(time.time()))
    status, answer = await fake_peer.send("POST", url, b"", fake_peer.sign("POST", url))
    assert (status, answer["error"]) == (401, "key_denied")


def _rotated_document(
    peer: FakePeer, new_key: SigningKey, valid_from_ts: int, retired_ts: int
) -> dict[str, Any]:
    """The peer's key document after rotating to `new_key` (endorsed by the old key, now retired)."""
    old = KeyRecord(peer.identity.kid, peer.public_key, "retired", 0, retired_ts)
    endorsement = endorse(peer.name, new_key.verify_key, valid_from_ts, peer.key)
    now = int(time.time())
    return build_key_document(peer.name, new_key, valid_from_ts, (old,), now, 3600, endorsement)


async def test_retired_key_and_rotation(alpha: NodeServer, fake_peer: FakePeer) -> None:
    """9. After the peer rotates, its new (endorsed) key works and its retired old key is refused."""
    url = alpha.url + CHALLENGE
    new_key = SigningKey.generate()
    now = int(time.time())
    document = _rotated_document(fake_peer, new_key, now - 10, now - 10)
    fake_peer.routes[("GET", "/fed/v1/keys")] = lambda _r: document
    rotated = Identity(fake_peer.name, new_key)
    status, answer = await fake_peer.send("POST", url, b"", fake_peer.sign("POST", url, identity=rotated))
    assert status == 200, answer
    status, answer = await fake_peer.send("POST", url, b"", fake_peer.sign("POST", url))
    assert (status, answer["error"]) == (401, "key_retired")


async def test_key_not_yet_valid(alpha: NodeServer, fake_peer: FakePeer) -> None:
    """9. A key whose validity starts in the future is refused."""
    url = alpha.url + CHALLENGE
    new_key = SigningKey.generate()
    later = int(time.time()) + 3600
    document = _rotated_document(fake_peer, new_key, later, later)
    fake_peer.routes[("GET", "/fed/v1/keys")] = lambda _r: document
    status, answer = await fake_peer.send(
        "POST", url, b"", fake_peer.sign("POST", url, identity=Identity(fake_peer.name, new_key))
    )
    assert (status, answer["error"]) == (401, "key_not_valid")


@pytest.mark.parametrize("fault", ["wrong-name", "not-self-signed", "unendorsed"])
async def test_bad_key_documents_are_rejected(alpha: NodeServer, fake_peer: FakePeer, fault: str) -> None:
    """10. A key document for another node name, not self-signed, or not endorsed is not learned."""
    url = alpha.url + CHALLENGE
    new_key = SigningKey.generate()
    now = int(time.time())
    if fault == "wrong-name":
        document = build_key_document("someone-else", new_key, now, (), now, 3600)
    elif fault == "not-self-signed":
        document = _rotated_document(fake_peer, new_key, now - 10, now - 10)
        document["signatures"] = {fake_peer.name: {key_id(new_key.verify_key): "AAAA"}}
    else:
        document = build_key_document(fake_peer.name, new_key, now, (), now, 3600)
    fake_peer.routes[("GET", "/fed/v1/keys")] = lambda _r: document
    status, answer = await fake_peer.send(
        "POST", url, b"", fake_peer.sign("POST", url, identity=Identity(fake_peer.name, new_key))
    )
    assert (status, answer["error"]) == (401, "unknown_key")
    assert alpha.ctx is not None
    learned, _ = store.peer_keys(alpha.ctx.engine, fake_peer.name)
    assert key_id(new_key.verify_key) not in learned


async def test_partner_url_safety(fake_peer: FakePeer) -> None:
    """11. Link-local and metadata addresses are refused; loopback only when allow-listed."""
    allow = parse_allow_list(["127.0.0.0/8"])
    with pytest.raises(UnsafeURLError):
        check_url("http://169.254.169.254", [ipaddress.ip_address("169.254.169.254")], allow)
    with pytest.raises(UnsafeURLError):
        check_url("http://[fe80::1]:80", [ipaddress.ip_address("fe80::1")], allow)
    with pytest.raises(UnsafeURLError):
        check_url("http://localhost:8700", [ipaddress.ip_address("127.0.0.1")], ())
    assert (
        check_url("http://127.0.0.1:8700/", [ipaddress.ip_address("127.0.0.1")], allow)
        == "http://127.0.0.1:8700"
    )
    # At connect time too: a session without loopback in its allow-list refuses to reach the fake peer.
    session = make_session((), 2.0)
    try:
        with pytest.raises(UnsafeURLError):
            PeerClient(session, lambda: fake_peer.identity, "mallory", fake_peer.url, 1024, ())
        with pytest.raises(UnsafeURLError):
            PeerClient(session, lambda: fake_peer.identity, "meta", "http://169.254.169.254", 1024, allow)
        # A host name is checked by the resolver at connect time: localhost resolves to loopback.
        by_name = PeerClient(
            session,
            lambda: fake_peer.identity,
            "mallory",
            fake_peer.url.replace("127.0.0.1", "localhost"),
            1024,
            (),
        )
        with pytest.raises(UnsafeURLError):
            await by_name.request("GET", "/fed/v1/keys", signed=False)
    finally:
        await session.close()


async def test_two_labels_or_conflicting_headers(alpha: NodeServer, fake_peer: FakePeer) -> None:
    """16. Two signature labels, or two Authorization headers, are refused."""
    url = alpha.url + CHALLENGE
    headers = fake_peer.sign("POST", url)
    doubled = dict(headers)
    doubled["Signature-Input"] = (
        headers["Signature-Input"] + ", " + headers["Signature-Input"].replace("cpnode=", "x=", 1)
    )
    doubled["Signature"] = headers["Signature"] + ", " + headers["Signature"].replace("cpnode=", "x=", 1)
    status, answer = await fake_peer.send("POST", url, b"", doubled)
    assert (status, answer["error"]) == (401, "multiple_signatures")
    signed = fake_peer.sign("POST", url, token="a")
    lines = [*signed.items(), ("Authorization", "Bearer b")]
    status, answer = await fake_peer.send("POST", url, b"", lines)
    assert (status, answer["error"]) == (401, "conflicting_headers")


async def test_unsigned_routes_stay_open(alpha: NodeServer) -> None:
    """The key document and the OpenAPI document need no signature; the node serves both."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for path in ("/fed/v1/keys", "/fed/v1/openapi.json"):
            async with session.get(alpha.url + path) as response:
                assert response.status == 200
                assert canonical.decode(await response.read())


def test_sign_request_round_trip_unit() -> None:
    """A signature made by sign_request verifies against the same request and not a changed one."""
    from federation.httpsig import read_signature_params, verify_request

    identity = Identity("alpha", SigningKey.generate())
    headers = sign_request(
        identity, "POST", "http://127.0.0.1:1/fed/v1/x", b"{}", to="beta", now_ts=int(time.time())
    )
    params = read_signature_params(headers.items())
    assert params.node == "alpha"
    verify_request("POST", "http://127.0.0.1:1/fed/v1/x", headers.items(), b"{}", identity.key.verify_key)
