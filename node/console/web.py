"""The console's edge: who is signed in (a sealed cookie), the CSRF check on every form, the
operator-only guard, and how API refusals become pages.

Every page handler receives a `Page`: the request, the session, a `NodeApi` that calls the node's
own API as the signed-in person, and the form (already CSRF-checked for a POST).
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

import aiohttp
from aiohttp import web
from multidict import MultiDictProxy

from node.console.api import ApiRefused, NodeApi
from node.console.render import html_response, make_environment, render
from node.console.session import COOKIE_NAME, Session, SessionKeys
from node.console.settings import ConsoleSection

if TYPE_CHECKING:
    import jinja2

PRE_COOKIE = "cpnode_console_signin"
MAX_FORM_BYTES = 256 * 1024


@dataclass
class Console:
    """The console's shared state in one process."""

    settings: ConsoleSection
    keys: SessionKeys
    node_name: str
    currency: str = "CNY"  # the node's trading currency (`[trading] currency`), for report figures
    http: aiohttp.ClientSession | None = None

    @functools.cached_property
    def env(self) -> jinja2.Environment:
        """The template environment, made when the first page is rendered: Jinja2 loads then,
        not when the node starts."""
        return make_environment()

    @property
    def prefix(self) -> str:
        """The path the console is served at, ending in '/'."""
        return self.settings.path

    def url(self, path: str = "") -> str:
        """A console URL: `url("orders")` is `/orders` when served at `/`."""
        return self.prefix + path.lstrip("/")

    def session_of(self, request: web.Request) -> Session | None:
        """The request's session, if its cookie holds a valid one."""
        return self.keys.open(request.cookies.get(COOKIE_NAME), int(time.time()))

    def set_cookie(
        self, response: web.StreamResponse, request: web.Request, name: str, value: str, max_age_s: int
    ) -> None:
        """Set one of the console's cookies: HttpOnly, SameSite=Strict, on the console's path."""
        response.set_cookie(
            name,
            value,
            max_age=max_age_s,
            path=self.prefix,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
        )


CONSOLE = web.AppKey("console", Console)


@dataclass
class Page:
    """One browser request to a console page."""

    request: web.Request
    console: Console
    session: Session
    api: NodeApi
    form: MultiDictProxy[str | bytes | bytearray | web.FileField] | None

    @property
    def csrf(self) -> str:
        """The session's CSRF token, for the forms the page renders."""
        return self.console.keys.csrf_token(self.session)

    @property
    def fragment(self) -> bool:
        """Whether htmx asked for the page's live part only."""
        return self.request.headers.get("HX-Request") == "true"

    def field(self, name: str, default: str = "") -> str:
        """A text field of the form (stripped), or `default`."""
        value = self.form.get(name) if self.form is not None else None
        return value.strip() if isinstance(value, str) else default

    def render(self, template: str, status: int = 200, **values: Any) -> web.Response:
        """Render a page template with the common values (session, CSRF token, URLs)."""
        return render(
            self.console.env,
            template,
            status,
            console=self.console,
            session=self.session,
            csrf=self.csrf,
            path=self.request.path,
            fragment=self.fragment,
            **values,
        )

    def redirect(self, path: str) -> NoReturn:
        """See-other to a console path (after a form)."""
        raise web.HTTPSeeOther(self.console.url(path))


Handler = Callable[[Page], Awaitable[web.StreamResponse]]


def error_page(
    console: Console, request: web.Request, session: Session | None, status: int, title: str, message: str
) -> web.Response:
    """A console error page with `status`."""
    return render(
        console.env,
        "error.html",
        status,
        console=console,
        session=session,
        csrf=console.keys.csrf_token(session) if session else "",
        path=request.path,
        fragment=False,
        title=title,
        message=message,
    )


def signin_redirect(console: Console, request: web.Request) -> web.Response:
    """Off to the sign-in page, coming back to where the person was going."""
    response = web.Response(status=303)
    response.headers["Location"] = console.url("signin") + "?next=" + quote(request.path_qs, safe="")
    response.del_cookie(COOKIE_NAME, path=console.prefix)
    return response


def page(
    *, operator: bool = False
) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.StreamResponse]]]:
    """Wrap a page handler: signed in or sent to sign in; operator pages refuse a consumer's
    session (the API would too); every POST carries the session's CSRF token or is refused;
    the API's refusals become error pages with the same status."""

    def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            console = request.app[CONSOLE]
            session = console.session_of(request)
            if session is None:
                if request.method != "GET":
                    return error_page(
                        console, request, None, 401, "Signed out", "Your session has ended; sign in again."
                    )
                return signin_redirect(console, request)
            if operator and not session.is_admin:
                return error_page(
                    console, request, session, 403, "Not allowed", "This page is for the node's operator."
                )
            form = None
            if request.method == "POST":
                form = await request.post()
                token = form.get("csrf")
                if not console.keys.csrf_ok(session, token if isinstance(token, str) else None):
                    return error_page(
                        console,
                        request,
                        session,
                        403,
                        "Form refused",
                        "The form has no valid CSRF token; reload the page and try again.",
                    )
            assert console.http is not None
            api = NodeApi(console.http, request, session.token)
            try:
                return await handler(Page(request, console, session, api, form))
            except ApiRefused as exc:
                if exc.status == 401:
                    return signin_redirect(console, request)
                titles = {403: "Not allowed", 404: "Not found"}
                return error_page(
                    console,
                    request,
                    session,
                    exc.status,
                    titles.get(exc.status, "Refused"),
                    f"{exc} ({exc.code})",
                )

        serve.__doc__ = handler.__doc__
        serve.__name__ = handler.__name__
        return serve

    return wrap


async def signin_form(request: web.Request) -> web.StreamResponse:
    """`GET signin`: the sign-in form (a fresh pre-session CSRF value in a cookie and the form)."""
    console = request.app[CONSOLE]
    value = secrets.token_urlsafe(24)
    response = render(
        console.env,
        "signin.html",
        title="Sign in",
        console=console,
        session=None,
        csrf=value,
        path=request.path,
        fragment=False,
        next=_safe_next(console, request.query.get("next", "")),
        problem=None,
    )
    console.set_cookie(response, request, PRE_COOKIE, value, 600)
    return response


def _safe_next(console: Console, target: str) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if target.startswith(console.prefix) and not target.startswith("//") and "\\" not in target:
        return target
    return console.prefix


async def signin(request: web.Request) -> web.StreamResponse:
    """`POST signin`: check the token with the API (`/api/v1/whoami`), then seal it in a session."""
    console = request.app[CONSOLE]
    if request.content_length is not None and request.content_length > MAX_FORM_BYTES:
        return error_page(console, request, None, 413, "Too large", "The form is too large.")
    form = await request.post()
    expected = request.cookies.get(PRE_COOKIE, "")
    sent = form.get("csrf")
    if not expected or not isinstance(sent, str) or not secrets.compare_digest(expected, sent):
        return error_page(
            console,
            request,
            None,
            403,
            "Form refused",
            "The form has no valid CSRF token; reload the page and try again.",
        )
    token = form.get("token")
    token = token.strip() if isinstance(token, str) else ""
    next_path = _safe_next(console, str(form.get("next") or ""))
    who = None
    if token:
        assert console.http is not None
        try:
            who = await NodeApi(console.http, request, token).get("/api/v1/whoami")
        except ApiRefused:
            who = None
    if who is None:
        response = render(
            console.env,
            "signin.html",
            401,
            title="Sign in",
            console=console,
            session=None,
            csrf=expected,
            path=request.path,
            fragment=False,
            next=next_path,
            problem="That token is not valid here (not the admin token, nor a consumer token that is still valid).",
        )
        return response
    session = console.keys.new_session(
        token,
        who.get("consumer"),
        int(time.time()),
        console.settings.session_hours * 3600,
        role=str(who.get("role") or ""),
        user=who.get("user"),
    )
    response = web.Response(status=303)
    response.headers["Location"] = next_path
    console.set_cookie(
        response, request, COOKIE_NAME, console.keys.seal(session), console.settings.session_hours * 3600
    )
    response.del_cookie(PRE_COOKIE, path=console.prefix)
    return response


async def signout(request: web.Request) -> web.StreamResponse:
    """`POST signout`: drop the session cookie (CSRF-checked like every form)."""
    console = request.app[CONSOLE]
    session = console.session_of(request)
    if session is not None:
        form = await request.post()
        token = form.get("csrf")
        if not console.keys.csrf_ok(session, token if isinstance(token, str) else None):
            return error_page(
                console,
                request,
                session,
                403,
                "Form refused",
                "The form has no valid CSRF token; reload the page and try again.",
            )
    response = web.Response(status=303)
    response.headers["Location"] = console.url("signin")
    response.del_cookie(COOKIE_NAME, path=console.prefix)
    return response


def add_security_headers(response: web.StreamResponse) -> web.StreamResponse:
    """Return `response` with the console's security headers."""
    from node.console.render import SECURITY_HEADERS

    response.headers.update(SECURITY_HEADERS)
    return response


__all__ = ["CONSOLE", "Console", "Page", "html_response", "page", "signin", "signin_form", "signout"]
