"""The catalog sync job: log in to each partner when needed, poll its catalog head, fetch and accept
changed catalogs, and keep the last good one when a new one breaks a rule.

Partners are synced concurrently (bounded), each within its own time limit, so a slow or dead
partner never stalls the others. A failing partner is retried with exponential backoff and shown
as `unreachable` (could not talk to it) or `rejected` (it answered with something we refuse).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import sqlalchemy as sa

from federation import canonical, store
from federation.catalog import accept_catalog
from federation.errors import CatalogRejected, FederationError, PeerError
from federation.login import login_document
from federation.partners import Partner
from federation.service import FederationService

log = logging.getLogger("cpnode.federation.sync")
SESSION_RENEW_MARGIN_S = 60


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


async def ensure_session(service: FederationService, partner: Partner, force: bool = False) -> str:
    """A valid session token at `partner`, logging in (challenge → signed login document) if needed."""
    identity = service.identity()
    now = service.clock()
    if not force:
        current = await service.db(store.get_session, partner.name)
        if current is not None:
            token, kid, expires_ts = current
            if kid == identity.kid and expires_ts - SESSION_RENEW_MARGIN_S > now:
                return str(token)
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
    if previous is not None and isinstance(head, dict) and head.get("sha256") == previous.sha256:
        return PartnerResult(partner.name, "unchanged", previous.version)
    body = await _fetch(service, partner, "/fed/v1/catalog")
    denied = await service.db(store.denied_keys)
    keys = await service.partner_keys(partner)
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


async def sync_partner(service: FederationService, partner: Partner) -> PartnerResult:
    """Sync one partner within its time limit and record the outcome and next attempt time."""
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
            return await sync_partner(service, partner)

    results = await asyncio.gather(*(bounded(p) for p in due))
    skipped = [PartnerResult(p.name, "backoff") for p in partners if p not in due]
    return [*results, *skipped]
