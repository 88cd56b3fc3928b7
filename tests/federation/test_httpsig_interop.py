"""The peer profile's own RFC 9421 signer and verifier agree with the `http-message-signatures`
library in both directions, and refuse what the profile does not accept."""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    algorithms,
)
from nacl.signing import SigningKey

from federation.errors import AuthError, MalformedRequestError
from federation.httpsig import Identity, read_signature_params, sign_request, verify_request
from federation.sigbase import check_digest, split_target

URLS = [
    "http://127.0.0.1:8080/fed/v1/trades",
    "https://Node.Example:443/fed/v1/catalog/head?x=1&y=%20z",
    "http://[::1]:9/fed/v1/login",
    "http://example.org",
]


class _Message:
    def __init__(self, method: str, url: str, headers: dict[str, str]) -> None:
        self.method = method
        self.url = url
        self.headers = headers


class _Keys(HTTPSignatureKeyResolver):
    def __init__(self, key: SigningKey) -> None:
        self._private = Ed25519PrivateKey.from_private_bytes(bytes(key))
        self._public = Ed25519PublicKey.from_public_bytes(bytes(key.verify_key))

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:  # noqa: ARG002 (the library's resolver interface)
        return self._private

    def resolve_public_key(self, key_id: str) -> Ed25519PublicKey:  # noqa: ARG002 (as above)
        return self._public


class _Verifier(HTTPMessageVerifier):
    def validate_created_and_expires(self, sig_input: Any, max_age: Any = None) -> None:
        """Times are not what these tests are about."""


def _library_sign(
    identity: Identity, method: str, url: str, body: bytes, covered: list[str]
) -> dict[str, str]:
    now = int(time.time())
    headers = {"Cpnode-Node": identity.node, "Cpnode-To": "beta", "Content-Type": "x/y"}
    if "authorization" in covered:
        headers["Authorization"] = "Bearer t"
    message = _Message(method, url, headers)
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=_Keys(identity.key))
    signer.sign(
        message,
        key_id=identity.kid,
        created=datetime.datetime.fromtimestamp(now, datetime.UTC),
        expires=datetime.datetime.fromtimestamp(now + 60, datetime.UTC),
        nonce="n" * 24,
        label="cpnode",
        covered_component_ids=covered,
        body=body,
    )
    return dict(message.headers)


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("token", [None, "Bearer abc.def"])
def test_library_verifies_ours(url: str, token: str | None) -> None:
    """What `sign_request` writes verifies with the library, for several URL shapes, with and without a token."""
    identity = Identity("alpha", SigningKey.generate())
    body = b'{"a":1}'
    headers = {"Authorization": token} if token else {}
    signed = sign_request(identity, "POST", url, body, to="beta", now_ts=int(time.time()), headers=headers)
    verifier = _Verifier(signature_algorithm=algorithms.ED25519, key_resolver=_Keys(identity.key))
    results = verifier.verify(_Message("POST", url, signed), max_age=None, body=body)
    assert results[0].parameters["keyid"] == identity.kid
    verify_request("POST", url, signed.items(), body, identity.key.verify_key)


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize(
    "extra", [[], ["authorization"], ["content-type", "@path", "@query", "@scheme", "@request-target"]]
)
def test_ours_verifies_the_librarys(url: str, extra: list[str]) -> None:
    """A library signature over the profile's components (plus other supported ones) verifies here."""
    identity = Identity("alpha", SigningKey.generate())
    covered = ["@method", "@target-uri", "@authority", "cpnode-node", "cpnode-to", *extra]
    signed = _library_sign(identity, "PUT", url, b"body", covered)
    params = read_signature_params(signed.items())
    verify_request("PUT", url, signed.items(), b"body", identity.key.verify_key, params)
    with pytest.raises(AuthError) as caught:
        verify_request("PUT", url, signed.items(), b"bodx", identity.key.verify_key, params)
    assert caught.value.code == "digest_mismatch"
    with pytest.raises(AuthError) as caught:
        verify_request("POST", url, signed.items(), b"body", identity.key.verify_key, params)
    assert caught.value.code == "bad_signature"


def test_non_plain_headers_take_the_structured_field_parser() -> None:
    """Signature headers with optional whitespace still parse (through http_sf) and verify."""
    identity = Identity("alpha", SigningKey.generate())
    url = URLS[0]
    signed = sign_request(identity, "GET", url, b"", to="beta", now_ts=int(time.time()))
    signed["Signature-Input"] = signed["Signature-Input"].replace(";", "; ")
    params = read_signature_params(signed.items())
    verify_request("GET", url, signed.items(), b"", identity.key.verify_key, params)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda si: si.replace('"cpnode-to"', '"cpnode-to";sf'), "bad_signature"),
        (lambda si: si.replace('"cpnode-to"', '"cpnode-to" "cpnode-to"'), "bad_signature"),
        (lambda si: si.replace('"cpnode-to"', '"cpnode-to" "@query-param";name="x"'), "bad_signature"),
        (lambda si: si.replace('"cpnode-to"', '"cpnode-to" "@status"'), "bad_signature"),
        (lambda si: si + ";foo=1", "bad_signature"),
        (lambda si: si.replace('keyid="', "keyid=x").replace('";alg', ";alg"), "malformed_signature"),
        (
            lambda si: si.replace(";created=", ";created=1;x=").replace(";x=", ";created="),
            "malformed_signature",
        ),
    ],
    ids=[
        "component-parameter",
        "twice",
        "query-param",
        "status",
        "unknown-param",
        "token-keyid",
        "dup-param",
    ],
)
def test_refused_signature_inputs(change: Any, code: str) -> None:
    """Component parameters, repeated or unsupported components, unknown or mistyped parameters are refused."""
    identity = Identity("alpha", SigningKey.generate())
    url = URLS[0]
    signed = sign_request(identity, "GET", url, b"", to="beta", now_ts=int(time.time()))
    signed["Signature-Input"] = change(signed["Signature-Input"])
    with pytest.raises((AuthError, MalformedRequestError)) as caught:
        verify_request("GET", url, signed.items(), b"", identity.key.verify_key)
    assert caught.value.code == code, caught.value


def test_short_signature_and_bad_urls_are_refused() -> None:
    """A signature that is not 64 bytes is refused; target URLs with spaces or no host do not split."""
    identity = Identity("alpha", SigningKey.generate())
    signed = sign_request(identity, "GET", URLS[0], b"", to="beta", now_ts=int(time.time()))
    signed["Signature"] = "cpnode=:AAAA:"
    with pytest.raises(AuthError):
        read_signature_params(signed.items())
    for url in ("http://a b/", "http:///x", "/relative", "http://h\u00e9/"):
        with pytest.raises(MalformedRequestError):
            split_target(url)


def test_digest_forms() -> None:
    """sha-512 and two-member digests are checked member by member; unknown algorithms are refused."""
    import base64
    import hashlib

    body = b"payload"
    s256 = base64.b64encode(hashlib.sha256(body).digest()).decode()
    s512 = base64.b64encode(hashlib.sha512(body).digest()).decode()
    check_digest(f"sha-512=:{s512}:", body)
    check_digest(f"sha-256=:{s256}:, sha-512=:{s512}:", body)
    for value in (f"md5=:{s256}:", f"sha-256=:{s256}:, sha-512=:{s256}:", "sha-256=(", ""):
        with pytest.raises(AuthError) as caught:
            check_digest(value, body)
        assert caught.value.code == "digest_mismatch"
