"""The one way every `/api/v1` route reads a JSON request body: bounded in size and depth.

The body size is capped by the middleware before a handler runs (413). Here the bytes are parsed
with orjson, whose parser stops at a fixed nesting limit instead of recursing without bound, and the
result is walked once, without recursion, to refuse anything nested deeper than `MAX_DEPTH`. So a
hostile body costs time linear in its size and is answered 400, never a 500.

    data = await json_object(request)          # a JSON object ({} for an empty body)
    body = await parse_body(request, Model)    # validated by a pydantic model, 400 naming the field
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from node.http.errors import bad_request

MAX_DEPTH = 32
"""Deepest nesting any API body may have; the deepest real body (a demand) is 4 levels."""

M = TypeVar("M", bound=BaseModel)


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Raise a 400 `too_deep` if `value` nests containers deeper than `max_depth` (iterative walk)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise bad_request(f"body nests deeper than {max_depth} levels", code="too_deep")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def loads(raw: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON bytes (400 `bad_json` if they are not JSON, `too_deep` if nested too deep)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc) or "recursion" in str(exc).lower():
            raise bad_request(f"body nests deeper than {max_depth} levels", code="too_deep") from None
        raise bad_request(f"body is not JSON: {exc}", code="bad_json") from None
    check_depth(value, max_depth)
    return value


async def read_json(request: web.Request, max_depth: int = MAX_DEPTH) -> Any:
    """The request's JSON body (None when there is no body)."""
    raw = await request.read() if request.can_read_body else b""
    if not raw.strip():
        return None
    return loads(raw, max_depth)


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body (an empty body is `{}`); 400 otherwise."""
    data = await read_json(request)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise bad_request("body must be a JSON object")
    return data


def validate(model: type[M], data: Any) -> M:
    """`data` validated by `model`; a 400 naming the first field at fault otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise bad_request(f"{where}: {first['msg']}", code="bad_request", field=where) from None


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The request's JSON object body validated by `model` (400 naming the field on any fault)."""
    return validate(model, await json_object(request))
