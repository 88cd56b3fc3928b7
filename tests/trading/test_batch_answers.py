"""The buyer's reading of a trade batch's answer, and the seller's building of it: each item comes
back as the response it would have had alone; an answer that is not one is a ProtocolError."""

from __future__ import annotations

import pytest

from federation import canonical
from federation.client import PeerResponse
from federation.trade_batches import encode_answers
from node.trading.batching import batch_body, split_answers
from node.trading.errors import ProtocolError


def test_answers_built_by_the_seller_split_back_into_their_responses() -> None:
    """The seller's answer bytes are canonical JSON, and split into each item's status and body."""
    first, second = canonical.encode({"type": "a", "n": 1}), canonical.encode({"error": "x", "message": "m"})
    body = encode_answers([(201, first), (409, second)])
    assert canonical.encode(canonical.decode(body)) == body
    parts = split_answers(PeerResponse(200, body), 2, "shanghai")
    assert [(part.status, part.body) for part in parts] == [(201, first), (409, second)]


def test_a_batch_body_is_canonical_json() -> None:
    """The envelope built around the requests' bytes is what canonical encoding would give."""
    requests = [canonical.encode({"b": 2, "a": 1}), canonical.encode({"c": [1]})]
    body = batch_body(requests)
    decoded = canonical.decode(body)
    assert decoded == {"requests": [{"a": 1, "b": 2}, {"c": [1]}], "type": "cpnode.trade-batch.v1"}
    assert canonical.encode(decoded) == body


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"answers":[],"type":"cpnode.trade-batch-answer.v1"}',  # fewer answers than requests
        b'{"answers":[{"body":{},"status":201}],"type":"other"}',
        b'{"answers":[{"body":{},"status":"201"}],"type":"cpnode.trade-batch-answer.v1"}',
        b'{"answers":[{"body":[],"status":201}],"type":"cpnode.trade-batch-answer.v1"}',
        b'{"answers":[{"body":{},"status":99}],"type":"cpnode.trade-batch-answer.v1"}',
        b'{"answers":[7],"type":"cpnode.trade-batch-answer.v1"}',
        b'{"answers":[' + b"[" * 300 + b"]" * 300 + b'],"type":"cpnode.trade-batch-answer.v1"}',
    ],
    ids=["garbage", "list", "short", "type", "status-text", "body-list", "status-range", "item", "deep"],
)
def test_an_answer_that_is_not_a_batch_answer_is_a_protocol_error(body: bytes) -> None:
    """Whatever is wrong with the answer, the buyer gets a ProtocolError (a definite outcome)."""
    with pytest.raises(ProtocolError):
        split_answers(PeerResponse(200, body), 1, "shanghai")
