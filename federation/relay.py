"""The star case: an aggregator re-publishes its partners' catalogs, each issuer's signature intact,
so a receiver checks provenance end to end. Pure rules; no I/O.

- An issuer lets a partner re-publish the catalog it makes for it (agreement `republish`); the
  catalog then carries `"republishable": true`, under the issuer's signature.
- The aggregator keeps every catalog it accepts byte for byte. To a partner whose agreement lists
  issuers in `relay`, it serves a feed of the re-publishable ones it holds
  (`GET /fed/v1/relayed?since=N`: entries stored after feed position N, oldest first, at most
  `FEED_PAGE` per answer) and each catalog's bytes (`GET /fed/v1/relayed/{issuer}`). Its catalog
  head tells the partner the newest feed position (`relay_seq`), so a receiver asks for the feed
  only when something changed: a steady round costs no extra request, and a changed issuer costs
  one feed entry and one catalog, however many issuers the aggregator relays.
- A receiver accepts a relayed catalog only from an issuer it trusts (a pinned issuer key, or the
  keys it knows of the issuer as a partner of its own), signed by that issuer with a key valid at
  issue, made for the aggregator that relayed it and marked re-publishable, not expired, and with
  a version that never goes back per (aggregator, issuer). The aggregator's own signature is not
  needed: provenance is the issuer's.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from federation import canonical
from federation.catalog import CatalogHead, CatalogLimits, ReceivedCatalog, accept_catalog
from federation.errors import CatalogRejected, FederationError, PeerError
from federation.keydoc import KeyRecord
from federation.keys import key_id, parse_public_key
from federation.partners import check_node_name

FEED_PAGE = 1000
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Issuer:
    """A node whose catalogs this node accepts through aggregators: name and pinned public key."""

    name: str
    public_key: str
    source: str = "cli"

    def __post_init__(self) -> None:
        check_node_name(self.name)
        parse_public_key(self.public_key)

    def keys(self) -> dict[str, KeyRecord]:
        """The pinned key as the only trusted key record."""
        kid = key_id(parse_public_key(self.public_key))
        return {kid: KeyRecord(kid, self.public_key, "active", 0)}


@dataclass(frozen=True)
class RelayEntry:
    """One feed entry: an issuer's catalog the aggregator holds, and the position it was stored at."""

    issuer: str
    version: int
    sha256: str
    expires_ts: int
    seq: int

    def to_json(self) -> dict[str, Any]:
        """The entry as the feed carries it."""
        return {
            "issuer": self.issuer,
            "version": self.version,
            "sha256": self.sha256,
            "expires_ts": self.expires_ts,
            "seq": self.seq,
        }


def feed_json(node: str, audience: str, entries: list[RelayEntry], position: int) -> dict[str, Any]:
    """The feed answer: entries after the asked position, and the newest position (`seq`)."""
    more = len(entries) >= FEED_PAGE
    return {
        "issuer": node,
        "audience": audience,
        "seq": position,
        "more": more,
        "entries": [entry.to_json() for entry in entries],
    }


def parse_feed(data: bytes, via: str, since: int) -> tuple[list[RelayEntry], int, bool]:
    """An aggregator's feed answer: (entries, newest position, more to read); PeerError if malformed."""
    try:
        feed = canonical.decode(data)
    except FederationError as exc:
        raise PeerError(
            f"{via} sent a relay feed that is not canonical JSON: {exc}", "bad_response"
        ) from None
    if not isinstance(feed, dict) or feed.get("issuer") != via:
        raise PeerError(f"{via} sent a relay feed that is not its own", code="bad_response")
    entries, position, more = feed.get("entries"), feed.get("seq"), feed.get("more")
    if not isinstance(entries, list) or type(position) is not int or type(more) is not bool:
        raise PeerError(f"{via} sent a relay feed without entries, seq or more", code="bad_response")
    if len(entries) > FEED_PAGE:
        raise PeerError(f"{via} sent {len(entries)} relay feed entries, limit {FEED_PAGE}", "too_many_items")
    parsed: list[RelayEntry] = []
    last = since
    for item in entries:
        try:
            entry = RelayEntry(
                item["issuer"], item["version"], item["sha256"], item["expires_ts"], item["seq"]
            )
        except (KeyError, TypeError):
            raise PeerError(f"{via} sent a relay feed entry that is not one", code="bad_response") from None
        ints = (entry.version, entry.expires_ts, entry.seq)
        if any(type(value) is not int for value in ints) or not isinstance(entry.sha256, str):
            raise PeerError(f"{via} sent a relay feed entry with bad types", code="bad_response")
        if entry.seq <= last or entry.seq > position or _SHA256.fullmatch(entry.sha256) is None:
            raise PeerError(f"{via} sent relay feed entries out of order or beyond its seq", "bad_response")
        try:
            check_node_name(entry.issuer)
        except FederationError:
            raise PeerError(f"{via} sent a relay feed entry with a bad issuer name", "bad_response") from None
        parsed.append(entry)
        last = entry.seq
    return parsed, position, more


def accept_relayed(
    data: bytes,
    issuer: str,
    via: str,
    receiver: str,
    keys: Mapping[str, KeyRecord] | None,
    denied: Collection[str],
    previous: CatalogHead | None,
    now_ts: int,
    limits: CatalogLimits,
) -> ReceivedCatalog | None:
    """Apply the rules above to catalog bytes of `issuer` relayed by `via`; None if they equal `previous`.

    `keys` are the issuer's trusted keys, None when the receiver does not trust the issuer at all.
    Raises CatalogRejected with the rule's code; nothing is to be stored then.
    """
    if issuer in (via, receiver):
        raise CatalogRejected(f"{via} relayed a catalog of {issuer}, which it may not", code="wrong_issuer")
    if keys is None:
        raise CatalogRejected(
            f"{via} relayed a catalog of {issuer}, an issuer this node does not trust",
            code="untrusted_issuer",
        )
    return accept_catalog(data, issuer, via, keys, denied, previous, now_ts, limits, relayed=True)
