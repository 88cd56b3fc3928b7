"""Checklist cases 12–15 (session tokens and login) and 21, 22, 24, 25 (bad bodies) against a real node."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from federation import canonical, store
from federation.login import login_document
from federation.tokens import TOKEN_TYPE
from node.service import NodeServer
from tests.support.federation import FakePeer, nodes, service_of

HEAD = "/fed/v1/catalog/head"


@pytest.fixture(name="alpha")
async def fixture_alpha(tmp_path: Path, fake_peer: FakePeer) -> AsyncIterator[NodeServer]:
    """A real node that pins the fake peer as a partner."""
    async with nodes(tmp_path, ["alpha"]) as (alpha,):
        assert alpha.ctx is not None
        store.add_partner(alpha.ctx.engine, fake_peer.partner(), int(time.time()))
        yield alpha


def _node_private(alpha: NodeServer) -> Ed25519PrivateKey:
    assert alpha.ctx is not None
    return Ed25519PrivateKey.from_private_bytes(bytes(alpha.ctx.identity.signing_key))


def _claims(peer: FakePeer, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": "alpha",
        "aud": "alpha",
        "sub": peer.name,
        "cnf": {"kid": peer.identity.kid},
        "iat": now,
        "exp": now + 600,
        "jti": "j1",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


async def _head_with(alpha: NodeServer, peer: FakePeer, token: str) -> tuple[int, Any]:
    url = alpha.url + HEAD
    return await peer.send("GET", url, b"", peer.sign("GET", url, token=token))


async def test_honest_login_gives_a_working_token(alpha: NodeServer, fake_peer: FakePeer) -> None:
    """A correct login yields a token that, with a signed request, reads the catalog head."""
    token = await fake_peer.login(alpha.url, "alpha")
    status, head = await _head_with(alpha, fake_peer, token)
    assert status == 200
    assert (head["issuer"], head["audience"], head["offer_count"]) == ("alpha", "mallory", 2)
    url = alpha.url + HEAD
    status, answer = await fake_peer.send("GET", url, b"", {"Authorization": f"Bearer {token}"})
    assert (status, answer["error"]) == (401, "missing_signature")


async def test_token_algorithms_refused(alpha: NodeServer, fake_peer: FakePeer) -> None:
    """12. Tokens with alg none, HS256 keyed with the node's public key, or RS256 are refused."""
    assert alpha.ctx is not None
    claims = _claims(fake_peer)
    public_raw = alpha.ctx.identity.signing_key.verify_key.encode()
    none_token = jwt.encode(claims, None, algorithm="none", headers={"typ": TOKEN_TYPE})  # type: ignore[arg-type]  # alg none takes no key
    hs_token = jwt.api_jws.PyJWS(options={"enforce_minimum_key_length": False}).encode(
        canonical.encode(claims), public_raw, algorithm="HS256", headers={"typ": TOKEN_TYPE}
    )
    rsa = generate_private_key(public_exponent=65537, key_size=2048)
    rs_token = jwt.encode(claims, rsa, algorithm="RS256", headers={"typ": TOKEN_TYPE})
    _ = rsa.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    for token in (none_token, hs_token, rs_token):
        status, answer = await _head_with(alpha, fake_peer, token)
        assert (status, answer["error"]) == (401, "bad_token")


@pytest.mark.parametrize(
    ("changes", "headers"),
    [
        ({"aud": "beta"}, {}),
        ({"iss": "beta"}, {}),
        ({}, {"typ": "JWT"}),
        ({"exp": None}, {}),
        ({"jti": None}, {}),
        ({"exp": int(time.time()) - 3600}, {}),
        ({}, {"crit": ["exp"]}),
    ],
    ids=["aud", "iss", "typ", "no-exp", "no-jti", "expired", "crit"],
)
async def test_token_claims_refused(
    alpha: NodeServer, fake_peer: FakePeer, changes: dict[str, Any], headers: dict[str, Any]
) -> None:
    """13. Wrong aud/iss/typ, missing exp or jti, expired beyond leeway, or an unknown crit are refused."""
    assert alpha.ctx is not None
    header = {"typ": TOKEN_TYPE, "kid": alpha.ctx.identity.key_id, **headers}
    token = jwt.encode(_claims(fake_peer, **changes), _node_private(alpha), algorithm="EdDSA", headers=header)
    status, answer = await _head_with(alpha, fake_peer, token)
    assert status == 401
    assert answer["error"] in ("bad_token", "token_expired")


async def test_token_bound_to_the_key(alpha: NodeServer, fake_peer: FakePeer) -> None:
    """14. A's token presented on a request signed by C is refused."""
    other = FakePeer("carol")
    await other.start()
    try:
        assert alpha.ctx is not None
        store.add_partner(alpha.ctx.engine, other.partner(), int(time.time()))
        token = await fake_peer.login(alpha.url, "alpha")
        status, answer = await _head_with(alpha, other, token)
        assert (status, answer["error"]) == (401, "token_key_mismatch")
    finally:
        await other.stop()


async def test_challenge_reuse_expiry_and_destination(tmp_path: Path, fake_peer: FakePeer) -> None:
    """15. A login challenge used twice, expired, or issued by another node is refused."""
    async with nodes(tmp_path, ["alpha", "beta"]) as (alpha, beta):
        for server in (alpha, beta):
            assert server.ctx is not None
            store.add_partner(server.ctx.engine, fake_peer.partner(), int(time.time()))

        async def challenge(node: NodeServer, name: str) -> str:
            url = node.url + "/fed/v1/login/challenge"
            status, answer = await fake_peer.send("POST", url, b"", fake_peer.sign("POST", url, to=name))
            assert status == 200
            assert answer["node"] == name
            return str(answer["challenge"])

        async def login(value: str, now_ts: int | None = None) -> tuple[int, Any]:
            document = login_document(fake_peer.identity, "alpha", value, now_ts or int(time.time()))
            body = canonical.encode(document)
            url = alpha.url + "/fed/v1/login"
            return await fake_peer.send("POST", url, body, fake_peer.sign("POST", url, body))

        value = await challenge(alpha, "alpha")
        assert (await login(value))[0] == 200
        status, answer = await login(value)
        assert (status, answer["error"]) == (401, "bad_challenge")
        status, answer = await login(await challenge(beta, "beta"))
        assert (status, answer["error"]) == (401, "bad_challenge")
        value = await challenge(alpha, "alpha")
        service = service_of(alpha)
        real_clock = service.clock
        service.clock = lambda: real_clock() + 600
        try:
            status, answer = await login(value, int(time.time()) + 600)
        finally:
            service.clock = real_clock
        assert status == 401
        assert answer["error"] in ("challenge_expired", "signature_expired")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"type":"cpnode.login.v1","type":"x"}', "duplicate_key"),
        (b'{"issued_ts":1.5}', "bad_number"),
        (b'{"issued_ts":NaN}', "bad_number"),
        (b'{"issued_ts":Infinity}', "bad_number"),
        (b'{"issued_ts":9007199254740993}', "bad_number"),
        (b'{"issued_ts":' + b"9" * 5000 + b"}", "bad_number"),
        (b"[" * 10_000 + b"]" * 10_000, "too_deep"),
        (b'{"issuer":"\\ud800"}', "bad_string"),
        (b'{"issuer":"a\\u0000b"}', "bad_string"),
    ],
    ids=[
        "duplicate-key",
        "float",
        "nan",
        "infinity",
        "beyond-2^53",
        "5000-digits",
        "deep",
        "surrogate",
        "nul",
    ],
)
async def test_bad_json_bodies_are_400(
    alpha: NodeServer, fake_peer: FakePeer, body: bytes, code: str
) -> None:
    """21, 22, 24, 25. Duplicate keys, non-integers, huge integers, deep nesting, surrogates and NUL are 400s."""
    url = alpha.url + "/fed/v1/login"
    status, answer = await fake_peer.send("POST", url, body, fake_peer.sign("POST", url, body))
    assert (status, answer["error"]) == (400, code)
    assert alpha.ctx is not None
    assert store.get_session(alpha.ctx.engine, fake_peer.name) is None


@pytest.mark.parametrize("name", ["caf\u00e9", "cafe\u0301", "\u00e4lpha"], ids=["nfc", "nfd", "non-ascii"])
async def test_non_ascii_node_names_are_400(alpha: NodeServer, fake_peer: FakePeer, name: str) -> None:
    """24. A non-ASCII caller name is a 400, in NFC and NFD alike (they are never merged into one name)."""
    url = alpha.url + "/fed/v1/login/challenge"
    headers = fake_peer.sign("POST", url)
    headers["Cpnode-Node"] = name
    status, answer = await fake_peer.send("POST", url, b"", [(k, v) for k, v in headers.items()])
    assert status == 400
    assert answer["error"] == "bad_name"


async def test_oversized_body_is_413_before_parsing(alpha: NodeServer, fake_peer: FakePeer) -> None:
    """25. A body over the federation limit is refused with 413 before it is parsed or verified."""
    url = alpha.url + "/fed/v1/login"
    body = b"{" + b" " * (1024 * 1024 + 10) + b"}"
    status, answer = await fake_peer.send("POST", url, body, fake_peer.sign("POST", url, body))
    assert status == 413
    assert answer["error"] in ("too_large", "body_too_large")
