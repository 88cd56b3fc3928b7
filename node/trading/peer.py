"""Calling a partner for trading: signed requests under a session, retried within a deadline, and
the partner's signed answers checked against the keys we trust for it.

A request is retried while the partner does not answer, answers 429 (its limit of trades in
flight) or a 5xx (it failed before giving a final answer), until the deadline; a 401 logs in again
once (the partner may have dropped our session). Every retry is a new signed HTTP request with the
same body, so the partner's idempotency (same trade id, same content) gives the stored answer after
a lost response.

An answer we cannot read or trust — larger than the response cap, not canonical JSON (nested too
deep, bad UTF-8, ...), not an object, or not signed by the partner — is a `ProtocolError` at once,
never retried: the flows treat it as a definite outcome (node.trading.machine).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from federation import canonical
from federation.client import PeerResponse
from federation.documents import verify_document
from federation.errors import FederationError, PeerError, UnsafeURLError
from federation.partners import Partner
from federation.service import FederationService
from federation.store import PeerView
from federation.sync import ensure_session
from ledger import Window
from node.trading import documents
from node.trading.errors import PartnerUnavailableError, ProtocolError

log = logging.getLogger("cpnode.trading")
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0


async def post_once(
    service: FederationService, partner: Partner, path: str, body: bytes, token: str | None
) -> PeerResponse:
    """One signed POST under our session at `partner` (`token`, else the stored one), logging in
    again once on a 401."""
    if token is None:
        token = await ensure_session(service, partner)
    client = service.client(partner)
    response = await client.request("POST", path, body, token=token)
    if response.status == 401:
        token = await ensure_session(service, partner, force=True)
        response = await client.request("POST", path, body, token=token)
    return response


async def post(
    service: FederationService,
    partner: Partner,
    path: str,
    body: bytes,
    deadline_s: float,
    session: str | None = None,
) -> PeerResponse:
    """POST a signed body to `partner`, retrying as described above; PartnerUnavailableError when
    no final answer came before the deadline. `session`: a usable session token read already (the
    first attempt uses it; later ones read the stored session again)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    backoff_s = FIRST_BACKOFF_S
    last = "no attempt"
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise PartnerUnavailableError(
                f"{partner.name} did not answer {path} within {deadline_s:g} s ({last})"
            )
        token, session = session, None  # only the first attempt
        try:
            async with asyncio.timeout(remaining):
                response = await post_once(service, partner, path, body, token)
            if response.status != 429 and response.status < 500:
                return response
            code, message = response.error()
            last = f"{response.status} {code}: {message}"
        except UnsafeURLError as exc:
            raise PartnerUnavailableError(f"{partner.name} may not be called: {exc}") from None
        except PeerError as exc:
            if exc.code == "response_too_large":
                raise ProtocolError(f"{partner.name} answered {path} with too much data: {exc}") from None
            last = str(exc) or type(exc).__name__
        except (FederationError, TimeoutError) as exc:  # a failed login is retried like a lost answer
            last = str(exc) or type(exc).__name__
        log.debug("%s %s: %s; retrying", partner.name, path, last)
        await asyncio.sleep(min(backoff_s, max(0.0, deadline - loop.time())))
        backoff_s = min(MAX_BACKOFF_S, backoff_s * 2)


@dataclass(frozen=True)
class SignedAnswer(PeerResponse):
    """One request's answer out of a trade batch's (node.trading.batching.split_answers): its
    canonical bytes, and the object they encode with the canonical bytes its signatures cover,
    from the batch's one parse (nothing parsed or encoded again to read and verify it)."""

    document: dict[str, Any] = field(default_factory=dict)
    payload: bytes = b""


def answer_document(response: PeerResponse, partner: Partner) -> dict[str, Any]:
    """The partner's answer body as a JSON object; ProtocolError when it is not one."""
    if isinstance(response, SignedAnswer):
        return response.document
    try:
        document = canonical.decode(response.body)
    except FederationError as exc:
        raise ProtocolError(f"{partner.name} answered {response.status} with bad JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ProtocolError(f"{partner.name} answered {response.status} with something other than an object")
    return document


async def verify_from(
    service: FederationService,
    partner: Partner,
    document: dict[str, Any],
    view: PeerView | None = None,
    payload: bytes | None = None,
) -> None:
    """Check that `partner` signed `document` with a key we trust for it (refetching its key
    document once when the key is unknown); ProtocolError otherwise. `view`: the partner's keys as
    just read (`federation.store.call_view`), else read here; `payload`: the document's signing
    bytes when already known (`SignedAnswer.payload`)."""
    for attempt in range(2):
        try:
            verify_document(document, partner.name, await service.verify_keys(partner, view), payload)
            view = None  # read again after a refetch
            return
        except FederationError as exc:  # a bad signature, or signatures that are not even well-formed
            if exc.code != "unknown_key" or attempt == 1:
                raise ProtocolError(
                    f"{partner.name}'s {document.get('type')} document: {exc}", code="bad_signature"
                ) from None
            try:
                await service.refresh_keys(partner)
            except FederationError:
                raise ProtocolError(
                    f"{partner.name}'s {document.get('type')} document: {exc}", code="bad_signature"
                ) from None


async def fetch_summary(
    service: FederationService, partner: Partner, window: Window, margin_ms: int, deadline_s: float
) -> dict[str, Any]:
    """The partner's signed reconciliation summary of the trades it shares with us, checked."""
    request = documents.summary_request(
        service.identity(), partner.name, window.from_ms, window.to_ms, margin_ms, service.clock()
    )
    response = await post(service, partner, "/fed/v1/ledger/summary", canonical.encode(request), deadline_s)
    document = answer_document(response, partner)
    if response.status != 200:
        raise ProtocolError(
            f"{partner.name} refused the summary request: {response.status} {document.get('error')}: "
            f"{document.get('message')}",
            code="summary_refused",
        )
    await verify_from(service, partner, document)
    if document.get("issuer") != partner.name or document.get("partner") != service.name:
        raise ProtocolError(f"{partner.name} sent a summary that is not its own about us", code="bad_summary")
    return document
