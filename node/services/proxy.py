"""The steering entry `/svc/{name}/{path}`: each request proxied to a replica steering chooses.

The user's site comes from the `X-Cpnode-Site` header or the `cpnode_site` query parameter (both
taken off before the request goes on), else it is the node's own (`[services] site`); an unknown
site is a 400 (`unknown_site`). Bodies stream both ways: nothing is buffered whole, except an
answer of known length up to `BUFFERED_MAX` (64 KiB), which goes back in one write. Hop-by-hop
headers (RFC 9110 §7.6.1, and any the Connection header names) are not forwarded; the replica gets
`X-Forwarded-For`, `X-Forwarded-Host` and `X-Forwarded-Proto`, and the answer names the replica in
`X-Cpnode-Replica`. Proxied requests are counted in the HTTP metrics like any other; their access
log lines are at DEBUG (a 5xx stays at INFO), as users' traffic would drown the node's own log.

Failover: when the chosen replica cannot be reached, it is marked unhealthy and the request goes to
the next replica if that is safe: when no connection was made (nothing was sent), any request
whose body was not read yet; when a kept-alive connection was found closed, or the replica sent
nothing for `[services] read_timeout_s`, an idempotent one (GET, HEAD, OPTIONS, PUT, DELETE,
TRACE). Otherwise the answer is 502 (504 for the silence), as it is for a replica failing once it
took the request (the request may have had effects). What fails on the user's side is not held
against the replica: an upload that stops coming (the body deadline: 408) or is cut off (400
`upload_failed`), an upload over the node's body limit (413), a user who leaves mid-answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from node.errors import CodedError
from node.http.errors import ApiError
from node.http.middleware import QUIET
from node.services.errors import NoReplicaError, UploadError, UpstreamError, UpstreamTimeoutError
from node.services.runtime import ReplicaState, Runtime

RUNTIME = web.AppKey("services_runtime", Runtime)
SITE_HEADER = "X-Cpnode-Site"
SITE_QUERY = "cpnode_site"
REPLICA_HEADER = "X-Cpnode-Replica"
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def end_to_end(
    headers: CIMultiDict[str] | CIMultiDictProxy[str], *drop: str, dropped: frozenset[str] = HOP_BY_HOP
) -> CIMultiDict[str]:
    """`headers` without the hop-by-hop ones (and those named by Connection) nor `drop` (nor
    `dropped`, lower-case names worked out once); one pass, one copy."""
    gone = dropped.union(d.lower() for d in drop) if drop else dropped
    connection = headers.getall("Connection", ())
    if connection:
        gone = gone | {token.strip().lower() for value in connection for token in value.split(",")}
    return CIMultiDict([(k, v) for k, v in headers.items() if k.lower() not in gone])


_NOT_FORWARDED = HOP_BY_HOP | {"host", SITE_HEADER.lower()}
BUFFERED_MAX = 64 * 1024  # an answer of known length up to this is sent in one write; longer ones stream
_NO_BODY_STATUSES = frozenset({204, 304})
# What may be retried on the next replica: connecting failed, the kept-alive connection was found
# closed or reset (a killed replica's: ClientOSError, of which ClientConnectorError is one), or the
# replica was silent (aiohttp's timeouts are TimeoutErrors).
_UNREACHED = (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError, TimeoutError)


def _forward_headers(request: web.Request) -> CIMultiDict[str]:
    headers = end_to_end(request.headers, dropped=_NOT_FORWARDED)
    peer = request.remote or ""
    before = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{before}, {peer}" if before else peer
    headers["X-Forwarded-Host"] = request.host
    headers["X-Forwarded-Proto"] = request.scheme
    return headers


def _target(replica: ReplicaState, request: web.Request, name: str) -> URL:
    """The replica's URL for the request: its path after `/svc/{name}` and its query as sent (less
    `cpnode_site`), both still encoded."""
    tail = request.rel_url.raw_path[len(f"/svc/{name}") :] or "/"
    query = request.rel_url.raw_query_string
    if SITE_QUERY in request.rel_url.query:
        query = "&".join(p for p in query.split("&") if p.split("=", 1)[0] != SITE_QUERY)
    return URL(f"{replica.endpoint}{tail}" + (f"?{query}" if query else ""), encoded=True)


class _Body:
    """The request's body, streamed to a replica as it arrives; `started` once any of it was read
    (until then it can still go to another replica); `error` what failed in reading it (the user's
    side: the client library reports it as a failure to send)."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.started = False
        self.error: Exception | None = None

    async def blocks(self) -> AsyncIterator[bytes]:
        """The body's blocks as they arrive, up to the node's body limit."""
        limit, size = self.request.client_max_size, 0
        try:
            async for block in self.request.content.iter_any():
                self.started = True
                size += len(block)
                if size > limit:
                    raise ApiError(413, "body_too_large", f"request body exceeds {limit} bytes")
                yield block
        except Exception as exc:
            self.error = exc
            raise

    def failure(self) -> Exception:
        """The error to answer with for `error`: the body deadline's and the limit's as they are."""
        error = self.error
        assert error is not None
        if isinstance(error, CodedError):
            return error
        return UploadError(f"the request body was cut off: {error or type(error).__name__}")


async def steer(request: web.Request) -> web.StreamResponse:
    """`/svc/{name}/{tail}`: proxy the request to a replica of service `name`."""
    request[QUIET] = True  # users' traffic: counted in the metrics, its access lines at DEBUG
    runtime = request.app[RUNTIME]
    name = request.match_info["name"]
    runtime.state(name)  # 404 before anything else
    site = runtime.user_site(request.headers.get(SITE_HEADER) or request.query.get(SITE_QUERY))
    headers = _forward_headers(request)
    body = _Body(request) if request.body_exists else None
    retry = request.method in IDEMPOTENT
    tried: set[str] = set()
    assert runtime.http is not None
    timeout = runtime.proxy_timeout
    while True:
        try:
            replica = runtime.choose(name, site, tried)
        except NoReplicaError:
            if tried:
                raise UpstreamError(
                    f"every replica of {name!r} that was tried refused the connection", service=name
                ) from None
            raise
        tried.add(replica.id)
        replica.in_flight += 1
        try:
            upstream = await runtime.http.request(
                request.method,
                _target(replica, request, name),
                headers=headers,
                data=body.blocks() if body is not None else None,
                allow_redirects=False,
                timeout=timeout,
            )
        except BaseException as exc:
            replica.in_flight -= 1
            if body is not None and body.error is not None:
                raise body.failure() from None  # the user's body failed, not the replica
            if not isinstance(exc, _UNREACHED):
                raise
            never_connected = isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
            silent = isinstance(exc, TimeoutError) and not never_connected
            why = f"no answer within {timeout.sock_read:g} s" if silent else "connection failed"
            runtime.mark_failed(replica, f"{why}: {type(exc).__name__}")
            untouched = body is None or not body.started
            if untouched and (retry or never_connected):
                continue
            if silent:
                raise UpstreamTimeoutError(
                    f"replica {replica.id} of {name!r} sent nothing for {timeout.sock_read:g} s", service=name
                ) from None
            raise UpstreamError(
                f"replica {replica.id} of {name!r} could not be reached", service=name
            ) from None
        try:
            return await _relay(request, upstream, replica)
        finally:
            upstream.release()
            replica.in_flight -= 1


def _buffered(request: web.Request, upstream: aiohttp.ClientResponse) -> bool:
    """Whether the answer is short and of known length, so it goes back whole in one write."""
    length = upstream.content_length
    return (
        length is not None
        and length <= BUFFERED_MAX
        and request.method != "HEAD"
        and upstream.status >= 200
        and upstream.status not in _NO_BODY_STATUSES
    )


async def _relay(
    request: web.Request, upstream: aiohttp.ClientResponse, replica: ReplicaState
) -> web.StreamResponse:
    headers = end_to_end(upstream.headers)
    headers[REPLICA_HEADER] = replica.id
    if _buffered(request, upstream):
        try:
            body = await upstream.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            replica.failed += 1
            error = UpstreamTimeoutError if isinstance(exc, TimeoutError) else UpstreamError
            raise error(
                f"replica {replica.id} cut its answer short", service=request.match_info["name"]
            ) from None
        replica.served += 1
        return web.Response(status=upstream.status, reason=upstream.reason, body=body, headers=headers)
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
    await response.prepare(request)
    blocks = upstream.content.iter_any()
    while True:
        try:
            block = await anext(blocks)
        except StopAsyncIteration:
            break
        except (aiohttp.ClientError, TimeoutError):
            replica.failed += 1
            # The status line is sent: all that can be said now is a cut answer.
            if request.transport is not None:
                request.transport.close()
            return response
        try:
            await response.write(block)
        except ConnectionError:  # the user left: the replica did nothing wrong (its answer is dropped)
            upstream.close()
            return response
    replica.served += 1
    await response.write_eof()
    return response


def add_routes(app: web.Application) -> None:
    """Mount the steering entry."""
    app.router.add_route("*", "/svc/{name}", steer)
    app.router.add_route("*", "/svc/{name}/{tail:.*}", steer)
