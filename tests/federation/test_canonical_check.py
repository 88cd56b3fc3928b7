"""Canonical JSON's value check: the level-by-level pass agrees with the recursive rules on every
value, good or bad, and the error raised is the recursive check's."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation import canonical
from federation.errors import DocumentError
from tests.support.examples import examples

SAFE = 2**53 - 1


class Text(str):
    """A str subclass: valid JSON text, which the level-by-level pass leaves to the recursive check."""


# Everything a caller might hand the encoder, the values canonical JSON refuses included.
strings = st.text(max_size=6) | st.sampled_from(["\x00", "a\x00b", "\ud800", "é", "\U0001f600", Text("t")])
numbers = st.integers(-SAFE - 2, SAFE + 2) | st.sampled_from([2**53, -(2**53), 2**64]) | st.floats()
scalars = st.none() | st.booleans() | numbers | strings | st.sampled_from([b"x", (1,), object()])
keys = strings | st.integers(0, 3) | st.none()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=30,
)


def recursive_outcome(value: Any, max_depth: int) -> tuple[str, str] | None:
    """What the recursive rules say of `value`: None when it passes, else (code, message)."""
    try:
        canonical._check_value(value, max_depth, 0)
    except DocumentError as exc:
        return exc.code, str(exc)
    return None


def outcome(value: Any, max_depth: int) -> tuple[str, str] | None:
    """What `check_value` says of `value`, as `recursive_outcome`."""
    try:
        canonical.check_value(value, max_depth)
    except DocumentError as exc:
        return exc.code, str(exc)
    return None


@settings(max_examples=examples(500), deadline=None)
@given(values, st.integers(0, 4))
def test_check_value_agrees_with_the_recursive_rules(value: Any, max_depth: int) -> None:
    """For any value and depth limit, `check_value` passes exactly when the recursive rules do, and
    otherwise raises their error (the first fault in document order)."""
    expected = recursive_outcome(value, max_depth)
    assert outcome(value, max_depth) == expected
    if canonical._plainly_valid(value, max_depth):
        assert expected is None


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ({"a": [1, 2.5]}, "bad_number"),
        ({"a": [SAFE + 1]}, "bad_number"),
        ({"a": "x\x00"}, "bad_string"),
        ({"\ud800": 1}, "bad_string"),
        ({1: "x"}, "bad_document"),
        ({"a": b"bytes"}, "bad_number"),
        ([[[[1]]]], "too_deep"),
    ],
)
def test_each_fault_is_named(value: Any, code: str) -> None:
    """Each kind of fault is refused with its code (depth limit 3 for the nested list)."""
    with pytest.raises(DocumentError) as caught:
        canonical.check_value(value, 3)
    assert caught.value.code == code


def test_plain_documents_pass_the_fast_pass() -> None:
    """A document of plain JSON types within the limits passes without the recursive check."""
    document = {
        "type": "t",
        "issuer": "alpha",
        "terms": {"units": 2, "price": SAFE, "tags": ["é", None, True]},
    }
    assert canonical._plainly_valid(document, canonical.DEFAULT_MAX_DEPTH)
    assert canonical.encode(document) == canonical.fingerprint_bytes(document)
