"""Error answers of console routes as console pages: what the node's middleware answers in JSON
before a console handler runs or around it (an upload over the body limit: 413; a body too slow:
408; a method a route does not take: 405; an internal error: 500) reaches a browser as the
console's own error page, with the same status.

The conversion is a middleware outside the node's own, so it sees the node's final answer. A
request is the console's when it matched a route whose handler is the console's (not its static
files), or matched none under the console's path outside the API's paths and was sent by a browser
(Accept: text/html).
"""

from __future__ import annotations

import json

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from node.console.settings import API_PATHS
from node.console.web import CONSOLE, error_page

TITLES = {
    400: "Bad request",
    401: "Signed out",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    408: "Too slow",
    413: "Too large",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Unavailable",
}
KEPT_HEADERS = ("X-Request-Id", "Retry-After", "Allow")
CONSOLE_PACKAGE = "node.console."


def error_pages(prefix: str) -> Middleware:
    """The middleware that answers JSON errors of the console's routes (or of no route, under
    `prefix`) with console error pages."""

    def is_console(request: web.Request) -> bool:
        route = request.match_info.route
        if route.resource is not None:
            return getattr(route.handler, "__module__", "").startswith(CONSOLE_PACKAGE)
        # A path that is no route is a console page only for a browser (Accept: text/html): an API
        # client asking for a wrong path gets the API's JSON 404 even with the console at `/`.
        return (
            request.path.startswith(prefix)
            and not request.path.startswith(API_PATHS)
            and "text/html" in request.headers.get("Accept", "")
        )

    @web.middleware
    async def pages(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if response.status < 400 or not isinstance(response, web.Response) or not is_console(request):
            return response
        found = _error_of(response)
        if found is None:
            return response
        code, message = found
        console = request.app[CONSOLE]
        title = TITLES.get(response.status, "Refused")
        page = error_page(
            console, request, console.session_of(request), response.status, title, f"{message} ({code})"
        )
        for name in KEPT_HEADERS:
            if name in response.headers:
                page.headers[name] = response.headers[name]
        return page

    return pages


def _error_of(response: web.Response) -> tuple[str, str] | None:
    """(code, message) of a JSON error answer, or None for any other answer."""
    if response.content_type != "application/json" or not isinstance(response.body, bytes):
        return None
    try:
        data = json.loads(response.body)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("error"), str):
        return None
    return data["error"], str(data.get("message") or data["error"])
