"""Federation test helpers: real nodes on loopback that trust each other, and a scripted fake peer
with its own Ed25519 key that plays the attacker (signs, tampers, replays, serves bad documents)."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from nacl.signing import SigningKey

from federation import canonical, store
from federation.documents import sign_document
from federation.httpsig import Identity, sign_request
from federation.keydoc import build_key_document
from federation.keys import public_key_text
from federation.partners import Agreement, Partner
from federation.server import SERVICE
from federation.service import FederationService
from node.service import NodeServer
from tests.support.nodes import make_node_dir, offer_entry, running_node

FED_TOML = """
[federation]
allow_networks = ["127.0.0.0/8"]
sync_interval_s = 3600
key_refetch_interval_s = 60
max_trades_in_flight = 1
"""


def offer_toml(node: str, count: int = 2, pool: str = "pool-a", tags: str = '["gpu"]') -> str:
    """`[[offers]]` entries for a test node."""
    return "".join(
        offer_entry(f"{node}-{pool}-{i}", node, 10 + i, 10000 + i, pool=pool, networks='["rdma"]', tags=tags)
        for i in range(count)
    )


def service_of(server: NodeServer) -> FederationService:
    """The federation service inside a running in-process node."""
    runner = server._runner
    assert runner is not None
    return runner.app[SERVICE]


def public_key_of(server: NodeServer) -> str:
    """The node's pinned-able public key text."""
    assert server.ctx is not None
    return server.ctx.identity.public_key


def trust(a: NodeServer, b: NodeServer, agreement: Agreement | None = None) -> None:
    """Make `a` pin `b` as a partner (what `cpnode partners add` does)."""
    assert a.ctx is not None
    assert b.ctx is not None
    partner = Partner(b.ctx.name, (b.url,), public_key_of(b), agreement or Agreement())
    store.add_partner(a.ctx.engine, partner, int(time.time()))


@asynccontextmanager
async def nodes(
    tmp_path: Path, names: Sequence[str], db_urls: Sequence[str | None] | None = None, extra: str = ""
) -> AsyncIterator[list[NodeServer]]:
    """Start real nodes in this event loop, each with two config offers; stop them afterwards."""
    async with AsyncExitStack() as stack:
        servers = []
        for index, name in enumerate(names):
            db_url = db_urls[index] if db_urls else None
            config = make_node_dir(
                tmp_path, name, db_url=db_url, extra_toml=FED_TOML + extra + offer_toml(name)
            )
            servers.append(await stack.enter_async_context(running_node(config)))
        yield servers


class FakePeer:
    """A scripted peer with its own key: serves what a test tells it to, and sends crafted requests."""

    def __init__(self, name: str = "mallory") -> None:
        self.key = SigningKey.generate()
        self.identity = Identity(name, self.key)
        self.name = name
        self.url = ""
        self.routes: dict[tuple[str, str], Callable[[web.Request], Any]] = {}
        self.hits: dict[str, int] = {}
        self.target = "alpha"  # the node name requests are signed for unless told otherwise
        self.session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None

    @property
    def public_key(self) -> str:
        """The fake peer's public key text."""
        return public_key_text(self.key.verify_key)

    def key_document(self, now_ts: int | None = None, name: str | None = None) -> dict[str, Any]:
        """A valid self-signed key document (optionally for another name)."""
        now = now_ts or int(time.time())
        return build_key_document(name or self.name, self.key, now - 3600, (), now, 3600)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return web.json_response({"error": "not_found", "message": request.path}, status=404)
        result = handler(request)
        if hasattr(result, "__await__"):
            result = await result
        if isinstance(result, web.StreamResponse):
            return result
        return web.Response(body=canonical.encode(result), content_type="application/json")

    async def start(self) -> None:
        """Serve on 127.0.0.1 port 0."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self.routes[("GET", "/fed/v1/keys")] = lambda _r: self.key_document()
        self.session = aiohttp.ClientSession()

    async def stop(self) -> None:
        """Stop serving and close the client session."""
        if self.session is not None:
            await self.session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def partner(self, agreement: Agreement | None = None) -> Partner:
        """This fake peer as a partner record a real node pins."""
        return Partner(self.name, (self.url,), self.public_key, agreement or Agreement())

    def sign(
        self,
        method: str,
        url: str,
        body: bytes = b"",
        token: str | None = None,
        now_ts: int | None = None,
        validity_s: int = 60,
        identity: Identity | None = None,
        nonce: str | None = None,
        to: str = "",
    ) -> dict[str, str]:
        """Signed headers for a request (from this peer unless `identity` is given)."""
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return sign_request(
            identity or self.identity,
            method,
            url,
            body,
            to=to or self.target,
            now_ts=now_ts or int(time.time()),
            headers=headers,
            validity_s=validity_s,
            nonce=nonce,
        )

    async def send(
        self,
        method: str,
        url: str,
        body: bytes = b"",
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
    ) -> tuple[int, Any]:
        """Send a request exactly as given; return (status, parsed JSON or raw bytes)."""
        assert self.session is not None
        data: bytes | io.BytesIO | None = body or None
        if len(body) > 1024 * 1024:
            data = io.BytesIO(body)  # aiohttp warns about sending large raw bytes
        async with self.session.request(method, url, data=data, headers=headers or {}) as response:
            raw = await response.read()
        try:
            return response.status, canonical.decode(raw)
        except Exception:
            return response.status, raw

    async def login(self, node_url: str, node_name: str) -> str:
        """Log in to a real node the honest way; return the session token."""
        from federation.login import login_document

        url = node_url + "/fed/v1/login/challenge"
        status, challenge = await self.send("POST", url, b"", self.sign("POST", url, to=node_name))
        assert status == 200, challenge
        document = login_document(self.identity, node_name, challenge["challenge"], int(time.time()))
        body = canonical.encode(document)
        url = node_url + "/fed/v1/login"
        status, answer = await self.send("POST", url, body, self.sign("POST", url, body, to=node_name))
        assert status == 200, answer
        return str(answer["token"])

    def signed_document(self, document: dict[str, Any]) -> dict[str, Any]:
        """`document` signed by this peer."""
        return sign_document(document, self.key)


class Recorder:
    """A trade handler that counts calls and can hold a call open."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.release.set()
        self.entered = asyncio.Event()

    async def __call__(  # the settlement handler's signature
        self,
        partner: Partner,  # noqa: ARG002
        document: dict[str, Any],
    ) -> tuple[int, dict[str, Any]]:
        self.calls += 1
        self.entered.set()
        await self.release.wait()
        return 201, {"trade_id": document["trade_id"], "status": "accepted", "call": self.calls}


def trade_body(peer: FakePeer, trade_id: str, items: int = 1, audience: str = "alpha") -> bytes:
    """A signed trade request from the fake peer to `audience`."""
    document = {
        "type": "cpnode.trade-request.v1",
        "issuer": peer.name,
        "audience": audience,
        "trade_id": trade_id,
        "issued_ts": int(time.time()),
        "items": [{"offer_id": f"{audience}-pool-a-0", "units": 1, "hours": 1}] * items,
    }
    return canonical.encode(sign_document(document, peer.key))
