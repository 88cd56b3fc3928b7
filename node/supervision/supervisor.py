"""A supervisor's work: accepting reports from registered nodes, and comparing each node's latest
report with the catalog the node signs for it.

Ingest refuses, before anything is stored: a signer that is not a registered node (401
`unknown_node`), a bad request signature or replayed request (401), a report that breaks a rule of
`report.read_report` (400/401), and a sequence number that is not above the node's last accepted one
(409 `sequence_rollback` / `sequence_repeated`); the very same report sent again is answered
`duplicate` and changes nothing, so a node may retry safely.

The check job fetches `GET /fed/v1/supervision/catalog` from each node whose latest report was not
compared yet (or not for `check_interval_s`), accepts it as federation accepts catalogs (issuer,
audience, signature by a trusted key, times, offers) and records `ok`, `contradiction` with what
contradicts, or `unchecked` with why the catalog could not be had.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.engine import Engine

from federation.catalog import accept_catalog
from federation.client import PeerClient
from federation.errors import FederationError
from federation.httpsig import CLOCK_SKEW_S
from federation.service import FederationService
from node.db import in_thread
from node.supervision import store
from node.supervision.report import read_report
from node.supervision.signed import authenticate, trusted_records
from node.supervision.tables import nodes_t
from node.supervision.totals import compare_with_catalog

log = logging.getLogger("cpnode.supervision")
CATALOG_PATH = "/fed/v1/supervision/catalog"
# Catalogs fetched at once by the check job (each node is asked once per new report).
CHECKS_IN_FLIGHT = 8


async def ingest(
    service: FederationService,
    engine: Engine,
    method: str,
    path_qs: str,
    header_lines: list[tuple[str, str]],
    body: bytes,
) -> dict[str, Any]:
    """Authenticate, check and keep one report; the answer for its sender."""

    async def registered(name: str) -> store.Pinned | None:
        return await in_thread(engine, store.get_pinned, nodes_t, name)

    node, records, params = await authenticate(
        service, registered, "registered node", method, path_qs, header_lines, body, replay_check=False
    )
    now = service.clock()
    keys = {kid: record.verify_key() for kid, record in records.items()}
    report = read_report(body, node.name, service.name, keys, now)
    # The nonce is claimed in the transaction that keeps the report: one commit per report.
    nonce = store.Nonce(params.key_id, params.nonce, params.expires + CLOCK_SKEW_S)
    outcome = await in_thread(engine, store.record_report, report, body, now, nonce)
    service.recent_nonces.add(nonce.kid, nonce.nonce, nonce.until_ts, now)
    return {"status": outcome, "node": node.name, "seq": report.seq, "sha256": report.sha256}


async def check_node(service: FederationService, engine: Engine, node: store.Pinned) -> tuple[str, list[str]]:
    """Compare `node`'s latest report with the catalog it signs for us: (status, details)."""
    latest = await in_thread(engine, store.history, node.name, 1)
    if not latest:
        return "unchecked", ["no report yet"]
    if not node.url:
        return "unchecked", ["no URL is registered for the node: its catalog cannot be fetched"]
    client = PeerClient(
        service.http(),
        service.identity,
        node.name,
        node.url,
        service.settings.limits.max_bytes,
        service.settings.allow_networks,
        service.clock,
    )
    try:
        answer = await client.expect("GET", CATALOG_PATH)
        records = await trusted_records(service, node)
        catalog = accept_catalog(
            answer.body, node.name, service.name, records, (), None, service.clock(), service.settings.limits
        )
    except FederationError as exc:
        return "unchecked", [f"catalog not available ({exc.code}): {exc}"]
    assert catalog is not None  # no previous catalog is given, so there is always one
    problems = compare_with_catalog(latest[0]["pools"], catalog.offers)
    return ("contradiction" if problems else "ok"), problems


async def check_round(service: FederationService, engine: Engine, every_s: float) -> dict[str, str]:
    """Check every node that is due, CHECKS_IN_FLIGHT at a time; its status by name."""
    due = await in_thread(engine, store.checks_due, service.clock(), every_s)
    outcomes: dict[str, str] = {}
    gate = asyncio.Semaphore(CHECKS_IN_FLIGHT)

    async def check(node: store.Pinned, seq: int) -> None:
        async with gate:
            status, detail = await check_node(service, engine, node)
        if status == "contradiction":
            log.warning("report %d of %s contradicts its catalog: %s", seq, node.name, "; ".join(detail))
        await in_thread(engine, store.set_check, node.name, status, detail, seq, service.clock())
        outcomes[node.name] = status

    await asyncio.gather(*(check(node, seq) for node, seq in due))
    return outcomes
