"""Middleware wrapped around every route: body-size limit, errors as JSON, access log, metrics.

An error with `http_status` and `code` is answered as such; a database that cannot be used right
now (node.db.database_unavailable) is 503 `database_unavailable` with Retry-After, logged as one
line at most once a second; anything else is a 500 with its traceback in the log."""

from __future__ import annotations

import logging
import secrets
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from node.db import database_unavailable
from node.http.errors import HTTP_STATUS_CODES, error_response
from node.http.guard import BodyTimeoutError, body_deadline
from node.http.statuses import status_for
from node.logs import RateLimiter
from node.metrics import Metrics

access_log = logging.getLogger("cpnode.access")
log = logging.getLogger("cpnode.http")
_database_log = RateLimiter(interval_s=1.0)


def _route_name(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.route is not None else None
    return resource.canonical if resource is not None else "unmatched"


def _render_exception(exc: BaseException, request_id: str) -> web.Response:
    status = status_for(exc)
    code = getattr(exc, "code", None)
    if isinstance(status, int) and isinstance(code, str) and 400 <= status < 600:
        details = getattr(exc, "details", None) or {}
        headers = getattr(exc, "headers", None)
        response = error_response(status, code, str(exc), **details)
        if isinstance(headers, dict):
            response.headers.update(headers)
        return response
    reason = database_unavailable(exc)
    if reason is not None:
        # The database's failure, not the request's: a clear 503 the client retries, one log line.
        held = _database_log.admit("database_unavailable")
        if held is not None:
            more = f" ({held} more since the last report)" if held else ""
            log.warning("request %s: the database is unavailable: %s%s", request_id, reason, more)
        response = error_response(503, "database_unavailable", "the database is unavailable; retry shortly")
        response.headers["Retry-After"] = "1"
        return response
    log.error("unhandled error in request %s", request_id, exc_info=exc)
    return error_response(500, "internal", f"internal error; see the node log for request {request_id}")


def make_middlewares(metrics: Metrics, max_body_bytes: int, body_timeout_s: float = 60.0) -> list[Middleware]:
    """The node's middleware chain, outermost first."""

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request.headers.get("X-Request-Id", "")[:64] or secrets.token_hex(8)
        started = time.monotonic()
        try:
            response = await _guarded(request, handler, request_id)
        except BaseException:
            # Client disconnects and cancellation: record, then let aiohttp handle them.
            _record(metrics, request, 499, started, request_id)
            raise
        response.headers.setdefault("X-Request-Id", request_id)
        _record(metrics, request, response.status, started, request_id)
        return response

    async def _guarded(request: web.Request, handler: Handler, request_id: str) -> web.StreamResponse:
        limit = request.app.get(BODY_LIMIT_KEY, max_body_bytes)
        if request.content_length is not None and request.content_length > limit:
            response = error_response(413, "body_too_large", f"request body exceeds {limit} bytes")
            response.force_close()  # do not read the rest of an oversized body
            return response
        deadline = body_deadline(request, body_timeout_s)
        try:
            return await handler(request)
        except BodyTimeoutError as exc:
            response = _render_exception(exc, request_id)
            response.force_close()  # the rest of the body is not worth waiting for
            return response
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = HTTP_STATUS_CODES.get(exc.status, "http_error")
            message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
            response = error_response(exc.status, code, message or exc.reason)
            for name in ("Allow", "Retry-After", "WWW-Authenticate"):
                if name in exc.headers:
                    response.headers[name] = exc.headers[name]
            return response
        except Exception as exc:
            return _render_exception(exc, request_id)
        finally:
            if deadline is not None:
                deadline.cancel()

    return [observe]


QUIET = web.RequestKey("cpnode_quiet", bool)  # set by a handler: its access line at DEBUG (below 500)


def _record(metrics: Metrics, request: web.Request, status: int, started: float, request_id: str) -> None:
    elapsed = time.monotonic() - started
    route = _route_name(request)
    metrics.http_requests.labels(route, request.method, str(status)).inc()
    metrics.http_latency.labels(route, request.method).observe(elapsed)
    level = logging.DEBUG if status < 500 and request.get(QUIET) else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    access_log.log(
        level,
        "%s %s %d %.1fms",
        request.method,
        request.path,
        status,
        elapsed * 1000,
        extra={
            "request_id": request_id,
            "method": request.method,
            "path": request.path,
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
            "remote": request.remote,
        },
    )


BODY_LIMIT_KEY = web.AppKey("body_limit", int)
