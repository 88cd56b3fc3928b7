"""The federation side of one node: authenticating peers, their keys, login, catalogs it issues, trades.

`FederationService` holds what the node hands over as plain data (identity source, engine,
settings, offer sources, optional trade handler). State that guards safety lives in the database,
so it holds across replicas: seen nonces (`nonces`), trades in progress (`claims`), issued catalog
versions (`store`). In-process state is only an optimisation or politeness: the nonce front cache,
the catalog issuing cache (`issuing`), and the key-document refetch times (per process: a replica
may refetch a partner's key document once per interval on its own). The aiohttp handlers in
`server` only translate to and from it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from nacl.signing import VerifyKey

from federation import claim_states, claims, nonces, store
from federation.catalog import CatalogLimits
from federation.client import PeerClient, make_session
from federation.documents import load_document
from federation.errors import AuthError, FederationError, PeerError
from federation.httpsig import (
    CLOCK_SKEW_S,
    Identity,
    SignatureParams,
    check_times,
    read_signature_params,
    verify_request,
)
from federation.issuing import CatalogIssuer, OfferSource
from federation.keydoc import (
    DEFAULT_MAX_KEYS,
    KEY_DOCUMENT_MAX_BYTES,
    KeyRecord,
    trusted_records,
    verify_key_document,
)
from federation.keys import key_id, parse_public_key
from federation.partners import IPNetwork, Partner, check_node_name
from federation.tokens import SessionClaims, bearer, verify_token

# An offer source may also declare `content_version()` (see federation.issuing) to make polls cheap.
TradeHandler = Callable[[Partner, dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]
# Asked before a trade is claimed (federation.trades), with the request's SHA-256 (of what its
# signature covers, as the frame computed it): what to write in the claim's transaction, or None.
TradeOpener = Callable[[Partner, dict[str, Any], str], Awaitable[claim_states.ClaimWrite | None]]
log = logging.getLogger("cpnode.federation.keys")
MAX_CLIENTS = 256  # peer clients kept (`FederationService.client`)


@dataclass(frozen=True)
class OwnKeys:
    """This node's signing identity now, and every key record it has had (for its own tokens)."""

    identity: Identity
    records: Mapping[str, KeyRecord]


@dataclass(frozen=True)
class FederationSettings:
    """Tunables of the peer protocol, with units in their names."""

    sync_interval_s: float = 60.0
    catalog_validity_s: int = 3600
    limits: CatalogLimits = field(default_factory=CatalogLimits)
    max_request_bytes: int = 1024 * 1024
    request_timeout_s: float = 10.0
    partner_timeout_s: float = 30.0
    key_refetch_interval_s: int = 60
    key_document_max_keys: int = DEFAULT_MAX_KEYS
    max_trades_in_flight: int = 32
    trade_claim_ttl_s: int = 30
    max_trade_items: int = 100
    backoff_base_s: int = 5
    backoff_max_s: int = 900
    sync_concurrency: int = 16
    allow_networks: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True)
class Caller:
    """An authenticated peer request: which partner, with which key (id and public key), and its
    session if any."""

    partner: Partner
    kid: str
    session: SessionClaims | None
    key: VerifyKey
    # The signature's nonce, when its claim was left to the route (`authenticate(defer_nonce=True)`)
    # to record in the same transaction as what the request changes.
    nonce: nonces.PendingNonce | None = None


class FederationService:
    """Everything the peer API and the sync job need, for one node."""

    def __init__(
        self,
        own_keys: Callable[[], OwnKeys],
        engine: Any,
        settings: FederationSettings,
        origin: Callable[[], str],
        offer_sources: Mapping[str, OfferSource] | None = None,
        clock: Callable[[], int] = lambda: int(time.time()),
    ) -> None:
        self.own_keys = own_keys
        self.engine = engine
        self.settings = settings
        self.origin = origin
        # The node may add or replace sources by name later (connectors replace config offers).
        self.offer_sources: Mapping[str, OfferSource] = offer_sources if offer_sources is not None else {}
        self.trade_handler: TradeHandler | None = None
        self.trade_opener: TradeOpener | None = None
        self.clock = clock
        # Names this replica in trade claims; unique per service so two replicas never share claims.
        self.holder = uuid.uuid4().hex
        self.recent_nonces = nonces.RecentNonces()
        self.issuer = CatalogIssuer(
            engine,
            lambda: self.offer_sources,
            self.identity,
            settings.catalog_validity_s,
            lambda: self.clock(),
        )
        self._key_fetch_ts: dict[str, int] = {}
        self._session: aiohttp.ClientSession | None = None
        self._clients: dict[
            tuple[str, str], tuple[aiohttp.ClientSession, FederationSettings, PeerClient]
        ] = {}

    @property
    def name(self) -> str:
        """This node's name."""
        return self.own_keys().identity.node

    def identity(self) -> Identity:
        """This node's current signing identity."""
        return self.own_keys().identity

    # --- outbound HTTP ---------------------------------------------------------------------------

    def http(self) -> aiohttp.ClientSession:
        """The shared client session for peer calls (created on first use, inside the event loop)."""
        if self._session is None or self._session.closed:
            self._session = make_session(self.settings.allow_networks, self.settings.request_timeout_s)
        return self._session

    def client(self, partner: Partner) -> PeerClient:
        """A signed client for `partner`'s first URL (made once per partner name, URL, client session
        and settings: making one checks the URL's address, which every trade request paid for)."""
        session = self.http()
        key = (partner.name, partner.urls[0])
        found = self._clients.get(key)
        if found is not None and found[0] is session and found[1] is self.settings:
            return found[2]
        client = PeerClient(
            session,
            self.identity,
            partner.name,
            partner.urls[0],
            self.settings.limits.max_bytes,
            self.settings.allow_networks,
            self.clock,
        )
        if len(self._clients) >= MAX_CLIENTS:
            self._clients.clear()
        self._clients[key] = (session, self.settings, client)
        return client

    async def close(self) -> None:
        """Close the client session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def db(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking store call off the event loop, on the engine's own threads when it has
        them (the `cpnode_threads` execution option the node sets), else the loop's default ones."""
        threads = self.engine.get_execution_options().get("cpnode_threads")
        if threads is None:
            return await asyncio.to_thread(fn, self.engine, *args, **kwargs)
        call = functools.partial(contextvars.copy_context().run, fn, self.engine, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(threads.executor(), call)

    # --- peer keys -------------------------------------------------------------------------------

    async def partner_keys(
        self, partner: Partner, view: store.PeerView | None = None
    ) -> dict[str, KeyRecord]:
        """Trusted keys of `partner`: the pinned one plus those learned through endorsements
        (`view`: what was just read of it, else read here).

        When the key document they were learned from has expired it is refetched (at most once per
        refetch interval); whether or not that succeeds, what was learned is kept, so a key the
        partner retired stays retired and is never taken for the pinned key again.
        """
        if view is None:
            learned, doc_expires_ts = await self.db(store.peer_keys, partner.name)
        else:
            learned, doc_expires_ts = view.learned, view.document_expires_ts
        if learned and doc_expires_ts <= self.clock() and await self.refresh_keys_quietly(partner):
            learned, _ = await self.db(store.peer_keys, partner.name)
        pinned_kid = key_id(parse_public_key(partner.public_key))
        keys = {pinned_kid: KeyRecord(pinned_kid, partner.public_key, "active", 0)}
        keys.update(learned)
        return keys

    async def verify_keys(self, partner: Partner, view: store.PeerView | None = None) -> dict[str, VerifyKey]:
        """The keys `partner`'s signed documents may be checked with: trusted and not denied (`view`:
        what was just read of it, else read here)."""
        if view is None:
            view = await self.db(store.peer_view, partner.name)
        keys = await self.partner_keys(partner, view)
        return {kid: record.verify_key() for kid, record in keys.items() if kid not in view.denied}

    async def refresh_keys(self, partner: Partner, force: bool = False) -> bool:
        """Fetch `partner`'s key document (at most once per refetch interval) and merge its trusted
        keys into what was learned before; False when the interval has not passed.

        The document is capped in size and keys, and checked in a worker thread (its endorsement
        signatures cost CPU time), so the event loop keeps serving meanwhile. A refused document
        raises its FederationError and is logged with the reason.
        """
        now = self.clock()
        last = self._key_fetch_ts.get(partner.name)
        if not force and last is not None and now - last < self.settings.key_refetch_interval_s:
            return False
        self._key_fetch_ts[partner.name] = now
        try:
            response = await self.client(partner).expect(
                "GET", "/fed/v1/keys", signed=False, max_bytes=KEY_DOCUMENT_MAX_BYTES
            )
            known, _ = await self.db(store.peer_keys, partner.name)
            denied = await self.db(store.denied_keys)
            trusted, expires_ts = await asyncio.to_thread(
                _trusted_keys, response.body, partner, known, denied, now, self.settings.key_document_max_keys
            )
            await self.db(store.merge_peer_keys, partner.name, trusted, expires_ts, now)
        except FederationError as exc:
            log.warning("key document of %s refused (%s): %s", partner.name, exc.code, exc)
            raise
        return True

    async def issuer_keys(self, issuer: str) -> dict[str, KeyRecord] | None:
        """Trusted keys of `issuer` for catalogs relayed by an aggregator: those of the partner of
        that name (pinned and learned), else its pinned issuer key; None if it is neither."""
        partner = await self.db(store.get_partner, issuer)
        if partner is not None:
            return await self.partner_keys(partner)
        pinned = await self.db(store.get_issuer, issuer)
        return pinned.keys() if pinned is not None else None

    async def refresh_keys_quietly(self, partner: Partner) -> bool:
        """`refresh_keys`, with a refused or unreachable document (already logged) as False."""
        try:
            return await self.refresh_keys(partner)
        except FederationError:
            return False

    async def _request_key(self, partner: Partner, kid: str, view: store.PeerView) -> VerifyKey:
        if kid in view.denied:
            raise AuthError(f"key {kid} is on the deny-list", code="key_denied")
        keys = await self.partner_keys(partner, view)
        if kid not in keys and await self.refresh_keys_quietly(partner):
            # When the peer's key document is unavailable the key simply stays unknown.
            keys = await self.partner_keys(partner)
        record = keys.get(kid)
        if record is None:
            raise AuthError(f"key {kid} is not a known key of {partner.name}", code="unknown_key")
        now = self.clock()
        if record.retired_ts is not None and record.retired_ts <= now:
            raise AuthError(f"key {kid} of {partner.name} is retired", code="key_retired")
        if record.valid_from_ts > now + CLOCK_SKEW_S:
            raise AuthError(f"key {kid} of {partner.name} is not valid yet", code="key_not_valid")
        return record.verify_key()

    async def caller_key(self, caller: Caller) -> VerifyKey:
        """The public key an authenticated caller signed its request with (checked by `authenticate`)."""
        return caller.key

    # --- authenticating requests -----------------------------------------------------------------

    def target_uri(self, path_qs: str) -> str:
        """The URI a request to this node for `path_qs` must have been signed for."""
        return self.origin().rstrip("/") + path_qs

    async def authenticate(
        self,
        method: str,
        path_qs: str,
        header_lines: list[tuple[str, str]],
        body: bytes,
        require_session: bool,
        defer_nonce: bool = False,
    ) -> Caller:
        """Authenticate a peer request; AuthError (401) or MalformedRequestError (400) say why not.

        `defer_nonce`: the nonce is refused here only if this process saw it; the caller must claim
        `Caller.nonce` itself (`claim_deferred_nonce`, or inside its own write transaction)."""
        params: SignatureParams = read_signature_params(header_lines)
        check_node_name(params.node)
        if params.to != self.name:
            raise AuthError(f"request is signed for {params.to!r}, not this node", code="wrong_destination")
        now = self.clock()
        check_times(params, now)
        # One read for the partner, its keys and the deny-list: each hop to a worker thread costs
        # more than the queries themselves.
        view = await self.db(store.peer_view, params.node)
        partner = view.partner
        if partner is None:
            raise AuthError(f"{params.node!r} is not a partner of this node", code="unknown_partner")
        key = await self._request_key(partner, params.key_id, view)
        verify_request(method, self.target_uri(path_qs), header_lines, body, key, params)
        session = None
        token = bearer(next((v for k, v in header_lines if k.lower() == "authorization"), None))
        if token is not None:
            own_keys = self.own_keys()
            session = verify_token(token, own_keys.identity.node, _verify_keys(own_keys.records), now)
            if session.partner != partner.name or session.partner_kid != params.key_id:
                raise AuthError("session token belongs to another key", code="token_key_mismatch")
        elif require_session:
            raise AuthError("this route needs a session token (log in first)", code="login_required")
        pending = nonces.PendingNonce(params.key_id, params.nonce, params.expires + CLOCK_SKEW_S, now)
        if defer_nonce:
            if self.recent_nonces.seen(pending.kid, pending.nonce, now):
                raise AuthError("nonce already used (replayed request)", code="replayed")
            return Caller(partner, params.key_id, session, key, pending)
        await self.check_replay(params, now)
        return Caller(partner, params.key_id, session, key)

    async def check_replay(self, params: SignatureParams, now_ts: int) -> None:
        """Accept the signature's nonce once across every replica; AuthError `replayed` otherwise."""
        until = params.expires + CLOCK_SKEW_S
        if self.recent_nonces.seen(params.key_id, params.nonce, now_ts) or not await self.db(
            nonces.claim_nonce, params.key_id, params.nonce, until, now_ts
        ):
            self.recent_nonces.add(params.key_id, params.nonce, until, now_ts)
            raise AuthError("nonce already used (replayed request)", code="replayed")
        self.recent_nonces.add(params.key_id, params.nonce, until, now_ts)

    def nonce_claimed(self, pending: nonces.PendingNonce, fresh: bool) -> None:
        """Note the outcome of claiming a deferred nonce; AuthError `replayed` when it was used."""
        self.recent_nonces.add(pending.kid, pending.nonce, pending.until_ts, pending.now_ts)
        if not fresh:
            raise AuthError("nonce already used (replayed request)", code="replayed")

    async def claim_deferred_nonce(self, caller: Caller) -> None:
        """Claim the caller's deferred nonce on its own (the route changes nothing it could join)."""
        pending = caller.nonce
        if pending is not None:
            fresh = await self.db(
                nonces.claim_nonce, pending.kid, pending.nonce, pending.until_ts, pending.now_ts
            )
            self.nonce_claimed(pending, fresh)

    async def purge_expired(self) -> tuple[int, int]:
        """Delete expired nonces and lapsed trade claims (a scheduled job); return how many of each."""
        now = self.clock()
        return await self.db(nonces.purge_expired, now), await self.db(claims.purge_lapsed, now)

    # --- catalogs this node issues ---------------------------------------------------------------

    async def own_offers(self) -> list[dict[str, Any]]:
        """Every offer of this node, from all offer sources in order."""
        return await self.issuer.own_offers()

    async def catalog_for(self, partner: Partner) -> store.IssuedCatalog:
        """The current catalog for `partner`, issuing a new version when offers changed or it aged."""
        return await self.issuer.catalog_for(partner)


def _trusted_keys(
    body: bytes,
    partner: Partner,
    known: Mapping[str, KeyRecord],
    denied: Collection[str],
    now_ts: int,
    max_keys: int,
) -> tuple[dict[str, KeyRecord], int]:
    """The records of `partner`'s key document `body` that its pinned key or a key learned before
    endorses (directly or by a chain), and the document's expiry; FederationError if refused."""
    document, _ = load_document(body)
    records = verify_key_document(document, partner.name, now_ts, max_keys)
    pinned = parse_public_key(partner.public_key)
    anchors = {kid: record.verify_key() for kid, record in known.items()}
    anchors[key_id(pinned)] = pinned
    trusted = trusted_records(partner.name, records, anchors, denied)
    active = next(r for r in records.values() if r.status == "active")
    if active.kid not in trusted:
        raise PeerError(
            f"{partner.name}'s active key {active.kid} is not endorsed by a key we trust",
            code="untrusted_key",
        )
    return trusted, int(document["expires_ts"])


def _verify_keys(records: Mapping[str, KeyRecord]) -> dict[str, VerifyKey]:
    return {kid: record.verify_key() for kid, record in records.items()}
