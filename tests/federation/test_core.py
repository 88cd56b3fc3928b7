"""The pure core: canonical JSON, signed documents, catalog rules and agreements, with Hypothesis."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from federation import canonical
from federation.catalog import CATALOG_TYPE, CatalogHead, CatalogLimits, accept_catalog, build_catalog
from federation.documents import load_document, sign_document, verify_document
from federation.errors import CatalogRejected, DocumentError, FederationError
from federation.httpsig import Identity
from federation.keydoc import KeyRecord, active_record
from federation.keys import b64url_decode, key_id
from federation.partners import Agreement
from tests.support.examples import examples

KEY = SigningKey.generate()
SAFE = 2**53 - 1
text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=20)
scalars = st.none() | st.booleans() | st.integers(-SAFE, SAFE) | text
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)
documents = st.dictionaries(text, values, max_size=5).map(
    lambda d: {**{k: v for k, v in d.items() if k != "signatures"}, "type": "t", "issuer": "alpha"}
)


@settings(max_examples=examples(200), deadline=None)
@given(values)
def test_canonical_equals_stdlib_sorted_compact(value: Any) -> None:
    """orjson's canonical bytes equal json.dumps(sort_keys, compact, ensure_ascii=False) and round-trip."""
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert canonical.encode(value) == expected
    assert canonical.decode(expected) == value


@settings(max_examples=examples(100), deadline=None)
@given(documents)
def test_sign_then_verify_holds(document: dict[str, Any]) -> None:
    """Every document signed then serialised verifies after loading, whatever it holds."""
    data = canonical.encode(sign_document(document, KEY))
    loaded, payload = load_document(data)
    assert verify_document(loaded, "alpha", {key_id(KEY.verify_key): KEY.verify_key}, payload) == key_id(
        KEY.verify_key
    )


def load_and_verify(data: bytes) -> str:
    """Load a signed document and verify it against KEY; return the key id."""
    loaded, payload = load_document(data)
    return verify_document(loaded, "alpha", {key_id(KEY.verify_key): KEY.verify_key}, payload)


@settings(max_examples=examples(100), deadline=None)
@given(documents, st.data())
def test_flipping_any_byte_fails(document: dict[str, Any], data: st.DataObject) -> None:
    """Changing any single byte of a signed document makes loading or verifying it fail."""
    raw = bytearray(canonical.encode(sign_document(document, KEY)))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(FederationError):
        load_and_verify(bytes(raw))


def test_a_signature_spelled_another_way_fails() -> None:
    """A signature whose last base64url character has its unused bits set (same bytes, another
    spelling) is refused: one signature has one text, so no byte of a signed document is free."""
    signed = sign_document({"type": "t", "issuer": "alpha"}, KEY)
    kid, text = next(iter(signed["signatures"]["alpha"].items()))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    respelled = text[:-1] + alphabet[alphabet.index(text[-1]) ^ 1]
    assert b64url_decode(respelled[:-1] + text[-1]) == b64url_decode(text)
    with pytest.raises(ValueError, match="canonical"):
        b64url_decode(respelled)
    forged = {**signed, "signatures": {"alpha": {kid: respelled}}}
    with pytest.raises(FederationError):
        load_and_verify(canonical.encode(forged))


def test_whitespace_and_key_order_do_not_matter() -> None:
    """20. A signed document re-serialised with spaces and another key order still verifies."""
    signed = sign_document({"type": "t", "issuer": "alpha", "b": [1, {"y": 2, "x": "é"}]}, KEY)
    spaced = json.dumps(dict(reversed(list(signed.items()))), indent=2, ensure_ascii=True).encode()
    loaded, payload = load_document(spaced)
    verify_document(loaded, "alpha", {key_id(KEY.verify_key): KEY.verify_key}, payload)


@pytest.mark.parametrize("depth", [33, 255, 300, 1_000, 1_024, 1_025, 5_000, 200_000])
def test_deep_nesting_is_a_document_error(depth: int) -> None:
    """3. Nesting at any depth past the limit is DocumentError `too_deep`, for plain and signed
    decoding alike, and never an encoder's TypeError or a RecursionError (orjson parses up to 1,024
    levels but refuses to encode past ~255)."""
    raw = b'{"type":"t","issuer":"alpha","x":' + b"[" * depth + b"]" * depth + b"}"
    for decode in (canonical.decode, lambda data: canonical.decode_object(data, "signatures")):
        with pytest.raises(DocumentError) as caught:
            decode(raw)
        assert caught.value.code == "too_deep"


def test_agreement_filters_and_prices() -> None:
    """An agreement shows only allowed pools and tags and applies the price list before the markup."""
    offers = [
        {"id": "a", "pool": "p1", "tags": ["gpu"], "price_per_unit_hour": 1000},
        {"id": "b", "pool": "p1", "tags": ["cpu"], "price_per_unit_hour": 1000},
        {"id": "c", "pool": "p2", "tags": ["gpu"], "price_per_unit_hour": 1000},
    ]
    agreement = Agreement(pools=("p1",), tags=("gpu",), markup_bp=1250)
    assert [(o["id"], agreement.price(o)) for o in offers if agreement.allows(o)] == [("a", 1125)]
    assert Agreement(price_list={"c": 7}).price(offers[2]) == 7
    with pytest.raises(DocumentError):
        Agreement.from_json({"markup_bp": 1.5})


def _catalog(version: int, now: int, **changes: Any) -> bytes:
    offers = [
        {
            "id": "o",
            "pool": "p",
            "region": "r",
            "chip_vendor": "v",
            "chip_model": "m",
            "chips_per_unit": 1,
            "cpus": 1,
            "memory_mib": 1,
            "storage_gib": 1,
            "free_units": 1,
            "price_per_unit_hour": 1,
            "currency": "CNY",
            "networks": [],
            "tags": [],
        }
    ]
    document = build_catalog(Identity("alpha", KEY), "beta", offers, version, now, 3600, None)
    if changes:
        document = sign_document({**document, **changes}, KEY)
    return canonical.encode(document)


def test_catalog_acceptance_uses_keys_valid_at_issue_time() -> None:
    """A catalog verifies only with a key valid when it was issued; a key retired before issue fails."""
    now = int(time.time())
    kid = key_id(KEY.verify_key)
    valid = {kid: active_record(KEY, now - 100)}
    accepted = accept_catalog(_catalog(1, now), "alpha", "beta", valid, (), None, now, CatalogLimits())
    assert accepted is not None
    assert accepted.head.version == 1
    assert (
        accept_catalog(_catalog(1, now), "alpha", "beta", valid, (), accepted.head, now, CatalogLimits())
        is None
    )
    retired = {kid: KeyRecord(kid, valid[kid].public_key, "retired", now - 100, now - 10)}
    with pytest.raises(CatalogRejected) as err:
        accept_catalog(_catalog(2, now), "alpha", "beta", retired, (), None, now, CatalogLimits())
    assert err.value.code == "unknown_key"
    with pytest.raises(CatalogRejected) as err:
        accept_catalog(_catalog(1, now), "alpha", "beta", valid, {kid}, None, now, CatalogLimits())
    assert err.value.code == "unknown_key"
    with pytest.raises(CatalogRejected) as err:
        accept_catalog(_catalog(1, now, type="other"), "alpha", "beta", valid, (), None, now, CatalogLimits())
    assert err.value.code == "wrong_type"
    with pytest.raises(CatalogRejected) as err:
        accept_catalog(
            _catalog(3, now), "alpha", "beta", valid, (), CatalogHead(4, "x", now, now), now, CatalogLimits()
        )
    assert err.value.code == "rollback"
    with pytest.raises(CatalogRejected) as err:
        accept_catalog(_catalog(1, now), "alpha", "beta", valid, (), None, now, CatalogLimits(max_bytes=100))
    assert err.value.code == "too_large"
    assert CATALOG_TYPE == "cpnode.catalog.v1"
