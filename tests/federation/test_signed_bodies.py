"""Signed peer request bodies against a real node: read whole however they arrive, refused with 413
over the limit (chunked too), and hostile nesting inside a correctly signed body answered 4xx."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from federation import store
from node.service import NodeServer
from tests.support.federation import FakePeer, nodes

CHALLENGE = "/fed/v1/login/challenge"
DEEP = b'{"type":' + b"[" * 1000 + b"]" * 1000 + b"}"


@pytest.fixture(name="alpha")
async def fixture_alpha(tmp_path: Path, fake_peer: FakePeer) -> AsyncIterator[NodeServer]:
    """A real node that pins the fake peer as a partner."""
    async with nodes(tmp_path, ["alpha"]) as (alpha,):
        assert alpha.ctx is not None
        store.add_partner(alpha.ctx.engine, fake_peer.partner(), int(time.time()))
        yield alpha


def _padded(size: int) -> bytes:
    """A JSON object of exactly `size` bytes."""
    head = b'{"pad":"'
    return head + b"x" * (size - len(head) - 2) + b'"}'


@pytest.mark.parametrize("size", [200_000, 900_000], ids=["200KB", "900KB"])
async def test_large_signed_bodies_are_read_whole(alpha: NodeServer, fake_peer: FakePeer, size: int) -> None:
    """A correctly signed 200 KB or 900 KB body verifies: the whole body is read, not what was buffered."""
    url = alpha.url + CHALLENGE
    body = _padded(size)
    status, answer = await fake_peer.send("POST", url, body, fake_peer.sign("POST", url, body))
    assert status == 200, answer
    assert "challenge" in answer


async def test_body_sent_in_two_writes(alpha: NodeServer, fake_peer: FakePeer) -> None:
    """A 400-byte signed body whose second half arrives after a pause is read whole (raw socket)."""
    url = alpha.url + CHALLENGE
    body = _padded(400)
    headers = fake_peer.sign("POST", url, body)
    parts = urlsplit(alpha.url)
    head = f"POST {CHALLENGE} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "Connection: close\r\n\r\n"
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head.encode() + body[:200])
        await writer.drain()
        await asyncio.sleep(0.3)  # the stimulus: the server reads the first half before the rest exists
        writer.write(body[200:])
        await writer.drain()
        async with asyncio.timeout(10):
            response = await reader.read()
    finally:
        writer.close()
    status_line = response.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 200"), response[:500]


async def test_chunked_body_over_limit_is_413(alpha: NodeServer, fake_peer: FakePeer) -> None:
    """A chunked (no Content-Length) signed body over the limit is refused with 413, never cut short."""
    assert alpha.ctx is not None
    limit = alpha.ctx.settings.federation.max_request_bytes
    url = alpha.url + CHALLENGE
    body = _padded(limit + 64 * 1024)
    headers = fake_peer.sign("POST", url, body)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    assert fake_peer.session is not None
    async with fake_peer.session.post(url, data=chunks(), headers=headers) as response:
        assert "Content-Length" not in response.request_info.headers
        answer = await response.json()
    assert (response.status, answer["error"]) == (413, "too_large"), answer


async def test_deep_signed_trade_and_login_bodies_are_4xx(alpha: NodeServer, fake_peer: FakePeer) -> None:
    """Correctly signed bodies 1,000 levels deep on every signed route that parses one answer 400 too_deep."""
    token = await fake_peer.login(alpha.url, "alpha")
    routes = [
        ("/fed/v1/trades", token),
        ("/fed/v1/login", None),
        ("/fed/v1/trades/t-1/settlement", token),
        ("/fed/v1/ledger/summary", token),
    ]
    for path, session in routes:
        url = alpha.url + path
        status, answer = await fake_peer.send("POST", url, DEEP, fake_peer.sign("POST", url, DEEP, session))
        assert (status, answer["error"]) == (400, "too_deep"), (path, answer)
