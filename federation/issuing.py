"""Issuing each partner's catalog, with a per-partner cache so an unchanged head poll costs little.

A partner's catalog version is reused while its content (the offers its agreement lets it see, at
its prices) is unchanged and less than half its validity has passed; otherwise a new version is
signed and stored. Versions only rise, across replicas too: every call reads the newest stored
head (a primary-key lookup without the body) and never answers with an older version than that.

The cache remembers, per partner, the key the last answer was worked out under, the content hash
and the issued catalog (body included). The key is the agreement plus, for each offer source:
- its declared `content_version()` (a cheap value that changes whenever its offers do) — such a
  source is not even called while the key matches;
- else a fingerprint of the offers it returns now (canonical bytes, hashed), so filtering,
  pricing and hashing per partner are skipped when nothing changed.
A changed offer set always gives a new key, so it can never be answered from the cache.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from federation import canonical, store
from federation.catalog import CatalogHead, build_catalog, offers_for, sha256_hex
from federation.errors import PeerError
from federation.httpsig import Identity
from federation.partners import Partner

OfferSource = Callable[[], Awaitable[list[dict[str, Any]]]]
ISSUE_ATTEMPTS = 3


def source_version(source: OfferSource) -> Hashable | None:
    """The source's declared content version (attribute `content_version()`), or None if it has none."""
    version = getattr(source, "content_version", None)
    return version() if callable(version) else None


def content_hash(offers: Sequence[Mapping[str, Any]]) -> str:
    """Hex SHA-256 of the offers' canonical bytes: equal for equal offers, whatever their key order."""
    return hashlib.sha256(canonical.fingerprint_bytes(offers)).hexdigest()


def catalog_content_hash(visible: Sequence[Mapping[str, Any]], republishable: bool) -> str:
    """What decides whether a partner's catalog changed: its offers, and its re-publishable mark."""
    offers_sha = content_hash(visible)
    return (
        hashlib.sha256(b"republishable:" + offers_sha.encode()).hexdigest() if republishable else offers_sha
    )


def reusable(
    head: CatalogHead, head_content_sha256: str, content_sha256: str, now_ts: int, validity_s: int
) -> bool:
    """Whether the stored catalog `head` may be served again: same content, under half its validity used."""
    return head_content_sha256 == content_sha256 and head.expires_ts - now_ts > validity_s // 2


@dataclass(frozen=True)
class _Entry:
    key: tuple[Hashable, ...]
    content_sha256: str
    issued: store.IssuedCatalog


class CatalogIssuer:
    """The catalogs this node issues, one per partner, with the cache described above."""

    def __init__(
        self,
        engine: Engine,
        sources: Callable[[], Mapping[str, OfferSource]],
        identity: Callable[[], Identity],
        validity_s: int,
        clock: Callable[[], int],
    ) -> None:
        self._engine = engine
        self._sources = sources
        self._identity = identity
        self._validity_s = validity_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    async def own_offers(
        self, fetched: Mapping[str, list[dict[str, Any]]] | None = None
    ) -> list[dict[str, Any]]:
        """Every offer of this node, from all offer sources in order (reusing offers just `fetched`)."""
        offers: list[dict[str, Any]] = []
        for name, source in self._sources().items():
            offers.extend(fetched[name] if fetched and name in fetched else await source())
        return offers

    async def _own_key(self) -> tuple[Hashable, dict[str, list[dict[str, Any]]]]:
        """Each source's declared version, or the fingerprint of its offers (which are returned)."""
        parts: list[tuple[str, Hashable]] = []
        fetched: dict[str, list[dict[str, Any]]] = {}
        for name, source in self._sources().items():
            version = source_version(source)
            if version is None:
                fetched[name] = await source()
                version = ("fingerprint", content_hash(fetched[name]))
            parts.append((name, version))
        return tuple(parts), fetched

    async def catalog_for(self, partner: Partner) -> store.IssuedCatalog:
        """The current catalog for `partner`, issuing a new version when its content changed or it aged."""
        own_key, fetched = await self._own_key()
        key = (own_key, canonical.fingerprint_bytes(partner.agreement.to_json()))
        entry = self._entries.get(partner.name)
        visible: list[dict[str, Any]] | None = None
        if entry is not None and entry.key == key:
            content_sha = entry.content_sha256
        else:
            visible = offers_for(await self.own_offers(fetched), partner.agreement)
            content_sha = catalog_content_hash(visible, partner.agreement.republish)
        for _ in range(ISSUE_ATTEMPTS):
            latest = await asyncio.to_thread(store.latest_issued_head, self._engine, partner.name)
            now = self._clock()
            if latest is not None and reusable(*latest, content_sha, now, self._validity_s):
                head = latest[0]
                if entry is not None and entry.issued.head.version == head.version:
                    issued = entry.issued
                else:
                    loaded = await asyncio.to_thread(store.latest_issued, self._engine, partner.name)
                    if loaded is None or loaded.head.version != head.version:
                        continue  # another replica issued meanwhile: look again
                    issued = loaded
                self._entries[partner.name] = _Entry(key, content_sha, issued)
                return issued
            if visible is None:
                visible = offers_for(await self.own_offers(fetched), partner.agreement)
                content_sha = catalog_content_hash(visible, partner.agreement.republish)
            previous = latest[0] if latest else None
            issued = self._issue(partner, visible, content_sha, previous, now)
            if await asyncio.to_thread(store.insert_issued, self._engine, issued):
                self._entries[partner.name] = _Entry(key, content_sha, issued)
                return issued
            # another replica issued this version first: take what it stored
        raise PeerError("could not issue a catalog: concurrent issuers kept winning", code="busy")

    def _issue(
        self,
        partner: Partner,
        visible: list[dict[str, Any]],
        content_sha: str,
        previous: CatalogHead | None,
        now_ts: int,
    ) -> store.IssuedCatalog:
        version = previous.version + 1 if previous is not None else 1
        prev_sha = previous.sha256 if previous is not None else None
        document = build_catalog(
            self._identity(),
            partner.name,
            visible,
            version,
            now_ts,
            self._validity_s,
            prev_sha,
            partner.agreement.republish,
        )
        body = canonical.encode(document, max_depth=canonical.DEFAULT_MAX_DEPTH)
        head = CatalogHead(version, sha256_hex(body), now_ts, now_ts + self._validity_s)
        return store.IssuedCatalog(partner.name, head, content_sha, len(visible), body)
