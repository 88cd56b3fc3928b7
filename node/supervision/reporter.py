"""A node's reporting to its supervisors (a scheduled job under the `scheduler` role, one replica
at a time by its database lease).

Each round, for every supervisor: when the report interval has passed since the last report made
for it, make the next one (sequence number one above the last, period from where the last ended to
now, figures from the node's own offers as its catalogs show them, trades of the period), sign it
and record it as `pending` before anything is sent. Then deliver the pending reports oldest first.
A supervisor that accepts (or already holds the very same report) marks it `sent`; one that refuses
it for good (bad report, number not above its last: 400/409/413) marks it `refused` and the next
is tried; anything else — unreachable, 5xx, not registered yet (401) — leaves it pending and
backs off (federation.sync.backoff_s) before that supervisor is tried again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from federation.catalog import sha256_hex
from federation.client import PeerClient
from federation.errors import FederationError, PeerError
from federation.service import FederationService
from federation.sync import backoff_s
from node.db import in_thread
from node.offers import OfferSource
from node.peering.offers import own_offers
from node.supervision import store
from node.supervision.figures import pool_figures
from node.supervision.report import build_report
from node.supervision.settings import SupervisionSection
from node.supervision.tables import supervisors_t
from node.trading.reservations import reserved_units

log = logging.getLogger("cpnode.supervision")
REPORTS_PATH = "/fed/v1/supervision/reports"
MAX_ANSWER_BYTES = 64 * 1024
# Answers that refuse this report for good: sending it again cannot succeed.
FINAL_REFUSALS = frozenset({400, 409, 413, 422})
RETRY_CODES = frozenset({"sequence_busy"})


@dataclass(frozen=True)
class Delivered:
    """What one round did for one supervisor."""

    supervisor: str
    made: int | None
    sent: list[int]
    refused: list[int]
    error: str | None = None


class Reporter:
    """Makes and delivers this node's reports; one instance per process."""

    def __init__(
        self,
        service: FederationService,
        engine: Engine,
        sources: Mapping[str, OfferSource],
        region: Callable[[], str],
        settings: Callable[[], SupervisionSection],
    ) -> None:
        self._service = service
        self._engine = engine
        self._sources = sources
        self._region = region
        self._settings = settings

    async def make_due(self, supervisor: store.Pinned, now_ts: int) -> int | None:
        """Make and record the next report for `supervisor` if the interval has passed; its number."""
        interval = self._settings().report_interval_s
        last = await in_thread(self._engine, store.last_made, supervisor.name)
        if last is not None and now_ts - last.created_ts < interval:
            return None
        seq = 1 if last is None else last.seq + 1
        start = now_ts - interval if last is None else min(last.period_end_ts, now_ts)
        offers = [offer for _, offer in await own_offers(self._sources)]
        used = await in_thread(self._engine, reserved_units, now_ts)
        trades = await in_thread(self._engine, store.trade_volumes, start, now_ts)
        identity = self._service.identity()
        body = build_report(
            node=identity.node,
            audience=supervisor.name,
            seq=seq,
            now_ts=now_ts,
            region=self._region(),
            interval_s=interval,
            period=(start, now_ts),
            pools=pool_figures(offers, used),
            trades=trades,
            key=identity.key,
        )
        entry = store.OutboxEntry(supervisor.name, seq, start, now_ts, now_ts, body, "pending", 0)
        if not await in_thread(self._engine, store.add_made, entry, sha256_hex(body)):
            return None  # made by another replica that held the lease a moment ago
        return seq

    def _client(self, supervisor: store.Pinned) -> PeerClient:
        service = self._service
        return PeerClient(
            service.http(),
            service.identity,
            supervisor.name,
            supervisor.url,
            MAX_ANSWER_BYTES,
            service.settings.allow_networks,
            service.clock,
        )

    async def deliver(self, supervisor: store.Pinned, now_ts: int) -> tuple[list[int], list[int], str | None]:
        """Send `supervisor` its pending reports, oldest first: (sent, refused, error that stopped it)."""
        engine, settings = self._engine, self._service.settings
        failures, next_ts = await in_thread(engine, store.delivery, supervisor.name)
        if next_ts > now_ts:
            return [], [], None
        sent: list[int] = []
        refused: list[int] = []
        batch = await in_thread(
            engine, store.pending, supervisor.name, self._settings().max_reports_per_round
        )
        client = self._client(supervisor)
        for entry in batch:
            try:
                answer = await client.request("POST", REPORTS_PATH, entry.body)
            except PeerError as exc:
                error = f"{exc.code}: {exc}"
            else:
                if 200 <= answer.status < 300:
                    await in_thread(engine, store.mark, entry, "sent", self._service.clock())
                    sent.append(entry.seq)
                    continue
                code, message = answer.error()
                error = f"{answer.status} {code}: {message}"
                if answer.status in FINAL_REFUSALS and code not in RETRY_CODES:
                    log.warning("supervisor %s refused report %d: %s", supervisor.name, entry.seq, error)
                    await in_thread(engine, store.mark, entry, "refused", self._service.clock(), error)
                    refused.append(entry.seq)
                    continue
            await in_thread(engine, store.mark, entry, "pending", self._service.clock(), error)
            failures += 1
            wait = backoff_s(failures, settings.backoff_base_s, settings.backoff_max_s)
            await in_thread(engine, store.set_delivery, supervisor.name, failures, now_ts + wait)
            log.info(
                "report %d to %s not delivered (%s); next try in %d s",
                entry.seq,
                supervisor.name,
                error,
                wait,
            )
            return sent, refused, error
        if failures:
            await in_thread(engine, store.set_delivery, supervisor.name, 0, 0)
        return sent, refused, None

    async def run_round(self) -> list[Delivered]:
        """One round over every supervisor: make what is due, deliver what is pending."""
        supervisors = await in_thread(self._engine, store.list_pinned, supervisors_t)
        results = []
        for supervisor in supervisors:
            now = self._service.clock()
            made = await self.make_due(supervisor, now)
            try:
                sent, refused, error = await self.deliver(supervisor, now)
            except FederationError as exc:  # e.g. its URL is now refused: the others still get theirs
                log.warning("reports to %s not sent: %s", supervisor.name, exc)
                sent, refused, error = [], [], f"{exc.code}: {exc}"
            results.append(Delivered(supervisor.name, made, sent, refused, error))
        return results
