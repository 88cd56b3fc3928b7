"""Calling peers: signed requests with time limits and response-size caps, over a guarded resolver.

Every connection resolves the partner's host through `GuardedResolver`, which refuses link-local,
metadata and (unless allow-listed) loopback addresses at connect time, so a DNS answer that
changes after the partner was added cannot point us at them.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from federation import canonical
from federation.errors import FederationError, PeerError, PeerTimeoutError, UnsafeURLError
from federation.httpsig import Identity, sign_request
from federation.partners import IPNetwork, check_address, split_url

JSON = "application/json"


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that drops refused addresses, failing when none is left."""

    def __init__(self, allowed: Sequence[IPNetwork]) -> None:
        self._inner = DefaultResolver()
        self._allowed = tuple(allowed)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            check_address(ipaddress.ip_address(result["host"]), self._allowed)
        return results

    async def close(self) -> None:
        await self._inner.close()


def make_session(allowed: Sequence[IPNetwork], timeout_s: float) -> aiohttp.ClientSession:
    """A client session for peer calls: guarded resolver, total and read time limits, no redirects."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allowed), limit=64, ttl_dns_cache=60)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(5.0, timeout_s), sock_read=timeout_s)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, raise_for_status=False)


@dataclass(frozen=True)
class PeerResponse:
    """A peer's answer: status and body bytes (already within the size cap)."""

    status: int
    body: bytes

    def json(self) -> Any:
        """The body parsed as strict canonical JSON; PeerError when it is not."""
        try:
            return canonical.decode(self.body)
        except FederationError as exc:
            raise PeerError(
                f"peer answered with bad JSON: {exc}", code="bad_response", status=self.status
            ) from None

    def error(self) -> tuple[str, str]:
        """The peer's `{"error", "message"}` pair, best effort."""
        try:
            data = canonical.decode(self.body)
        except FederationError:
            return "http_error", self.body[:200].decode("utf-8", "replace")
        if isinstance(data, dict):
            return str(data.get("error", "http_error")), str(data.get("message", ""))
        return "http_error", ""


class PeerClient:
    """Signed calls from this node (identity given by `identity()`) to one peer base URL."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        identity: Callable[[], Identity],
        peer: str,
        base_url: str,
        max_response_bytes: int,
        allowed: Sequence[IPNetwork],
        clock: Callable[[], int] = lambda: int(time.time()),
    ) -> None:
        self._session = session
        self._identity = identity
        self.peer = peer
        self.base_url = base_url.rstrip("/")
        self._max = max_response_bytes
        # aiohttp skips the resolver for IP literals, so those are checked here, before any socket.
        _, host, _ = split_url(self.base_url)
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            check_address(literal, allowed)
        self._clock = clock

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        token: str | None = None,
        signed: bool = True,
        max_bytes: int | None = None,
    ) -> PeerResponse:
        """Send one request; PeerTimeoutError/PeerError on timeouts, oversize (over `max_bytes` when
        given, else the client's cap) or connection faults."""
        url = self.base_url + path
        cap = self._max if max_bytes is None else min(max_bytes, self._max)
        headers = {"Accept": JSON}
        if body:
            headers["Content-Type"] = JSON
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if signed:
            headers = sign_request(
                self._identity(), method, url, body, to=self.peer, now_ts=self._clock(), headers=headers
            )
        try:
            async with self._session.request(
                method, url, data=body or None, headers=headers, allow_redirects=False
            ) as response:
                declared = response.content_length
                if declared is not None and declared > cap:
                    raise PeerError(f"{url} answered {declared} bytes, cap {cap}", code="response_too_large")
                chunks, size = [], 0
                async for chunk in response.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > cap:
                        raise PeerError(f"{url} sent more than {cap} bytes", code="response_too_large")
                    chunks.append(chunk)
                return PeerResponse(response.status, b"".join(chunks))
        except TimeoutError:
            raise PeerTimeoutError(f"{method} {url} timed out") from None
        except UnsafeURLError:
            raise
        except aiohttp.ClientError as exc:
            raise PeerError(f"{method} {url} failed: {exc}", code="unreachable") from None

    async def expect(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        token: str | None = None,
        signed: bool = True,
        max_bytes: int | None = None,
    ) -> PeerResponse:
        """Like `request`, but a non-2xx answer raises PeerError carrying the peer's error code."""
        response = await self.request(method, path, body, token, signed, max_bytes)
        if not 200 <= response.status < 300:
            code, message = response.error()
            raise PeerError(
                f"{method} {path}: peer answered {response.status} {code}: {message}",
                code=code,
                status=response.status,
            )
        return response
