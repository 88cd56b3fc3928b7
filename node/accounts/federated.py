"""Account interconnection (账号互通) at the node's edges: assertions this node issues for its
consumers, partners' consumers authenticated here by assertion, and lifecycle changes told across.

Home node A:
- `issue`: a consumer asks for an assertion for partner B, bound to its client's public key; A
  records that B has seen the consumer;
- `push`: after a lifecycle change, A sends each partner that has seen the consumer a signed status
  document (`POST /fed/v1/accounts/status`), and answers B's sync (`POST /fed/v1/accounts/statuses`).

Partner B:
- `authenticate`: a request with `Authorization: Cpnode-Assertion <base64url assertion>`, signed
  (RFC 9421) by the key the assertion names, as `cpnode-node: subject@issuer`. B checks the issuer is
  a partner, the assertion's signature, audience and times, the request's signature and nonce, and
  its own policy (`accounts.federated`); creates or updates the federated account `subject@issuer`
  and refuses it when its home node has said it is suspended or closed;
- `check_round`: on every sync interval B asks each issuer about its accounts seen here.

What a federated account uses here is the trades its home node bought here (billed to the home
node's partner account); it reads the tasks run for it, as its home node's consumer.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any, cast

from aiohttp import web

from federation import canonical
from federation import store as fed_store
from federation.assertions import (
    MAX_STATUS_ITEMS,
    SUBJECT_RE,
    AccountState,
    Verification,
    agreement_digest,
    check_assertion,
    check_status_document,
    issue_assertion,
    status_document,
)
from federation.documents import load_document
from federation.errors import AuthError, DocumentError, FederationError, KeyFormatError
from federation.httpsig import check_times, read_signature_params, verify_request
from federation.keys import b64url_decode, parse_public_key
from federation.partners import Partner
from federation.server import json_response, read_body
from federation.service import FederationService
from node.accounts import federated_store, store
from node.accounts.lifecycle import (
    AccountRefusedError,
    AccountRequestError,
    Status,
    UnknownAccountError,
    refusal,
)
from node.accounts.store import AccountRecord, now_ms
from node.context import NodeContext
from node.db import in_thread
from node.http.auth import Principal

log = logging.getLogger("cpnode.accounts")
MAX_ASSERTION_CHARS = 8192
STATUS_PATH = "/fed/v1/accounts/status"
STATUSES_PATH = "/fed/v1/accounts/statuses"
CHECK_BATCH = MAX_STATUS_ITEMS  # accounts asked about in one request of a status check


def account_state(record: AccountRecord) -> AccountState:
    """What the home node states of its consumer's account (one being closed is stated suspended:
    partners refuse it, and hear `closed` once the close is done)."""
    verified_ts = None if record.verified_ms is None else record.verified_ms // 1000
    return AccountState(
        record.id,
        "suspended" if record.status == "closing" else record.status,
        record.version,
        Verification(record.verification, record.verified_by, verified_ts),
    )


class Interconnect:
    """Assertions, status pushes and checks for one node (its context and federation service)."""

    def __init__(self, ctx: NodeContext, service: FederationService) -> None:
        self.ctx = ctx
        self.service = service

    async def _partner(self, name: str) -> Partner | None:
        if not isinstance(name, str) or not SUBJECT_RE.fullmatch(name):
            return None
        partner: Partner | None = await self.service.db(fed_store.get_partner, name)
        return partner

    # --- at the consumer's home node -------------------------------------------------------------

    async def issue(self, consumer: str, audience: str, public_key: str) -> dict[str, Any]:
        """A signed assertion about `consumer` for partner `audience`, bound to `public_key`."""
        partner = await self._partner(audience)
        if partner is None:
            raise UnknownAccountError(f"{audience!r} is not a partner of this node", code="unknown_partner")
        try:
            parse_public_key(public_key)
        except KeyFormatError as exc:
            raise AccountRequestError(f"public_key: {exc}", code="bad_key") from None
        engine = self.ctx.engine
        record = await in_thread(engine, store.get, "consumer", consumer)
        refused = refusal(record.status, f"consumer:{consumer}")
        if refused is not None:
            raise refused
        identity = self.service.identity()
        now = self.service.clock()
        assertion_id = secrets.token_urlsafe(12)
        validity_s = self.ctx.settings.accounts.assertion_validity_s
        document = issue_assertion(
            identity.node,
            identity.key,
            audience=audience,
            state=account_state(record),
            agreement=agreement_digest(partner.agreement.to_json()),
            client_key=public_key,
            assertion_id=assertion_id,
            now_ts=now,
            validity_s=validity_s,
        )
        stamp = now_ms()
        await in_thread(engine, federated_store.saw, consumer, audience, stamp)
        detail = {"audience": audience, "id": assertion_id, "expires_ts": now + validity_s}
        await in_thread(
            engine,
            store.record_event,
            f"consumer:{consumer}",
            "consumer",
            consumer,
            "assertion",
            detail,
            stamp,
        )
        return document

    async def push(self, consumer: str) -> dict[str, str]:
        """Tell every partner that has seen `consumer` its current state, all at once; partner →
        `told` or the error code (the partner also asks on its next sync, so a failed push is caught
        up)."""
        engine = self.ctx.engine
        names = await in_thread(engine, federated_store.audiences, consumer)
        if not names:
            return {}
        record = await in_thread(engine, store.get, "consumer", consumer)
        identity = self.service.identity()

        async def tell(name: str) -> str:
            partner = await self._partner(name)
            if partner is None:
                return "not_a_partner"
            document = status_document(
                identity.node, identity.key, name, [account_state(record)], self.service.clock()
            )
            try:
                await self.service.client(partner).expect("POST", STATUS_PATH, canonical.encode(document))
            except FederationError as exc:
                log.warning(
                    "telling %s of consumer %s's account failed (%s): %s", name, consumer, exc.code, exc
                )
                return exc.code
            return "told"

        # All at once: a partner that does not answer holds up the answer by one timeout, not one each.
        return dict(zip(names, await asyncio.gather(*(tell(name) for name in names)), strict=True))

    async def answer_statuses(self, partner: Partner, subjects: list[str]) -> dict[str, Any]:
        """The signed states of those of `subjects` that `partner` has seen (others are left out)."""
        engine = self.ctx.engine
        seen = await in_thread(engine, federated_store.seen_by, partner.name, subjects)
        records = await in_thread(engine, store.get_many, "consumer", sorted(seen))
        states = [account_state(record) for record in records.values()]
        identity = self.service.identity()
        return status_document(identity.node, identity.key, partner.name, states, self.service.clock())

    # --- at the partner ---------------------------------------------------------------------------

    async def authenticate(self, request: web.Request) -> Principal:
        """The federated account a request's assertion and signature authenticate (see module doc)."""
        policy = self.ctx.settings.accounts.federated
        if policy == "none":
            raise AccountRefusedError("this node accepts no partners' consumers", code="federated_refused")
        _, _, raw = request.headers.get("Authorization", "").partition(" ")
        raw = raw.strip()
        if not raw or len(raw) > MAX_ASSERTION_CHARS:
            raise AuthError(
                f"the assertion must be 1 to {MAX_ASSERTION_CHARS} characters", code="bad_assertion"
            )
        try:
            document, payload = load_document(b64url_decode(raw))
        except (ValueError, FederationError):
            raise AuthError("the assertion is not a readable signed document", code="bad_assertion") from None
        partner = await self._partner(document.get("issuer", ""))
        if partner is None:
            raise AuthError(
                f"{document.get('issuer')!r} is not a partner of this node", code="unknown_issuer"
            )
        now = self.service.clock()
        try:
            assertion = check_assertion(
                document,
                await self.service.verify_keys(partner),
                audience=self.ctx.name,
                now_ts=now,
                payload=payload,
            )
        except DocumentError as exc:
            raise AuthError(str(exc), code=exc.code) from None
        body = await request.read()
        headers = list(request.headers.items())
        params = read_signature_params(headers)
        if params.to != self.ctx.name:
            raise AuthError(f"request is signed for {params.to!r}, not this node", code="wrong_destination")
        if params.node != assertion.account or params.key_id != assertion.kid:
            raise AuthError(
                f"the request must be signed as {assertion.account} with the assertion's key {assertion.kid}",
                code="key_not_held",
            )
        check_times(params, now)
        verify_request(
            request.method, self.service.target_uri(request.raw_path), headers, body, assertion.key, params
        )
        await self.service.check_replay(params, now)
        if policy == "verified" and assertion.state.verification.status != "verified":
            raise AccountRefusedError(
                f"{assertion.account} is not real-name verified at {assertion.issuer}", code="unverified"
            )
        account = await in_thread(self.ctx.engine, federated_store.seen, assertion, now_ms())
        refused = refusal(cast(Status, account.status), account.id)
        if refused is not None:
            raise refused
        return Principal(consumer=account.id, role="federated")

    async def _take(self, partner: Partner, body: bytes, via: str, asked: set[str] | None = None) -> int:
        """Check a status document from `partner` and keep its newer states (of `asked`, when given);
        how many accounts changed status."""
        document = canonical.decode(body)
        if not isinstance(document, dict):
            raise DocumentError("not a signed status document", code="bad_status_document")
        keys = await self.service.verify_keys(partner)
        states = check_status_document(document, partner.name, keys, self.ctx.name, self.service.clock())
        if asked is not None:
            states = [state for state in states if state.subject in asked]
        return await in_thread(
            self.ctx.engine, federated_store.apply_states, partner.name, states, now_ms(), via
        )

    async def accept_status(self, partner: Partner, body: bytes) -> int:
        """Take a status document `partner` pushed; how many accounts changed status."""
        return await self._take(partner, body, "push")

    async def check_round(self) -> int:
        """Ask every issuer about all its accounts seen here (not closed), CHECK_BATCH at a time;
        how many changed status."""
        by_issuer = await in_thread(self.ctx.engine, federated_store.subjects_by_issuer)
        changed = 0
        for issuer, subjects in by_issuer.items():
            partner = await self._partner(issuer)
            if partner is None:
                continue
            for start in range(0, len(subjects), CHECK_BATCH):
                asked = subjects[start : start + CHECK_BATCH]
                try:
                    response = await self.service.client(partner).expect(
                        "POST", STATUSES_PATH, canonical.encode({"accounts": asked})
                    )
                    changed += await self._take(partner, response.body, "sync", set(asked))
                except FederationError as exc:
                    log.warning("asking %s about its consumers failed (%s): %s", issuer, exc.code, exc)
                    break
        return changed


INTERCONNECT = web.AppKey("accounts_interconnect", Interconnect)


async def _caller(request: web.Request) -> tuple[Interconnect, Partner, bytes]:
    interconnect = request.app[INTERCONNECT]
    service = interconnect.service
    body = await read_body(request, service.settings.max_request_bytes)
    caller = await service.authenticate(
        request.method, request.raw_path, list(request.headers.items()), body, require_session=False
    )
    return interconnect, caller.partner, body


async def status_route(request: web.Request) -> web.Response:
    """`POST /fed/v1/accounts/status`: a partner tells this node of its consumers' account states."""
    interconnect, partner, body = await _caller(request)
    return json_response({"changed": await interconnect.accept_status(partner, body)})


async def statuses_route(request: web.Request) -> web.Response:
    """`POST /fed/v1/accounts/statuses` `{"accounts": [consumer, ...]}`: the signed states of those
    of this node's consumers the calling partner has seen."""
    interconnect, partner, body = await _caller(request)
    asked = canonical.decode(body)
    subjects = asked.get("accounts") if isinstance(asked, dict) else None
    if (
        not isinstance(subjects, list)
        or len(subjects) > MAX_STATUS_ITEMS
        or not all(isinstance(s, str) and SUBJECT_RE.fullmatch(s) for s in subjects)
    ):
        raise DocumentError(
            f'body must be {{"accounts": [consumer id, ...]}} with at most {MAX_STATUS_ITEMS}',
            code="bad_request",
        )
    return json_response(await interconnect.answer_statuses(partner, subjects))
