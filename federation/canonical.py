"""Canonical JSON for signed documents: strict parsing and one byte form per value.

The canonical form is JSON with keys sorted, no insignificant whitespace, UTF-8, and only these
values: objects, arrays, strings, booleans, null and integers within ±(2^53 − 1). No floats, NaN
or Infinity (money is integer minor units). For such values this equals RFC 8785 (JCS) output
except for the order of keys outside the Basic Multilingual Plane, which our documents never use
as keys (keys are ASCII). Parsing rejects duplicate keys, non-UTF-8, lone surrogates and U+0000.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from federation.errors import DocumentError

MAX_SAFE_INTEGER = 2**53 - 1
DEFAULT_MAX_DEPTH = 32


def _reject_constant(name: str) -> Any:
    raise DocumentError(f"{name} is not allowed in canonical JSON", code="bad_number")


def _reject_float(text: str) -> Any:
    raise DocumentError(f"non-integer number {text[:40]!r} is not allowed", code="bad_number")


def _parse_int(text: str) -> int:
    # Refuse long digit strings before converting them: a 5,000-digit integer is an attack, not data.
    if len(text) > 17:
        raise DocumentError("integer beyond ±(2^53 − 1)", code="bad_number")
    return int(text)


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


def check_value(value: Any, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    """Raise DocumentError unless `value` is within the canonical JSON value space and depth."""
    if not _plainly_valid(value, max_depth):
        _check_value(value, max_depth, 0)


def _plainly_valid(value: Any, max_depth: int) -> bool:
    """Whether `value` is within the value space and depth, level by level without recursion: every
    document passes through here once or more per trade, and a call per value cost more than the
    rest of encoding. False also when it cannot tell at a glance (a str or int subclass): the
    recursive check then decides, and names the first fault in document order."""
    level: list[Any] = [value]
    strings: list[str] = []
    depth = 0
    while level:
        if depth > max_depth:
            return False
        below: list[Any] = []
        for item in level:
            kind = type(item)
            if kind is str:
                strings.append(item)
            elif kind is int:
                if item > MAX_SAFE_INTEGER or item < -MAX_SAFE_INTEGER:
                    return False
            elif kind is dict:
                strings.extend(item)  # its keys: a key that is not a str fails the join below
                below.extend(item.values())
            elif kind is list:
                below.extend(item)
            elif item is not None and kind is not bool:
                return False
        level = below
        depth += 1
    try:
        text = "".join(strings)
    except TypeError:
        return False
    if "\x00" in text:
        return False
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return False
    return True


def _check_value(value: Any, max_depth: int, _depth: int) -> None:
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
            _check_value(item, max_depth, _depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_value(item, max_depth, _depth + 1)
    else:
        raise DocumentError(f"{type(value).__name__} is not a canonical JSON value", code="bad_number")


def _dumps(value: Any) -> bytes:
    # orjson's output equals json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # for every value check_value accepts (tests/federation/test_canonical.py proves it).
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def encode(value: Any, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
    """The canonical bytes of `value`, or DocumentError if it holds floats, big integers, etc."""
    check_value(value, max_depth)
    return _dumps(value)


def _scan(value: Any, max_depth: int, depth: int) -> None:
    # The fast path's check: containers, depth, floats and integer range only. Strings need no
    # look because the caller has ruled out escapes, and keys are strings by JSON's grammar.
    if depth > max_depth and value:
        raise DocumentError(f"nesting deeper than {max_depth}", code="too_deep")
    for item in value.values() if type(value) is dict else value:
        kind = type(item)
        if kind is int:
            if item > MAX_SAFE_INTEGER or item < -MAX_SAFE_INTEGER:
                raise DocumentError("integer beyond ±(2^53 − 1)", code="bad_number")
        elif kind is dict or kind is list:
            _scan(item, max_depth, depth + 1)
        elif kind is float:
            raise DocumentError("non-integer number is not allowed", code="bad_number")


def _strict_loads(data: bytes, max_depth: int) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise DocumentError("body is not UTF-8", code="bad_encoding") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object_hook,
            parse_float=_reject_float,
            parse_int=_parse_int,
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


def _fast_loads(data: bytes, max_depth: int) -> Any:
    try:
        # Parsing makes no reference cycles, so the cyclic collector has nothing to find; pausing
        # it keeps a big catalog from triggering full collections over the whole process heap.
        with _collector_paused():
            return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        message = str(exc)
        if "recursion" in message:
            raise DocumentError(f"nesting deeper than {max_depth}", code="too_deep") from None
        # Let the strict parser name the precise fault (encoding, constant, syntax).
        _strict_loads(data, max_depth)
        raise DocumentError(f"not valid JSON: {message}", code="bad_json") from None


@contextmanager
def _collector_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def fingerprint_bytes(value: Any) -> bytes:
    """Canonical bytes of `value` without validating it: only for detecting changes, never to sign."""
    return _dumps(value)


def _members(value: dict[str, Any]) -> dict[str, bytes]:
    return {key: _dumps(key) + b":" + _dumps(item) for key, item in sorted(value.items())}


def _decode(data: bytes, max_depth: int, object_parts: bool) -> tuple[Any, dict[str, bytes] | None]:
    # Fast path: when the bytes are already canonical (what peers send), parsing plus one
    # re-encoding proves there are no duplicate keys, and a light scan checks depth and numbers.
    # Anything else (whitespace, key order, escapes) takes the strict path with per-object checks.
    value = _fast_loads(data, max_depth)
    is_object = type(value) is dict
    try:
        parts = _members(value) if object_parts and is_object else None
        canonical = b"{" + b",".join(parts.values()) + b"}" if parts is not None else _dumps(value)
    except TypeError:
        # orjson parses nesting its encoder refuses (~255 levels and more): far past any limit of ours.
        raise DocumentError(f"nesting deeper than {max_depth}", code="too_deep") from None
    if canonical == data and b"\\u" not in data:
        if is_object or type(value) is list:
            _scan(value, max_depth, 1)
        else:
            check_value(value, max_depth)
        return value, parts
    value = _strict_loads(data, max_depth)
    return value, (_members(value) if object_parts and type(value) is dict else None)


def encode_object(
    value: dict[str, Any], exclude: str, max_depth: int = DEFAULT_MAX_DEPTH
) -> tuple[bytes, bytes]:
    """`encode(value)` of a JSON object, and the canonical bytes of it without member `exclude`
    (what `decode_object` returns for those bytes), with one check of the value."""
    check_value(value, max_depth)
    return _dumps(value), _dumps({key: item for key, item in value.items() if key != exclude})


def decode(data: bytes, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse JSON bytes strictly (see module rules), or raise DocumentError saying what is wrong."""
    return _decode(data, max_depth, object_parts=False)[0]


def decode_object(
    data: bytes, exclude: str, max_depth: int = DEFAULT_MAX_DEPTH
) -> tuple[dict[str, Any], bytes]:
    """Parse a JSON object strictly; also return the canonical bytes of it without member `exclude`.

    Signed documents need both, and building the second from per-member encodings saves a full
    re-encoding of large catalogs.
    """
    value, parts = _decode(data, max_depth, object_parts=True)
    if parts is None or not isinstance(value, dict):
        raise DocumentError("document must be a JSON object", code="bad_document")
    return value, b"{" + b",".join(part for key, part in parts.items() if key != exclude) + b"}"
