"""Scheduling end to end: a demand matched through the real HTTP API of a real node process whose
database holds 100,000 offers (own offers from its config, the rest in signed catalogs of six
partners, stored as a sync round stores them), against the NumPy lower bound over the same offers.

The node runs as an API replica (`cpnode run --roles api`): it serves `POST /api/v1/match` and runs
no scheduled job, so the stored network view (the benchmark's national one) stays as stored. The
first demand builds the cached offer columns (its time is printed as the cold figure); then each
strategy's demand is sent 3 times uncounted and `requests` times over one kept-alive connection
(warm cache): p50 and
p99 of the whole HTTP round trip; then a demand without a strategy, if given (answered over the
same cached columns). The lower bound and the in-process placement over columns built
here from the same offers are timed in the same run. Target: p50 ≤ 100 ms.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from nacl.signing import SigningKey

from bench.bench_market import offers, timed
from bench.report import percentile
from federation import canonical, store
from federation.catalog import CatalogHead, ReceivedCatalog, build_catalog, sha256_hex
from federation.httpsig import Identity
from federation.keys import public_key_text
from federation.partners import Agreement, Partner
from node.config import load_settings
from node.db import make_engine, upgrade
from node.launcher import NodeProcess
from node.market import parse_demand
from node.market.columns import build_columns
from node.market.placement import place
from node.market.strategy_spec import builtin
from node.network.store import save_view
from node.network.view import NetworkView
from node.offers import OfferRow
from node.runfile import read_admin_token
from tests.support.nodes import make_node_dir

PARTNERS = 6
CATALOG_VALIDITY_S = 24 * 3600
_VIEW_FIELDS = ("source", "partner", "age_s", "confirmed_age_s")


def _catalog_offer(row: OfferRow) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in _VIEW_FIELDS and v is not None}


def _toml_offer(offer: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, list):
            return "[" + ", ".join(f'"{item}"' for item in v) + "]"
        return str(v)

    return "\n[[offers]]\n" + "".join(f"{k} = {value(v)}\n" for k, v in offer.items())


def stock(config: Path, rows: list[OfferRow], now_ts: int) -> None:
    """Put the rows in the node: own ones in its config, partners' in signed stored catalogs."""
    own = [r for r in rows if str(r["source"]).startswith("own:")]
    with config.open("a", encoding="utf-8") as handle:
        handle.write("".join(_toml_offer(_catalog_offer(r)) for r in own))
    engine = make_engine(load_settings(config, environ={}).database_url)
    try:
        upgrade(engine)
        for n in range(PARTNERS):
            name, key = f"partner-{n}", SigningKey.generate()
            agreement = Agreement(pools=("*",), markup_bp=0, credit_limit=10**12)
            partner = Partner(
                name, ("http://127.0.0.1:9",), public_key_text(key.verify_key), agreement, "cli"
            )
            store.add_partner(engine, partner, now_ts)
            part = [_catalog_offer(r) for r in rows if r.get("partner") == name]
            document = build_catalog(Identity(name, key), "bench", part, 1, now_ts, CATALOG_VALIDITY_S, None)
            body = canonical.encode(document)
            head = CatalogHead(1, sha256_hex(body), now_ts, now_ts + CATALOG_VALIDITY_S)
            store.store_received(engine, name, ReceivedCatalog(head, part, key_id(key)), body, now_ts)
    finally:
        engine.dispose()


def key_id(key: SigningKey) -> str:
    """The key id a catalog signed with `key` names."""
    return Identity("x", key).kid


def national_rows(count: int, own: int, sites: list[str], seed: int = 5) -> list[OfferRow]:
    """`count` offers: the first `own` the node's, the rest spread over the partners; each at a site."""
    rows = offers(count)
    rng = random.Random(seed)
    for index, row in enumerate(rows):
        row["networks"] = [rng.choice(sites)]
        row["id"] = f"offer-{index}"
        if index < own:
            row["source"], row["partner"] = "own:config", None
            row["age_s"] = row["confirmed_age_s"] = 0
        else:
            partner = f"partner-{index % PARTNERS}"
            row["source"], row["partner"] = f"partner:{partner}", partner
    return rows


def _node(tmp: Path) -> Path:
    """A node folder for the benchmark (`cpnode init`, port 0); its node.toml."""
    return make_node_dir(tmp, "bench", operator="bench", region="bench")


async def _timed_posts(
    http: aiohttp.ClientSession, body: dict[str, Any], requests: int
) -> tuple[list[float], dict[str, Any]]:
    times: list[float] = []
    answer: dict[str, Any] = {}
    for _ in range(requests):
        started = time.perf_counter()
        async with http.post("/api/v1/match", json=body) as response:
            answer = await response.json()
            assert response.status == 200, answer
        times.append((time.perf_counter() - started) * 1000)
    return times, answer


async def through_api(
    count: int,
    own: int,
    demands: dict[str, dict[str, Any]],
    view: NetworkView,
    sites: list[str],
    lower_bound: Any,
    requests: int,
    currency: str,
    plain: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Stock a node with `count` offers, start it, time each demand through its API (see above)."""
    rows = national_rows(count, own, sites)
    figures: dict[str, Any] = {"offers": count, "own": own, "partners": PARTNERS}
    with tempfile.TemporaryDirectory(prefix="bench-scheduling-") as temporary:
        config = _node(Path(temporary))
        stocked = time.perf_counter()
        stock(config, rows, int(time.time()))
        engine = make_engine(load_settings(config, environ={}).database_url)
        save_view(engine, view)
        engine.dispose()
        figures["stock_s"] = round(time.perf_counter() - stocked, 1)
        columns = build_columns(rows)
        process = NodeProcess(config, roles="api")
        process.start()
        try:
            token = read_admin_token(load_settings(config, environ={}))
            headers = {"Authorization": f"Bearer {token}"}
            connector = aiohttp.TCPConnector(limit=1)
            async with aiohttp.ClientSession(process.url, headers=headers, connector=connector) as http:
                first = next(iter(demands.values()))
                cold, _ = await _timed_posts(http, first, 1)
                figures["cold_ms"] = round(cold[0], 1)
                print(f"api: first demand (builds the cached columns of {count:,} offers) {cold[0]:.0f} ms")
                for name, body in demands.items():
                    await _timed_posts(http, body, 3)  # not counted: the strategy's first answers
                    times, answer = await _timed_posts(http, body, requests)
                    demand = parse_demand(body)
                    strategy = builtin(name)
                    in_process = timed(
                        lambda d=demand, s=strategy: place(s, d, columns, view, currency)  # type: ignore[misc]
                    )
                    bound = timed(lower_bound(name, columns, view, demand.units))
                    p50 = statistics.median(times)
                    entry = {
                        "candidates": answer.get("candidates"),
                        "api_p50_ms": round(p50, 2),
                        "api_p99_ms": round(percentile(times, 0.99), 2),
                        "place_ms": round(in_process * 1000, 2),
                        "numpy_ms": round(bound * 1000, 2),
                        "ratio": round(p50 / (bound * 1000), 1),
                        "within_100ms": p50 <= 100,
                    }
                    print(f"api: {name:<11}", entry, flush=True)
                    figures[name] = entry
                if plain is not None:
                    await _timed_posts(http, plain, 1)
                    times, answer = await _timed_posts(http, plain, max(3, requests // 5))
                    entry = {
                        "matches": answer.get("candidates", len(answer["matches"])),
                        "shown": len(answer["matches"]),
                        "excluded": sum(answer.get("excluded_by_reason", {}).values()),
                        "shown_excluded": len(answer["excluded"]),
                        "api_p50_ms": round(statistics.median(times), 1),
                        "api_p99_ms": round(percentile(times, 0.99), 1),
                        "within_100ms": statistics.median(times) <= 100,
                    }
                    print("api: no strategy", entry, flush=True)
                    figures["plain"] = entry
        finally:
            process.stop()
    return figures


def run(
    count: int,
    own: int,
    demands: dict[str, dict[str, Any]],
    view: NetworkView,
    sites: list[str],
    lower_bound: Any,
    requests: int,
    currency: str,
    plain: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`through_api` in its own event loop (`plain`: a demand without a strategy, timed too)."""
    return asyncio.run(through_api(count, own, demands, view, sites, lower_bound, requests, currency, plain))
