"""HTTP errors as JSON: `{"error": code, "message": text}` with the right status, never a trace.

Handlers raise `ApiError` with a status; the packages raise their own coded errors, whose status
the error middleware finds in one table (`node.http.statuses`), and renders both the same way.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from node.errors import CodedError


class ApiError(CodedError):
    """An error response raised by a handler: its own HTTP status, machine-readable code, message."""

    def __init__(self, http_status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message, code, **details)
        self.http_status = http_status


def error_response(status: int, code: str, message: str, **details: Any) -> web.Response:
    """A JSON error response."""
    return web.json_response({"error": code, "message": message, **details}, status=status)


def bad_request(message: str, code: str = "bad_request", **details: Any) -> ApiError:
    """A 400 error."""
    return ApiError(400, code, message, **details)


def not_found(message: str, code: str = "not_found") -> ApiError:
    """A 404 error."""
    return ApiError(404, code, message)


# Codes for aiohttp's own HTTP exceptions, so clients get the same shape everywhere.
HTTP_STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "unavailable",
}
