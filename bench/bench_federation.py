"""Federation benchmarks, each against a baseline measured in the same run.

1. Catalog ingest: a real node fetches (signed request, session token), verifies and stores a
   10,000-offer catalog from a real partner node on loopback. Baseline: plain `json.loads` plus one
   raw Ed25519 verify of the same bytes. Target: ingest ≥ 30 % of the baseline's offers/s.
2. Sync round: one node syncing 50 partners × 2,000 offers (partners are in-process aiohttp servers
   serving pre-signed catalogs and the login endpoints); wall time of one full round (first: logins,
   fetch, verify, store; second: heads only).
3. Signed request round-trip on loopback: sign (client) + verify with digest, then the replay
   check (server) vs the same aiohttp server's unsigned route; p50/p99 and their ratio. The replay
   check runs three ways: in process memory only (the single-process check used before replicas
   shared it: the "before" figure), and through the database as the node does now (SQLite, and
   PostgreSQL when CPNODE_TEST_POSTGRES_URL is set).
4. Catalog head poll of a 10,000-offer catalog: the partner's time to answer (`catalog_for`) and
   the whole signed poll (session token). Baseline: the work every poll did before the issuing
   cache (all offers filtered, priced and hashed, latest catalog read with its body); then the
   cache, with an offer source that declares no content version (its offers are fingerprinted)
   and one that does.

Run: .venv/bin/python -m bench federation
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import aiohttp
import sqlalchemy as sa
from aiohttp import web
from nacl.signing import SigningKey
from sqlalchemy.engine import Engine

from bench.report import bench_parser, emit_json, latency_ms, percentile_ms
from federation import canonical, store, tables
from federation.catalog import accept_catalog, build_catalog, offers_for, sha256_hex
from federation.httpsig import (
    Identity,
    SignatureParams,
    check_times,
    read_signature_params,
    sign_request,
    verify_request,
)
from federation.issuing import content_hash
from federation.keys import public_key_text
from federation.nonces import RecentNonces
from federation.partners import Agreement, Partner
from federation.server import SERVICE
from federation.service import FederationService, FederationSettings, OwnKeys
from federation.sync import _fetch, ensure_session, run_round
from node.db import make_engine, upgrade
from node.offers import CatalogOffer
from node.service import NodeServer
from tests.support.nodes import make_node_dir, running_node

FED_TOML = '[federation]\nallow_networks = ["127.0.0.0/8"]\nsync_interval_s = 3600\nrequest_timeout_s = 60\n'
INGEST_OFFERS = 10_000
PARTNERS, PARTNER_OFFERS = 50, 2_000
ROUND_TRIPS = 2_000
HEAD_OFFERS, HEAD_POLLS = 10_000, 40
POSTGRES_URL = os.environ.get("CPNODE_TEST_POSTGRES_URL", "")


def make_offers(count: int, prefix: str) -> list[CatalogOffer]:
    """Realistic offers (every catalog field set)."""
    return [
        {
            "id": f"{prefix}-{i}",
            "pool": f"pool-{i % 7}",
            "region": "shanghai",
            "chip_vendor": "nvidia",
            "chip_model": "A100-80G",
            "chips_per_unit": 8,
            "cpus": 64,
            "memory_mib": 524_288,
            "storage_gib": 2_000,
            "free_units": i % 50,
            "price_per_unit_hour": 123_456 + i,
            "currency": "CNY",
            "networks": ["rdma", "vpc"],
            "tags": ["gpu", "train"],
            "compute_id": f"cid:{prefix}:{i}",
            "metric_score": 9_000 + i % 1000,
        }
        for i in range(count)
    ]


def service(server: NodeServer) -> Any:
    """The federation service of an in-process node."""
    assert server._runner is not None
    return server._runner.app[SERVICE]


def best(samples: list[float]) -> float:
    """Median of timing samples (seconds)."""
    return statistics.median(samples)


async def bench_ingest(tmp: Path) -> dict[str, Any]:
    """Benchmark 1."""
    configs = [make_node_dir(tmp, name, extra_toml=FED_TOML) for name in ("alpha", "beta")]
    async with running_node(configs[0]) as alpha, running_node(configs[1]) as beta:
        assert alpha.ctx is not None
        assert beta.ctx is not None
        offers = make_offers(INGEST_OFFERS, "beta")

        async def source() -> list[CatalogOffer]:
            return offers

        beta.ctx.offer_sources["bench"] = source
        store.add_partner(alpha.ctx.engine, Partner("beta", (beta.url,), beta.ctx.identity.public_key), 0)
        store.add_partner(beta.ctx.engine, Partner("alpha", (alpha.url,), alpha.ctx.identity.public_key), 0)
        svc = service(alpha)
        partner = store.get_partner(alpha.ctx.engine, "beta")
        assert partner is not None
        await ensure_session(svc, partner)
        body = await _fetch(svc, partner, "/fed/v1/catalog")  # issues the catalog once, before timing
        ingest, baseline = [], []
        for _ in range(7):
            await asyncio.to_thread(_clear, alpha)
            started = time.perf_counter()
            body = await _fetch(svc, partner, "/fed/v1/catalog")
            keys = await svc.partner_keys(partner)
            received = accept_catalog(
                body, "beta", "alpha", keys, set(), None, svc.clock(), svc.settings.limits
            )
            assert received is not None
            assert await svc.db(store.store_received, "beta", received, body, svc.clock())
            ingest.append(time.perf_counter() - started)
            signature = beta.ctx.identity.signing_key.sign(body).signature
            verify_key = beta.ctx.identity.signing_key.verify_key
            started = time.perf_counter()
            json.loads(body)
            verify_key.verify(body, signature)
            baseline.append(time.perf_counter() - started)
    rate, base_rate = INGEST_OFFERS / best(ingest), INGEST_OFFERS / best(baseline)
    return {
        "catalog_bytes": len(body),
        "ingest_offers_per_s": round(rate),
        "baseline_offers_per_s": round(base_rate),
        "ratio": round(rate / base_rate, 3),
        "target_ratio": 0.30,
    }


def _clear(server: NodeServer) -> None:
    assert server.ctx is not None
    with store.writing(server.ctx.engine) as conn:
        conn.execute(tables.received_t.delete())


async def serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> tuple[web.AppRunner, str]:
    """Serve `handler` for every path on 127.0.0.1 port 0."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def bench_sync_round(tmp: Path) -> dict[str, Any]:
    """Benchmark 2."""
    runners = []
    config = make_node_dir(tmp, "hub", extra_toml=FED_TOML + "max_catalog_offers = 5000\n")
    async with running_node(config) as hub:
        assert hub.ctx is not None
        now = int(time.time())
        for index in range(PARTNERS):
            name = f"p{index:02d}"
            key = SigningKey.generate()
            document = build_catalog(
                Identity(name, key), "hub", make_offers(PARTNER_OFFERS, name), 1, now, 3600, None
            )
            body = canonical.encode(document)
            head = canonical.encode({"sha256": sha256_hex(body)})
            replies = {
                "/fed/v1/login/challenge": canonical.encode(
                    {"challenge": "c" * 43, "node": name, "expires_ts": now + 60}
                ),
                "/fed/v1/login": canonical.encode({"token": "t", "expires_ts": now + 600, "node": name}),
                "/fed/v1/catalog/head": head,
                "/fed/v1/catalog": body,
            }

            async def handler(request: web.Request, replies: dict[str, bytes] = replies) -> web.Response:
                await request.read()
                return web.Response(body=replies[request.path], content_type="application/json")

            runner, url = await serve(handler)
            runners.append(runner)
            store.add_partner(
                hub.ctx.engine, Partner(name, (url,), public_key_text(key.verify_key), Agreement()), 0
            )
        svc = service(hub)
        started = time.perf_counter()
        first = await run_round(svc, force=True)
        first_s = time.perf_counter() - started
        assert all(result.outcome == "ok" for result in first), [r for r in first if r.outcome != "ok"][:3]
        started = time.perf_counter()
        second = await run_round(svc, force=True)
        second_s = time.perf_counter() - started
        assert all(result.outcome == "unchanged" for result in second)
        for runner in runners:
            await runner.cleanup()
    total = PARTNERS * PARTNER_OFFERS
    return {
        "partners": PARTNERS,
        "offers_per_partner": PARTNER_OFFERS,
        "first_round_s": round(first_s, 3),
        "offers_per_s": round(total / first_s),
        "unchanged_round_s": round(second_s, 3),
    }


@asynccontextmanager
async def database(tmp: Path, backend: str) -> AsyncIterator[Engine]:
    """A migrated engine: a SQLite file under `tmp`, or a throw-away schema of the PostgreSQL at
    CPNODE_TEST_POSTGRES_URL."""
    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{tmp / 'bench.db'}")
        upgrade(engine)
        yield engine
        engine.dispose()
        return
    schema = f"cpnode_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(
        f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}options=-csearch_path%3D{schema}"
    )
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


async def round_trips(replay: Callable[[SignatureParams, int], Awaitable[None]]) -> dict[str, float]:
    """Unsigned vs signed round trips to one server whose signed route runs `replay` after verifying."""
    caller = Identity("alpha", SigningKey.generate())

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        if request.path == "/signed":
            lines = list(request.headers.items())
            params = read_signature_params(lines)
            now = int(time.time())
            check_times(params, now)
            verify_request(
                request.method, base + request.raw_path, lines, body, caller.key.verify_key, params
            )
            await replay(params, now)
        return web.Response(body=b'{"ok":true}', content_type="application/json")

    runner, base = await serve(handler)
    payload = b'{"trade_id":"t-1","items":[{"offer_id":"o","units":1,"hours":1}]}'
    results: dict[str, list[float]] = {"unsigned": [], "signed": []}
    async with aiohttp.ClientSession() as session:
        for _ in range(ROUND_TRIPS):
            for kind in ("unsigned", "signed"):
                url = f"{base}/{kind}"
                started = time.perf_counter()
                headers = {"Content-Type": "application/json"}
                if kind == "signed":
                    headers = sign_request(
                        caller, "POST", url, payload, to="beta", now_ts=int(time.time()), headers=headers
                    )
                async with session.post(url, data=payload, headers=headers) as response:
                    await response.read()
                    assert response.status == 200
                results[kind].append(time.perf_counter() - started)
    await runner.cleanup()
    out = {
        f"{kind}_{name}": value
        for kind, samples in results.items()
        for name, value in latency_ms(samples).items()
    }
    out["p50_ratio"] = round(out["signed_p50_ms"] / out["unsigned_p50_ms"], 2)
    out["p99_ratio"] = round(out["signed_p99_ms"] / out["unsigned_p99_ms"], 2)
    return out


async def bench_round_trip(tmp: Path) -> dict[str, dict[str, float]]:
    """Benchmark 3: the replay check in process memory only (how a single process did it before
    replicas shared it), then through the database as the node does now, on each backend."""
    recent = RecentNonces()

    async def in_memory(params: SignatureParams, now: int) -> None:
        if recent.seen(params.key_id, params.nonce, now):
            raise AssertionError("replayed")
        recent.add(params.key_id, params.nonce, params.expires + 60, now)

    figures = {"memory": await round_trips(in_memory)}
    own = OwnKeys(Identity("bench", SigningKey.generate()), {})
    for backend in ("sqlite", "postgresql") if POSTGRES_URL else ("sqlite",):
        async with database(tmp / backend, backend) as engine:
            service = FederationService(lambda: own, engine, FederationSettings(), lambda: "")
            figures[f"database_{backend}"] = await round_trips(service.check_replay)
    return figures


async def bench_head_poll(tmp: Path) -> dict[str, Any]:
    """Benchmark 4: answering a catalog head poll for a 10,000-offer catalog, on the partner's side
    (`catalog_for`) and as a whole signed poll with a session token: the work every poll did before
    the issuing cache (baseline) vs cached, with a source without and with a content version."""
    configs = [make_node_dir(tmp, name, extra_toml=FED_TOML) for name in ("alpha", "beta")]
    async with running_node(configs[0]) as alpha, running_node(configs[1]) as beta:
        assert alpha.ctx is not None
        assert beta.ctx is not None
        offers = make_offers(HEAD_OFFERS, "beta")

        async def plain() -> list[CatalogOffer]:
            return [cast(CatalogOffer, dict(offer)) for offer in offers]

        class Versioned:
            async def __call__(self) -> list[CatalogOffer]:
                return await plain()

            def content_version(self) -> int:
                return 1

        store.add_partner(alpha.ctx.engine, Partner("beta", (beta.url,), beta.ctx.identity.public_key), 0)
        store.add_partner(beta.ctx.engine, Partner("alpha", (alpha.url,), alpha.ctx.identity.public_key), 0)
        svc, beta_svc = service(alpha), service(beta)
        partner = store.get_partner(alpha.ctx.engine, "beta")
        to_alpha = store.get_partner(beta.ctx.engine, "alpha")
        assert partner is not None
        assert to_alpha is not None

        async def before_cache(partner: Partner) -> store.IssuedCatalog:
            # What every head poll did before the cache: all offers filtered, priced and hashed,
            # and the latest catalog read with its body.
            visible = offers_for(await beta_svc.own_offers(), partner.agreement)
            content = content_hash(visible)
            latest: store.IssuedCatalog = await beta_svc.db(store.latest_issued, partner.name)
            assert latest.content_sha256 == content
            return latest

        beta.ctx.offer_sources["bench"] = plain
        await beta_svc.catalog_for(to_alpha)  # issues version 1
        figures: dict[str, Any] = {"offers": HEAD_OFFERS}
        for name, source in (("before", plain), ("fingerprint", plain), ("versioned", Versioned())):
            beta.ctx.offer_sources["bench"] = source
            if name == "before":
                beta_svc.catalog_for = before_cache
            else:
                vars(beta_svc).pop("catalog_for", None)  # back to the class's method: the issuing cache
            await _fetch(svc, partner, "/fed/v1/catalog/head")
            answers, polls = [], []
            for _ in range(HEAD_POLLS):
                started = time.perf_counter()
                assert (await beta_svc.catalog_for(to_alpha)).head.version == 1
                answers.append(time.perf_counter() - started)
                started = time.perf_counter()
                assert json.loads(await _fetch(svc, partner, "/fed/v1/catalog/head"))["version"] == 1
                polls.append(time.perf_counter() - started)
            figures[f"{name}_answer_p50_ms"] = percentile_ms(answers, 0.5)
            figures[f"{name}_poll_p50_ms"] = percentile_ms(polls, 0.5)
        for name in ("fingerprint", "versioned"):
            figures[f"{name}_answer_speedup"] = round(
                figures["before_answer_p50_ms"] / figures[f"{name}_answer_p50_ms"], 1
            )
    return figures


def build_parser() -> argparse.ArgumentParser:
    """This benchmark's arguments."""
    return bench_parser(
        "Federation: catalog ingest, a 50-partner sync round, head polls, signed round trips."
    )


async def main(argv: list[str] | None = None) -> int:
    """Run the four benchmarks and print their figures as JSON lines."""
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cpnode-bench-fed-") as tmp:
        ingest = await bench_ingest(Path(tmp) / "ingest")
        print("catalog ingest", json.dumps(ingest), flush=True)
        sync = await bench_sync_round(Path(tmp) / "sync")
        print("sync round    ", json.dumps(sync), flush=True)
        heads = await bench_head_poll(Path(tmp) / "head")
        print("head poll     ", json.dumps(heads), flush=True)
        trips = await bench_round_trip(Path(tmp) / "trip")
    for variant, trip in trips.items():
        print(f"round trip, replay check {variant}:", json.dumps(trip), flush=True)
    if ingest["ratio"] < ingest["target_ratio"]:
        print(f"ingest ratio {ingest['ratio']} is below the target {ingest['target_ratio']}")
    if args.json:
        emit_json("federation", {"ingest": ingest, "sync": sync, "head_poll": heads, "round_trip": trips})
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
