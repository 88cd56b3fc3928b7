"""Catalogs: the signed documents of offers a node makes for one partner, and the rules for accepting one.

Document (canonical JSON, signed by the issuer)::

    {"type": "cpnode.catalog.v1", "issuer": A, "audience": B, "version": N, "issued_ts": T,
     "expires_ts": T2, "prev_sha256": HEX|null, "offers": [OFFER, ...], "signatures": {...}}

plus `"republishable": true` when the issuer lets the audience re-publish the catalog, byte for
byte, to the audience's own partners (an aggregator; see `federation.relay`).

Acceptance rules, in order (the first broken one is the reason recorded): size within the limit;
strict canonical JSON; type; issuer is the partner it was fetched from; audience is us; a key of
the issuer that was valid at `issued_ts` signed it; not issued in the future; not expired; expiry
at most 24 h after issue; offers well-formed and within the count limit; version never goes back,
and the same version must be byte-identical (a different one is an equivocation alert).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from federation.documents import load_document, sign_document, verify_document
from federation.errors import CatalogRejected, DocumentError, FederationError
from federation.httpsig import CLOCK_SKEW_S, Identity
from federation.keydoc import KeyRecord
from federation.partners import Agreement

CATALOG_TYPE = "cpnode.catalog.v1"
MAX_CATALOG_VALIDITY_S = 24 * 3600
# Offer fields: name → (type, required). Integers are non-negative; unknown fields are kept (signed).
# The optional capacity_* fields say that offers of one pool region share its capacity: the group's
# name and unit, what one unit of the offer costs in that unit, and how much of it is free.
OFFER_FIELDS: dict[str, tuple[type, bool]] = {
    "id": (str, True),
    "pool": (str, True),
    "region": (str, True),
    "chip_vendor": (str, True),
    "chip_model": (str, True),
    "chips_per_unit": (int, True),
    "cpus": (int, True),
    "memory_mib": (int, True),
    "storage_gib": (int, True),
    "free_units": (int, True),
    "price_per_unit_hour": (int, True),
    "currency": (str, True),
    "networks": (list, True),
    "tags": (list, True),
    "compute_id": (str, False),
    "metric_score": (int, False),
    "capacity_group": (str, False),
    "capacity_unit": (str, False),
    "capacity_cost": (int, False),
    "capacity_free": (int, False),
}
_REQUIRED_SET = frozenset(name for name, (_, required) in OFFER_FIELDS.items() if required)
_OPTIONAL = frozenset(OFFER_FIELDS) - _REQUIRED_SET
_KINDS: dict[str, Any] = {name: kind for name, (kind, _) in OFFER_FIELDS.items()}


@dataclass(frozen=True)
class CatalogLimits:
    """Bounds on what a partner may send us."""

    max_bytes: int = 16 * 1024 * 1024
    max_offers: int = 20_000
    max_validity_s: int = MAX_CATALOG_VALIDITY_S


@dataclass(frozen=True)
class CatalogHead:
    """What `/fed/v1/catalog/head` says and what a receiver remembers of the last good catalog."""

    version: int
    sha256: str
    issued_ts: int
    expires_ts: int


@dataclass(frozen=True)
class ReceivedCatalog:
    """A catalog that passed every acceptance rule."""

    head: CatalogHead
    offers: list[dict[str, Any]]
    key_id: str
    republishable: bool = False


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def check_offer(offer: Any, index: int = 0) -> dict[str, Any]:
    """Return `offer` if it is a well-formed offer object; DocumentError names the field otherwise."""
    if type(offer) is not dict:
        raise DocumentError(f"offers[{index}] must be an object", code="bad_offer")
    if not offer.keys() >= _REQUIRED_SET:
        missing = sorted(_REQUIRED_SET - offer.keys())
        raise DocumentError(f"offers[{index}] lacks {', '.join(missing)}", code="bad_offer")
    # Runs for every offer of every catalog received, so it is written for speed.
    for name, value in offer.items():
        kind = _KINDS.get(name)
        if kind is None:
            continue
        if type(value) is kind:
            if kind is str:
                ok = 0 < len(value) <= 200
            elif kind is int:
                ok = value >= 0
            else:
                ok = all(type(item) is str for item in value)
        else:
            ok = value is None and name in _OPTIONAL
        if not ok:
            raise DocumentError(f"offers[{index}].{name} must be a valid {kind.__name__}", code="bad_offer")
    return offer


def offers_for(own_offers: Sequence[Mapping[str, Any]], agreement: Agreement) -> list[dict[str, Any]]:
    """The offers a partner may see under `agreement`, at the partner's prices, ordered by id."""
    visible = []
    for offer in own_offers:
        if agreement.allows(offer):
            priced = dict(offer)
            priced["price_per_unit_hour"] = agreement.price(offer)
            visible.append(priced)
    visible.sort(key=lambda item: str(item["id"]))
    return visible


def build_catalog(
    issuer: Identity,
    audience: str,
    offers: Sequence[Mapping[str, Any]],
    version: int,
    now_ts: int,
    validity_s: int,
    prev_sha256: str | None,
    republishable: bool = False,
) -> dict[str, Any]:
    """The signed catalog document for `audience` (offers already filtered and priced); marked
    re-publishable when the audience may pass it on to its own partners."""
    if not 0 < validity_s <= MAX_CATALOG_VALIDITY_S:
        raise DocumentError(f"catalog validity must be 1–{MAX_CATALOG_VALIDITY_S} s")
    document = {
        "type": CATALOG_TYPE,
        "issuer": issuer.node,
        "audience": audience,
        "version": version,
        "issued_ts": now_ts,
        "expires_ts": now_ts + validity_s,
        "prev_sha256": prev_sha256,
        "offers": [dict(offer) for offer in offers],
    }
    if republishable:
        document["republishable"] = True
    return sign_document(document, issuer.key)


def _int(document: Mapping[str, Any], name: str) -> int:
    value = document.get(name)
    if type(value) is not int or value < 0:
        raise CatalogRejected(f"catalog {name} must be a non-negative integer", code="bad_document")
    return value


def _check_addressing(document: Mapping[str, Any], partner: str, audience: str, relayed: bool) -> bool:
    """A catalog, issued by `partner`, made for `audience` (re-publishable if `relayed`); else
    CatalogRejected. Answers whether the issuer lets the catalog be re-published."""
    if document.get("type") != CATALOG_TYPE:
        raise CatalogRejected("not a catalog document", code="wrong_type")
    if document.get("issuer") != partner:
        raise CatalogRejected(
            f"catalog issuer is {document.get('issuer')!r}, not {partner!r}", "wrong_issuer"
        )
    if document.get("audience") != audience:
        made_for = "the node that relayed it" if relayed else "us"
        raise CatalogRejected(
            f"catalog is made for {document.get('audience')!r}, not {made_for}", "wrong_audience"
        )
    republishable = document.get("republishable", False)
    if type(republishable) is not bool:
        raise CatalogRejected("catalog republishable must be a boolean", code="bad_document")
    if relayed and not republishable:
        raise CatalogRejected(
            f"{partner} did not mark this catalog re-publishable by {audience}", code="not_republishable"
        )
    return republishable


def _check_times(issued: int, expires: int, now_ts: int, limits: CatalogLimits) -> None:
    """Issued not in the future, not expired, valid no longer than the limit; else CatalogRejected."""
    if issued > now_ts + CLOCK_SKEW_S:
        raise CatalogRejected("catalog is issued in the future", code="issued_in_future")
    if expires <= now_ts:
        raise CatalogRejected("catalog has expired", code="expired")
    if expires - issued > limits.max_validity_s:
        raise CatalogRejected(
            f"catalog expiry is more than {limits.max_validity_s} s after issue", code="validity_too_long"
        )


def _checked_offers(document: Mapping[str, Any], limits: CatalogLimits) -> list[Any]:
    """The catalog's offers, a list within the limit of well-formed offers; else CatalogRejected."""
    offers = document.get("offers")
    if not isinstance(offers, list):
        raise CatalogRejected("catalog offers must be a list", code="bad_document")
    if len(offers) > limits.max_offers:
        raise CatalogRejected(
            f"catalog has {len(offers)} offers, limit {limits.max_offers}", "too_many_items"
        )
    try:
        for index, offer in enumerate(offers):
            check_offer(offer, index)
    except DocumentError as exc:
        raise CatalogRejected(str(exc), code=exc.code) from None
    return offers


def accept_catalog(
    data: bytes,
    partner: str,
    audience: str,
    keys: Mapping[str, KeyRecord],
    denied: Collection[str],
    previous: CatalogHead | None,
    now_ts: int,
    limits: CatalogLimits,
    relayed: bool = False,
) -> ReceivedCatalog | None:
    """Apply every acceptance rule to catalog bytes issued by `partner` for `audience`; None if it
    equals `previous`. `relayed`: the bytes came through `audience` (an aggregator), so the issuer
    must have marked them re-publishable.

    Raises CatalogRejected whose `code` says which rule failed; nothing is to be stored then.
    """
    if len(data) > limits.max_bytes:
        raise CatalogRejected(f"catalog is {len(data)} bytes, limit {limits.max_bytes}", code="too_large")
    sha = sha256_hex(data)
    if previous is not None and previous.sha256 == sha:
        return None
    try:
        document, payload = load_document(data)
    except DocumentError as exc:
        raise CatalogRejected(f"catalog is not canonical JSON: {exc}", code=exc.code) from None
    republishable = _check_addressing(document, partner, audience, relayed)
    version, issued, expires = (_int(document, name) for name in ("version", "issued_ts", "expires_ts"))
    valid_keys = {
        kid: record.verify_key()
        for kid, record in keys.items()
        if kid not in denied and record.valid_at(issued)
    }
    try:
        kid = verify_document(document, partner, valid_keys, payload)
    except FederationError as exc:
        raise CatalogRejected(f"catalog signature: {exc}", code=exc.code) from None
    _check_times(issued, expires, now_ts, limits)
    offers = _checked_offers(document, limits)
    if previous is not None:
        if version < previous.version:
            raise CatalogRejected(
                f"catalog version {version} is below the stored {previous.version} (rollback)",
                code="rollback",
            )
        if version == previous.version:
            raise CatalogRejected(
                f"catalog version {version} differs from the stored one with the same version", "equivocation"
            )
    return ReceivedCatalog(CatalogHead(version, sha, issued, expires), offers, kid, republishable)
