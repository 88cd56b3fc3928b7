"""Canonical JSON for signed documents: strict parsing and one byte form per value.

The canonical form is JSON with keys sorted, no insignificant whitespace, UTF-8, and only these
values: objects, arrays, strings, booleans, null and integers within ±(2^53 − 1). No floats, NaN
or Infinity (money is integer minor units). For such values this equals RFC 8785 (JCS) output
except for the order of keys outside the Basic Multilingual Plane, which our documents never use
as keys (keys are ASCII). Parsing rejects duplicate keys, non-UTF-8, lone surrogates and U+0000.
"""

from __future__ import annotations

import json
from typing import Any

from federation.errors import DocumentError

MAX_SAFE_INTEGER = 2**53 - 1
DEFAULT_MAX_DEPTH = 32


def _reject_constant(name: str) -> Any:
    raise DocumentError(f"{name} is not allowed in canonical JSON", code="bad_number")


def _reject_float(text: str) -> Any:
    raise DocumentError(f"non-integer number {text[:40]!r} is not allowed", code="bad_number")


def _check_string(value: str) -> None:
    if "\x00" in value:
        raise DocumentError("U+0000 is not allowed in strings", code="bad_string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DocumentError("lone surrogate in string", code="bad_string") from None


def _object_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DocumentError(f"duplicate key {key!r}", code="duplicate_key")
            seen.add(key)
    return result


def check_value(value: Any, max_depth: int = DEFAULT_MAX_DEPTH, _depth: int = 0) -> None:
    """Raise DocumentError unless `value` is within the canonical JSON value space and depth."""
    if _depth > max_depth:
        raise DocumentError(f"nesting deeper than {max_depth}", code="too_deep")
    if isinstance(value, str):
        _check_string(value)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise DocumentError("integer beyond ±(2^53 − 1)", code="bad_number")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise DocumentError("object keys must be strings", code="bad_document")
            _check_string(key)
            check_value(item, max_depth, _depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_value(item, max_depth, _depth + 1)
    else:
        raise DocumentError(f"{type(value).__name__} is not a canonical JSON value", code="bad_number")


def encode(value: Any, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """The canonical bytes of `value`, or DocumentError if it holds floats, big integers, etc."""
    check_value(value, max_depth)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode(data: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse JSON bytes strictly (see module rules), or raise DocumentError saying what is wrong."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DocumentError("body is not UTF-8", code="bad_encoding") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object_hook,
            parse_float=_reject_float,
            parse_constant=_reject_constant,
        )
    except RecursionError:
        raise DocumentError(f"nesting deeper than {max_depth}", code="too_deep") from None
    except ValueError as exc:
        if isinstance(exc, DocumentError):
            raise
        raise DocumentError(f"not valid JSON: {exc}", code="bad_json") from None
    check_value(value, max_depth)
    return value
