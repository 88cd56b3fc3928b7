"""The catalog sync job: log in to each partner when needed, poll its catalog head, fetch and accept
changed catalogs, and keep the last good one when a new one breaks a rule.

Partners are synced concurrently (bounded), each within its own time limit, so a slow or dead
partner never stalls the others. A failing partner is retried with exponential backoff and shown
as `unreachable` (could not talk to it) or `rejected` (it answered with something we refuse).

When a partner's head shows a relay feed position past the one we hold (it is an aggregator that
relays other nodes' catalogs to us, `federation.relay`), the new feed entries are read and the
changed catalogs fetched and checked against their issuers' keys. A relayed catalog we refuse is
recorded as an event of the aggregator and skipped; one we could not fetch is tried again next
round (the feed position is kept before it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from federation import canonical, store
from federation.catalog import CatalogHead, accept_catalog
from federation.errors import CatalogRejected, FederationError, PeerError
from federation.login import login_document
from federation.partners import Partner
from federation.relay import RelayEntry, accept_relayed, parse_feed
from federation.service import FederationService

log = logging.getLogger("cpnode.federation.sync")
SESSION_RENEW_MARGIN_S = 60
RELAY_PAGES_PER_ROUND = 10
RELAY_FETCH_CONCURRENCY = 8


@dataclass(frozen=True)
class PartnerResult:
    """What one partner's sync did: outcome, catalog version held afterwards, error if any."""

    partner: str
    outcome: str
    version: int | None = None
    error: str | None = None


def backoff_s(failures: int, base_s: int, max_s: int) -> int:
    """Seconds to wait after `failures` consecutive failures: base · 2^(failures−1), capped."""
    return 0 if failures <= 0 else min(max_s, base_s * 2 ** min(failures - 1, 30))


def usable_session(service: FederationService, stored: store.StoredSession | None) -> str | None:
    """The token of a stored session when it is bound to our current key and not about to expire."""
    if stored is None:
        return None
    token, kid, expires_ts = stored
    if kid == service.identity().kid and expires_ts - SESSION_RENEW_MARGIN_S > service.clock():
        return str(token)
    return None


async def ensure_session(service: FederationService, partner: Partner, force: bool = False) -> str:
    """A valid session token at `partner`, logging in (challenge → signed login document) if needed."""
    if not force:
        token = usable_session(service, await service.db(store.get_session, partner.name))
        if token is not None:
            return token
    identity = service.identity()
    now = service.clock()
    client = service.client(partner)
    challenge = (await client.expect("POST", "/fed/v1/login/challenge")).json()
    if not isinstance(challenge, dict) or challenge.get("node") != partner.name:
        raise PeerError(f"{partner.name} sent a challenge that is not its own", code="bad_challenge")
    document = login_document(identity, partner.name, str(challenge.get("challenge")), now)
    answer = (await client.expect("POST", "/fed/v1/login", canonical.encode(document))).json()
    if not isinstance(answer, dict):
        raise PeerError(
            f"{partner.name} answered the login with something other than an object", "bad_response"
        )
    token, expires_ts = answer.get("token"), answer.get("expires_ts")
    if not isinstance(token, str) or type(expires_ts) is not int:
        raise PeerError(f"{partner.name} answered the login without a token", code="bad_response")
    await service.db(store.save_session, partner.name, token, identity.kid, expires_ts)
    return token


async def _fetch(service: FederationService, partner: Partner, path: str) -> bytes:
    token = await ensure_session(service, partner)
    client = service.client(partner)
    response = await client.request("GET", path, token=token)
    if response.status == 401:  # the session may have been dropped on their side: log in again once
        token = await ensure_session(service, partner, force=True)
        response = await client.request("GET", path, token=token)
    if response.status != 200:
        code, message = response.error()
        raise PeerError(
            f"GET {path}: {partner.name} answered {response.status} {code}: {message}",
            code=code,
            status=response.status,
        )
    return response.body


async def _sync_one(service: FederationService, partner: Partner) -> PartnerResult:
    previous = await service.db(store.received_head, partner.name)
    head = canonical.decode(await _fetch(service, partner, "/fed/v1/catalog/head"))
    result = await _sync_catalog(service, partner, previous, head)
    relay_seq = head.get("relay_seq") if isinstance(head, dict) else None
    if type(relay_seq) is int and relay_seq > 0:
        await _sync_relayed(service, partner, relay_seq)
    return result


async def _sync_catalog(
    service: FederationService, partner: Partner, previous: CatalogHead | None, head: object
) -> PartnerResult:
    if previous is not None and isinstance(head, dict) and head.get("sha256") == previous.sha256:
        return PartnerResult(partner.name, "unchanged", previous.version)
    body = await _fetch(service, partner, "/fed/v1/catalog")
    view = await service.db(store.peer_view, partner.name)
    keys, denied = await service.partner_keys(partner, view), view.denied
    now = service.clock()
    try:
        received = accept_catalog(
            body, partner.name, service.name, keys, denied, previous, now, service.settings.limits
        )
    except CatalogRejected as exc:
        if exc.code != "unknown_key" or not await service.refresh_keys_quietly(partner):
            raise
        keys = await service.partner_keys(partner)
        received = accept_catalog(
            body, partner.name, service.name, keys, denied, previous, now, service.settings.limits
        )
    if received is None:
        return PartnerResult(partner.name, "unchanged", previous.version if previous else None)
    if not await service.db(store.store_received, partner.name, received, body, now):
        return PartnerResult(partner.name, "unchanged", previous.version if previous else None)
    return PartnerResult(partner.name, "ok", received.head.version)


async def _sync_relayed(service: FederationService, via: Partner, relay_seq: int) -> None:
    """Read `via`'s relay feed from our cursor up to `relay_seq` and take the changed catalogs."""
    cursor = await service.db(store.relay_cursor, via.name)
    if relay_seq < cursor:  # the feed went back (its newest entries expired, or it was reset): reread
        cursor = 0
    gate = asyncio.Semaphore(RELAY_FETCH_CONCURRENCY)

    async def bounded(entry: RelayEntry) -> bool:
        async with gate:
            return await _take_relayed(service, via, entry)

    for _ in range(RELAY_PAGES_PER_ROUND):
        if cursor >= relay_seq:
            break
        feed = await _fetch(service, via, f"/fed/v1/relayed?since={cursor}")
        entries, position, more = parse_feed(feed, via.name, cursor)
        taken = await asyncio.gather(*(bounded(entry) for entry in entries))
        done = next((i for i, ok in enumerate(taken) if not ok), None)
        if done is not None:  # keep the position before the first catalog we could not fetch
            cursor = entries[done - 1].seq if done else cursor
            break
        cursor = entries[-1].seq if more and entries else position
        await service.db(store.set_relay_cursor, via.name, cursor)
        relay_seq = max(relay_seq, position)
        if not more:
            return
    await service.db(store.set_relay_cursor, via.name, cursor)


async def _take_relayed(service: FederationService, via: Partner, entry: RelayEntry) -> bool:
    """Fetch, check and store one relayed catalog; False only if it could not be fetched (retry)."""
    previous = await service.db(store.relayed_head, via.name, entry.issuer)
    if previous is not None and previous.sha256 == entry.sha256:
        return True
    now = service.clock()
    try:
        body = await _fetch(service, via, f"/fed/v1/relayed/{entry.issuer}")
        keys = await service.issuer_keys(entry.issuer)
        denied = await service.db(store.denied_keys)
        received = accept_relayed(
            body, entry.issuer, via.name, service.name, keys, denied, previous, now, service.settings.limits
        )
    except CatalogRejected as exc:
        kind = "alert" if exc.code == "equivocation" else "rejected"
        message = f"relayed catalog of {entry.issuer}: {exc}"
        await service.db(store.record_event, via.name, kind, exc.code, message, now)
        log.warning("relayed catalog of %s from %s rejected (%s): %s", entry.issuer, via.name, exc.code, exc)
        return True
    except PeerError as exc:
        if exc.status == 404:  # no longer relayed: nothing to take
            return True
        log.info("relayed catalog of %s from %s not fetched: %s", entry.issuer, via.name, exc)
        return False
    if received is not None:
        await service.db(store.store_relayed, via.name, entry.issuer, received, body, now)
    return True


async def sync_partner(
    service: FederationService, partner: Partner, state: Mapping[str, Any] | None = None
) -> PartnerResult:
    """Sync one partner within its time limit and record the outcome and next attempt time
    (`state`: its sync state as the round read it, else read here)."""
    if state is None:
        state = (await service.db(store.sync_states)).get(partner.name, {"failures": 0})
    now = service.clock()
    try:
        async with asyncio.timeout(service.settings.partner_timeout_s):
            result = await _sync_one(service, partner)
    except CatalogRejected as exc:
        kind = "alert" if exc.code == "equivocation" else "rejected"
        await service.db(store.record_event, partner.name, kind, exc.code, str(exc), now)
        log.warning("catalog from %s rejected (%s): %s", partner.name, exc.code, exc)
        result = PartnerResult(partner.name, "rejected", error=f"{exc.code}: {exc}")
    except PeerError as exc:
        # An HTTP error answer means the partner is up but refuses us; no answer means unreachable.
        outcome = "rejected" if exc.status is not None else "unreachable"
        result = PartnerResult(partner.name, outcome, error=f"{exc.code}: {exc}")
    except TimeoutError:
        result = PartnerResult(partner.name, "unreachable", error="timeout: partner sync took too long")
    except FederationError as exc:
        result = PartnerResult(partner.name, "rejected", error=f"{exc.code}: {exc}")
    except sa.exc.SQLAlchemyError:
        raise  # our database's failure, not the partner's: the round's caller reports it
    except Exception as exc:  # one partner's surprise must not end the round for the others
        log.exception("sync of %s failed unexpectedly", partner.name)
        result = PartnerResult(partner.name, "rejected", error=f"internal: {type(exc).__name__}: {exc}")
    status = "ok" if result.outcome in ("ok", "unchanged") else result.outcome
    failures = 0 if status == "ok" else int(state["failures"]) + 1
    settings = service.settings
    values = {
        "status": status,
        "failures": failures,
        "next_attempt_ts": now + backoff_s(failures, settings.backoff_base_s, settings.backoff_max_s),
        "last_attempt_ts": now,
        "last_error": result.error,
    }
    if status == "ok":
        values["last_success_ts"] = now
    await service.db(store.put_sync_state, partner.name, **values)
    return result


async def run_round(service: FederationService, force: bool = False) -> list[PartnerResult]:
    """One sync round over every partner due (all of them when `force`), concurrently and bounded."""
    partners = await service.db(store.list_partners)
    states = await service.db(store.sync_states)
    now = service.clock()
    due = [p for p in partners if force or int(states.get(p.name, {}).get("next_attempt_ts", 0)) <= now]
    gate = asyncio.Semaphore(service.settings.sync_concurrency)

    async def bounded(partner: Partner) -> PartnerResult:
        async with gate:
            return await sync_partner(service, partner, states.get(partner.name, {"failures": 0}))

    results = await asyncio.gather(*(bounded(p) for p in due))
    skipped = [PartnerResult(p.name, "backoff") for p in partners if p not in due]
    return [*results, *skipped]
