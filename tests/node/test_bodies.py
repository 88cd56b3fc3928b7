"""Hostile JSON bodies on `/api/v1`: deep nesting and bad JSON get a clear 400 on every route that
reads a body, for the admin and for a consumer token, and change nothing."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from node.http.body import MAX_DEPTH, check_depth, loads
from node.http.errors import ApiError
from tests.support.trading import market

DEEP = b"[" * 200_000 + b"]" * 200_000
ORJSON_DEEP = b"[" * 300 + b"]" * 300

ADMIN_ROUTES = [
    "/api/v1/orders",
    "/api/v1/match",
    "/api/v1/orders/o-1/settle",
    "/api/v1/consumers",
    "/api/v1/consumers/alice/deposits",
    "/api/v1/ledger/accounts",
    "/api/v1/ledger/transfers",
    "/api/v1/plugins",
    "/api/v1/plugins/none/check",
    "/api/v1/tasks",
    "/api/v1/tasks/t-1/stop",
]
# Settling by hand is the operator's correction: consumer tokens do not reach its body.
CONSUMER_ROUTES = ["/api/v1/orders", "/api/v1/match", "/api/v1/tasks", "/api/v1/tasks/t-1/stop"]


def test_depth_check_is_iterative_and_exact() -> None:
    """Nesting at the limit parses; one level more is `too_deep`; far beyond never recurses."""
    at_limit = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert loads(at_limit) == loads(at_limit)
    for raw in (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), ORJSON_DEEP, DEEP):
        with pytest.raises(ApiError) as caught:
            loads(raw)
        assert (caught.value.http_status, caught.value.code) == (400, "too_deep")
    value: list[object] = []
    cursor = value
    for _ in range(100_000):
        inner: list[object] = []
        cursor.append(inner)
        cursor = inner
    with pytest.raises(ApiError):
        check_depth(value)


def test_bad_json_is_named() -> None:
    """Bytes that are not JSON are `bad_json`, never a parser's exception."""
    for raw in (b"{", b"\xff", b"NaN", b'{"a": 1,}'):
        with pytest.raises(ApiError) as caught:
            loads(raw)
        assert caught.value.code == "bad_json"


async def _post(http: aiohttp.ClientSession, path: str, raw: bytes) -> tuple[int, dict[str, object]]:
    async with http.post(path, data=raw, headers={"Content-Type": "application/json"}) as response:
        return response.status, await response.json()


async def test_deep_bodies_are_refused_everywhere(tmp_path: Path) -> None:
    """200,000 nested brackets on every body-reading route: 400 too_deep, no order, no money moved."""
    async with market(tmp_path) as m:
        before = await m.consumer()
        for path in ADMIN_ROUTES:
            for raw in (DEEP, b'{"consumer": ' + ORJSON_DEEP + b"}"):
                status, body = await _post(m.buyer_http, path, raw)
                assert status == 400, (path, body)
                assert body["error"] in {"too_deep", "bad_request"}, (path, body)
        status, token = await m.post("/api/v1/consumers/alice/tokens", {})
        assert status == 201, token
        async with aiohttp.ClientSession(
            m.buyer.url, headers={"Authorization": f"Bearer {token['token']}"}
        ) as http:
            for path in CONSUMER_ROUTES:
                status, body = await _post(http, path, DEEP)
                assert (status, body["error"]) == (400, "too_deep"), (path, body)
        assert await m.consumer() == before
        status, orders = await m.get("/api/v1/orders")
        assert orders["orders"] == []
