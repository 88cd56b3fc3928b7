"""The compute gateway (算力网关), node side: registration codes, and the route gateways register on.

An operator turns a bare host into a managed pool with one command, `cpnode gateway --code CODE`:
the host runs the `local` pool as an out-of-process plugin (the remote plugin protocol) and
registers with the node. The code is a document the node signs with its own key:

    {type: "cpnode.gateway-code", issuer: <node>, pool, code_id, node_url, issued_ts, expires_ts}

as base64url of its canonical JSON. It is short-lived (10 minutes by default, at most a day) and
single use: the registration route checks the signature against this node's own keys, the type,
the times, and marks the code id used in the database (any replica refuses a second use). A
registration that does not go through releases the code. The gateway then gets a standing token
(stored here as its SHA-256) with which it registers again after a restart, without a new code;
removing the pool (`DELETE /api/v1/plugins/NAME`) forgets that token.

Routes: `POST /api/v1/gateway/codes` (admin) issues a code; `POST /api/v1/gateway/register` takes
`{code | pool + gateway_token, url, call_token, version}` and answers the heartbeat token.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import Field, model_validator

from connectors.errors import ConnectorError
from connectors.gateway_store import GatewayStore
from connectors.host import PluginHost
from federation.canonical import encode
from federation.documents import load_document, sign_document, verify_document
from federation.errors import FederationError
from federation.keys import b64url, b64url_decode
from node.context import CTX, NodeContext
from node.db import in_thread
from node.http.body import parse_body
from node.http.errors import ApiError
from node.pools.routes import NAME, _Body, plugin_view

CODE_TYPE = "cpnode.gateway-code"
MAX_CODE_CHARS = 4096
_FIELDS: dict[str, type] = {
    "issuer": str,
    "pool": str,
    "code_id": str,
    "node_url": str,
    "issued_ts": int,
    "expires_ts": int,
}


class CodeRequest(_Body):
    """Which pool a gateway code registers, and for how long it may be used."""

    pool: str = Field(pattern=NAME)
    ttl_s: int = Field(default=600, ge=60, le=86_400)


class GatewayRegistration(_Body):
    """A gateway registering: by a code the first time, by its standing token afterwards."""

    url: str = Field(pattern=r"^https?://\S+$", max_length=500)
    call_token: str = Field(min_length=16, max_length=200)
    version: str = Field(default="?", max_length=200)
    code: str | None = Field(default=None, max_length=MAX_CODE_CHARS)
    pool: str | None = Field(default=None, pattern=NAME)
    gateway_token: str | None = Field(default=None, min_length=16, max_length=200)

    @model_validator(mode="after")
    def _one_way(self) -> GatewayRegistration:
        if (self.code is None) == (self.gateway_token is None) or (self.gateway_token and not self.pool):
            raise ValueError("give either 'code', or 'pool' with 'gateway_token'")
        return self


@dataclass(frozen=True)
class GatewayCode:
    """What a gateway code states."""

    issuer: str
    pool: str
    code_id: str
    node_url: str
    issued_ts: int
    expires_ts: int

    def document(self) -> dict[str, Any]:
        """The unsigned document (canonical-JSON-ready: strings and integers only)."""
        return {"type": CODE_TYPE, **dataclasses.asdict(self)}


def _refused(message: str, code: str = "bad_gateway_code") -> ApiError:
    return ApiError(401, code, message)


def read_code(code: str) -> dict[str, Any]:
    """The document inside a code, unverified (what the gateway reads its pool and node from)."""
    if not isinstance(code, str) or len(code) > MAX_CODE_CHARS:
        raise _refused("a gateway code is a base64url string of at most 4096 characters")
    try:
        document, _payload = load_document(b64url_decode(code.strip()))
    except (ValueError, FederationError):
        raise _refused("not a gateway code (it does not decode to a signed document)") from None
    if document.get("type") != CODE_TYPE:
        raise _refused(f"not a gateway code (type must be {CODE_TYPE!r})")
    return document


def issue_code(ctx: NodeContext, pool: str, ttl_s: int, now_ts: int) -> tuple[str, GatewayCode]:
    """A new single-use code for `pool`, signed by the node's key."""
    claim = GatewayCode(ctx.name, pool, secrets.token_hex(16), ctx.base_url, now_ts, now_ts + ttl_s)
    signed = sign_document(claim.document(), ctx.identity.signing_key)
    return b64url(encode(signed)), claim


def verify_code(ctx: NodeContext, code: str, now_ts: int) -> GatewayCode:
    """The claim of a code this node signed and that is valid now; a 401 naming what is wrong otherwise."""
    document = read_code(code)
    keys = {kid: record.verify_key() for kid, record in ctx.identity.records().items()}
    try:
        verify_document(document, ctx.name, keys)
    except FederationError:
        raise _refused("the gateway code is not signed by this node") from None
    values: dict[str, Any] = {}
    for name, kind in _FIELDS.items():
        value = document.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _refused(f"gateway code field {name!r} must be a {kind.__name__}")
        values[name] = value
    claim = GatewayCode(**values)
    if claim.issued_ts > now_ts + 60:
        raise _refused("the gateway code is not valid yet")
    if now_ts >= claim.expires_ts:
        raise _refused("the gateway code has expired; issue a new one", code="gateway_code_expired")
    return claim


def add_routes(app: web.Application, host: PluginHost) -> None:
    """Mount the gateway routes over `host`."""

    async def codes(request: web.Request) -> web.Response:
        ctx = request.app[CTX]
        ctx.require_admin(request)
        body = await parse_body(request, CodeRequest)
        _check_name(host, body.pool)
        code, claim = issue_code(ctx, body.pool, body.ttl_s, int(time.time()))
        answer = {
            "pool": claim.pool,
            "code": code,
            "code_id": claim.code_id,
            "node_url": claim.node_url,
            "expires_ts": claim.expires_ts,
            "command": f"cpnode gateway --code {code} --root DIR",
        }
        return web.json_response(answer, status=201)

    async def register(request: web.Request) -> web.Response:
        ctx = request.app[CTX]
        body = await parse_body(request, GatewayRegistration)
        store = GatewayStore(ctx.engine)
        now_ms = int(time.time() * 1000)
        standing = None
        if body.code is not None:
            claim = verify_code(ctx, body.code, now_ms // 1000)
            pool = claim.pool
            _check_name(host, pool)
            if not await in_thread(ctx.engine, lambda _engine: store.use_code(claim.code_id, pool, now_ms)):
                raise ApiError(
                    409, "gateway_code_used", "this gateway code was used already; issue a new one"
                )
            try:
                hosted, heartbeat = await host.add_remote(pool, body.url, body.call_token)
            except ConnectorError:
                await in_thread(ctx.engine, lambda _engine: store.release_code(claim.code_id))
                raise
            standing = secrets.token_urlsafe(32)
            await in_thread(ctx.engine, lambda _engine: store.set_token(pool, standing, now_ms))
        else:
            assert body.pool is not None
            given = body.gateway_token
            assert given is not None
            pool = body.pool
            if not await in_thread(ctx.engine, lambda _engine: store.token_matches(pool, given)):
                raise _refused("unknown pool or wrong gateway token", code="bad_gateway_token")
            _check_name(host, pool)
            hosted, heartbeat = await host.add_remote(pool, body.url, body.call_token)
        await host.refresh([pool])
        answer = {
            **plugin_view(host, hosted),
            "heartbeat_token": heartbeat,
            "heartbeat_interval_s": host.settings.heartbeat_interval_s,
        }
        if standing is not None:
            answer["gateway_token"] = standing
        return web.json_response(answer, status=201)

    app.router.add_post("/api/v1/gateway/codes", codes)
    app.router.add_post("/api/v1/gateway/register", register)


def _check_name(host: PluginHost, pool: str) -> None:
    """A gateway may take a new name or its own (remote) one, never an in-process pool's."""
    hosted = next((h for h in host.plugins() if h.name == pool), None)
    if hosted is not None and hosted.source != "remote":
        raise ApiError(
            409, "pool_exists", f"pool {pool!r} is hosted in the node; a gateway cannot take its name"
        )
