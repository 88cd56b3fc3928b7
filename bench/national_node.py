"""A light federation node for the national-scale benchmark: the real peer API (`federation.server`)
and sync (`federation.sync`) over its own SQLite file, without the rest of a node (no ledger,
trading, pools or scheduler), so a hundred of them fit in a few processes.

Each node counts the bytes its server receives and sends (request line, headers and body, both
ways) and the bytes of the requests it makes, so a round's traffic is measured from both ends.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from nacl.signing import SigningKey
from sqlalchemy.engine import Engine

from federation import canonical, store
from federation.errors import FederationError
from federation.httpsig import Identity
from federation.keydoc import KeyRecord, build_key_document
from federation.keys import key_id, public_key_text
from federation.partners import Agreement, Partner, parse_allow_list
from federation.server import add_routes
from federation.service import FederationService, FederationSettings, OwnKeys
from node.db import make_engine, upgrade
from node.http.statuses import status_for

LOOPBACK = parse_allow_list(["127.0.0.0/8"])
CHIPS = [
    ("nvidia", "A100-80G", 8),
    ("nvidia", "H800", 8),
    ("huawei", "Ascend-910B", 8),
    ("hygon", "DCU-Z100", 4),
]


def migrated_template(folder: Path) -> Path:
    """A migrated empty database to copy for each node (migrating a hundred would take minutes)."""
    path = folder / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


class Offers:
    """A node's own offers; `content_version()` lets catalog issuing skip them while unchanged."""

    def __init__(self, node: str, count: int, seed: int) -> None:
        rng = random.Random(seed)
        self.version = 0
        self.offers: list[dict[str, Any]] = []
        for i in range(count):
            vendor, model, chips = CHIPS[i % len(CHIPS)]
            self.offers.append(
                {
                    "id": f"{node}-{i}",
                    "pool": f"{node}-pool-{i % 5}",
                    "region": f"region-{seed % 31}",
                    "chip_vendor": vendor,
                    "chip_model": model,
                    "chips_per_unit": chips,
                    "cpus": 64,
                    "memory_mib": 524_288,
                    "storage_gib": 2_000,
                    "free_units": rng.randrange(0, 64),
                    "price_per_unit_hour": rng.randrange(20_000, 200_000),
                    "currency": "CNY",
                    "networks": ["rdma", "vpc"],
                    "tags": ["gpu", "train" if i % 2 else "infer"],
                    "compute_id": f"cid:{node}:{i}",
                    "metric_score": rng.randrange(1_000, 10_000),
                }
            )

    async def __call__(self) -> list[dict[str, Any]]:
        return [dict(offer) for offer in self.offers]

    def content_version(self) -> int:
        """Changes whenever an offer does."""
        return self.version

    def change_price(self, delta: int = 1) -> int:
        """Raise the first offer's price by `delta`; return the new price."""
        self.offers[0] = dict(
            self.offers[0], price_per_unit_hour=self.offers[0]["price_per_unit_hour"] + delta
        )
        self.version += 1
        return int(self.offers[0]["price_per_unit_hour"])


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> Any:
    try:
        return await handler(request)
    except FederationError as exc:
        body = canonical.encode({"error": exc.code, "message": str(exc)})
        return web.Response(body=body, status=status_for(exc) or 500, content_type="application/json")


def _header_bytes(headers: Any) -> int:
    return sum(len(name) + len(value) + 4 for name, value in headers.items())


class LightNode:
    """One node: identity, database, federation service and its peer API on 127.0.0.1."""

    def __init__(
        self, name: str, folder: Path, template: Path, offers: int, seed: int, sync_interval_s: float
    ):
        self.name = name
        self.key = SigningKey(random.Random(seed).randbytes(32))
        self.public_key = public_key_text(self.key.verify_key)
        kid = key_id(self.key.verify_key)
        own = OwnKeys(Identity(name, self.key), {kid: KeyRecord(kid, self.public_key, "active", 0)})
        db = folder / f"{name}.db"
        shutil.copyfile(template, db)
        self.db_path = db
        self.engine: Engine = make_engine(f"sqlite:///{db}")
        self.offers = Offers(name, offers, seed)
        self.url = ""
        settings = FederationSettings(
            sync_interval_s=sync_interval_s,
            allow_networks=LOOPBACK,
            request_timeout_s=30,
            partner_timeout_s=60,
        )
        self.service = FederationService(
            lambda: own, self.engine, settings, lambda: self.url, {"offers": self.offers}
        )
        self.served_bytes = 0
        self.runner: web.AppRunner | None = None

    async def _count(self, request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
        response = await handler(request)
        body = response.body if isinstance(response, web.Response) else None
        sent = len(body) if isinstance(body, bytes | bytearray) else 0
        received = (request.content_length or 0) + _header_bytes(request.headers)
        line = len(request.method) + len(request.raw_path) + 11  # request line and status line
        self.served_bytes += line + received + _header_bytes(response.headers) + sent
        return response

    async def start(self) -> None:
        """Serve the peer API on 127.0.0.1, port 0."""

        @web.middleware
        async def count(request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
            return await self._count(request, handler)

        app = web.Application(middlewares=[count, _errors])
        add_routes(app, self.service)
        document = build_key_document(
            self.name, self.key, int(time.time()) - 60, (), int(time.time()), 86_400
        )
        keys_body = canonical.encode(document)

        async def keys(_request: web.Request) -> web.Response:
            return web.Response(body=keys_body, content_type="application/json")

        app.router.add_get("/fed/v1/keys", keys)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def stop(self) -> None:
        """Stop serving and close the database and client session."""
        await self.service.close()
        if self.runner is not None:
            await self.runner.cleanup()
        self.engine.dispose()

    def pin(self, name: str, url: str, public_key: str, agreement: Agreement | None = None) -> None:
        """Pin a partner (replacing an earlier pin of the same name)."""
        partner = Partner(name, (url,), public_key, agreement or Agreement())
        store.add_partner(self.engine, partner, int(time.time()), replace=True)
