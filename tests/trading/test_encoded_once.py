"""Signed documents encoded once on the order path: each shortcut gives exactly the bytes, hashes
and errors of encoding or parsing again (the evidence auditors check is unchanged).

- `canonical.encode_object`: an object's canonical bytes and its bytes without one member;
- `documents.receipt_encoded`: a receipt put together from its two documents' own bytes;
- `batching.split_answers`: each answer of a batch with its document and signing bytes;
- `OrderSteps.holding` / `_read_request`: a trade request remembered from placing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation import canonical
from federation.client import PeerResponse
from federation.documents import SIGNATURES, load_document, signing_bytes
from federation.errors import DocumentError
from federation.trade_batches import encode_answers
from node.trading import documents
from node.trading.batching import split_answers
from node.trading.peer import SignedAnswer

SAFE = 2**53 - 1
text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
scalars = st.none() | st.booleans() | st.integers(-SAFE, SAFE) | text
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=12,
)
objects = st.dictionaries(text | st.just(SIGNATURES), values, max_size=5)


@given(objects)
@settings(max_examples=300, deadline=None)
def test_encode_object_is_encode_and_decode_object(value: dict[str, Any]) -> None:
    data, without = canonical.encode_object(value, SIGNATURES)
    assert data == canonical.encode(value)
    assert without == canonical.encode({k: v for k, v in value.items() if k != SIGNATURES})
    assert canonical.decode_object(data, SIGNATURES) == (value, without)


def test_encode_object_refuses_what_encode_refuses() -> None:
    deep: Any = 1
    for _ in range(canonical.DEFAULT_MAX_DEPTH + 1):
        deep = [deep]
    for bad in ({"a": 1.5}, {"a": 2**60}, {"a": deep}, {"a\x00": 1}):
        with pytest.raises(DocumentError) as expected:
            canonical.encode(bad)
        with pytest.raises(DocumentError) as got:
            canonical.encode_object(bad, SIGNATURES)
        assert got.value.code == expected.value.code


def _documents(extra: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    request: dict[str, Any] = {"type": "cpnode.trade-request.v1", "trade_id": "beijing.0a1b2c3d4e5f"}
    accepted: dict[str, Any] = {"type": "cpnode.trade-acceptance.v1", "issuer": "shanghai", "extra": extra}
    request[SIGNATURES] = {"beijing": {"k1": "c2ln"}}
    accepted[SIGNATURES] = {"shanghai": {"k2": "c2ln"}}
    return request, accepted


@given(values)
@settings(max_examples=200, deadline=None)
def test_a_receipt_put_together_is_the_receipt_encoded(extra: Any) -> None:
    request, accepted = _documents(extra)
    try:
        expected: Any = documents.encoded(documents.receipt(request, accepted))
    except DocumentError as exc:
        expected = exc.code
    try:
        got: Any = documents.receipt_encoded(
            request, canonical.encode(request), accepted, canonical.encode(accepted)
        )
    except DocumentError as exc:
        got = exc.code
    assert got == expected
    assert documents.receipt_encoded(request, canonical.encode(request), accepted) == documents.encoded(
        documents.receipt(request, accepted)
    )


def test_a_receipt_one_level_too_deep_is_refused_as_before() -> None:
    deep: Any = 1
    for _ in range(canonical.DEFAULT_MAX_DEPTH - 1):
        deep = [deep]
    request, accepted = _documents(deep)  # the acceptance is just within the depth; its receipt is not
    canonical.encode(accepted)
    with pytest.raises(DocumentError, match="nesting"):
        documents.encoded(documents.receipt(request, accepted))
    with pytest.raises(DocumentError, match="nesting"):
        documents.receipt_encoded(request, canonical.encode(request), accepted, canonical.encode(accepted))


def test_split_answers_carry_each_document_and_its_signing_bytes() -> None:
    _, accepted = _documents({"n": [1, 2]})
    refusal = {"error": "no_capacity", "message": "m"}
    body = encode_answers([(201, canonical.encode(accepted)), (409, canonical.encode(refusal))])
    parts = split_answers(PeerResponse(200, body), 2, "shanghai")
    for part, (status, document) in zip(parts, [(201, accepted), (409, refusal)], strict=True):
        assert isinstance(part, SignedAnswer)
        assert (part.status, part.body, part.document) == (status, canonical.encode(document), document)
        assert part.payload == signing_bytes(document)
        assert load_document(part.body) == (document, part.payload)


def test_a_signed_request_is_its_encoding_and_hash() -> None:
    request, _ = _documents(None)
    data, sha = documents.signed_encoded(request)
    assert data == canonical.encode(request)
    assert (request, sha) == documents.read_signed(data)
    assert sha == documents.sha256_of(request)
