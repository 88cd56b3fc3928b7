"""The star case: an aggregator re-publishes partners' catalogs with each issuer's signature intact,
and a receiver checks provenance end to end; forged, stale, untrusted and misdirected ones are refused."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from jsonschema import Draft202012Validator
from nacl.signing import SigningKey

from federation import canonical, store
from federation.catalog import CatalogHead, CatalogLimits, build_catalog, sha256_hex
from federation.documents import verify_document
from federation.errors import CatalogRejected, FederationError, PeerError
from federation.httpsig import Identity
from federation.keydoc import KeyRecord
from federation.keys import key_id, public_key_text
from federation.openapi import openapi_document
from federation.partners import Agreement
from federation.relay import FEED_PAGE, Issuer, RelayEntry, accept_relayed, feed_json, parse_feed
from federation.sync import run_round
from node.service import NodeServer
from tests.support.federation import FakePeer, nodes, service_of, trust
from tests.support.samples import catalog_offer

LIMITS = CatalogLimits()
OFFER = dict(catalog_offer(id="p-1", region="r", free_units=3, price_per_unit_hour=1000))


def keys_of(key: SigningKey) -> dict[str, KeyRecord]:
    """The trusted key records of one pinned key."""
    kid = key_id(key.verify_key)
    return {kid: KeyRecord(kid, public_key_text(key.verify_key), "active", 0)}


def catalog_bytes(
    issuer: str,
    key: SigningKey,
    audience: str = "agg",
    version: int = 1,
    republishable: bool = True,
    issued_ts: int | None = None,
    validity_s: int = 3600,
    price: int = 1000,
) -> bytes:
    """A catalog `issuer` signed for `audience`."""
    offers = [{**OFFER, "price_per_unit_hour": price}]
    now = issued_ts if issued_ts is not None else int(time.time())
    document = build_catalog(
        Identity(issuer, key), audience, offers, version, now, validity_s, None, republishable
    )
    return canonical.encode(document)


ISSUER_KEY = SigningKey.generate()


def accept(data: bytes, keys: dict[str, KeyRecord] | None = None, previous: CatalogHead | None = None) -> Any:
    """The receiver `recv` checking `data` as relayed by `agg` from issuer `pnode`."""
    trusted = keys_of(ISSUER_KEY) if keys is None else keys
    return accept_relayed(data, "pnode", "agg", "recv", trusted, set(), previous, int(time.time()), LIMITS)


def test_a_relayed_catalog_keeps_its_issuers_signature() -> None:
    """A re-publishable catalog the issuer signed for the aggregator is accepted with the issuer's key."""
    data = catalog_bytes("pnode", ISSUER_KEY)
    received = accept(data)
    assert received.key_id == key_id(ISSUER_KEY.verify_key)
    assert received.republishable
    assert received.offers[0]["price_per_unit_hour"] == 1000


def _tampered_price(data: bytes) -> bytes:
    return data.replace(b'"price_per_unit_hour":1000', b'"price_per_unit_hour":900')


def _signed_by_aggregator(_data: bytes) -> bytes:
    return catalog_bytes("pnode", SigningKey.generate())


CASES: list[tuple[str, Callable[[bytes], bytes], str]] = [
    ("forged-price", _tampered_price, "bad_signature"),
    ("signed-by-another-key", _signed_by_aggregator, "unknown_key"),
    ("expired", lambda _d: catalog_bytes("pnode", ISSUER_KEY, issued_ts=int(time.time()) - 7200), "expired"),
    (
        "not-republishable",
        lambda _d: catalog_bytes("pnode", ISSUER_KEY, republishable=False),
        "not_republishable",
    ),
    (
        "made-for-another-node",
        lambda _d: catalog_bytes("pnode", ISSUER_KEY, audience="recv"),
        "wrong_audience",
    ),
    ("other-issuer-name", lambda _d: catalog_bytes("qnode", ISSUER_KEY), "wrong_issuer"),
    (
        "republishable-not-bool",
        lambda d: d.replace(b'"republishable":true', b'"republishable":1'),
        "bad_document",
    ),
]


@pytest.mark.parametrize(("change", "code"), [(c, k) for _, c, k in CASES], ids=[n for n, _, _ in CASES])
def test_bad_relayed_catalogs_are_refused(change: Callable[[bytes], bytes], code: str) -> None:
    """Forged, re-signed, stale, not re-publishable and misdirected relayed catalogs are refused by rule."""
    with pytest.raises(CatalogRejected) as caught:
        accept(change(catalog_bytes("pnode", ISSUER_KEY)))
    assert caught.value.code == code


def test_untrusted_issuer_rollback_and_self_relay_are_refused() -> None:
    """An issuer the receiver does not trust, an older version than it holds, or the aggregator or
    the receiver named as issuer, are refused."""
    data = catalog_bytes("pnode", ISSUER_KEY, version=4)
    with pytest.raises(CatalogRejected) as caught:
        accept_relayed(data, "pnode", "agg", "recv", None, set(), None, int(time.time()), LIMITS)
    assert caught.value.code == "untrusted_issuer"
    held = CatalogHead(5, "0" * 64, 0, 0)
    with pytest.raises(CatalogRejected) as caught:
        accept(data, previous=held)
    assert caught.value.code == "rollback"
    for issuer in ("agg", "recv"):
        with pytest.raises(CatalogRejected) as caught:
            accept_relayed(data, issuer, "agg", "recv", keys_of(ISSUER_KEY), set(), None, 0, LIMITS)
        assert caught.value.code == "wrong_issuer"
    denied = {key_id(ISSUER_KEY.verify_key)}
    with pytest.raises(CatalogRejected) as caught:
        accept_relayed(
            data, "pnode", "agg", "recv", keys_of(ISSUER_KEY), denied, None, int(time.time()), LIMITS
        )
    assert caught.value.code == "unknown_key"


def _feed(entries: list[dict[str, Any]], seq: int, more: bool = False, issuer: str = "agg") -> bytes:
    return canonical.encode(
        {"issuer": issuer, "audience": "recv", "seq": seq, "more": more, "entries": entries}
    )


def test_feed_round_trip_and_malformed_feeds() -> None:
    """A feed parses back to its entries; foreign, unordered, out-of-range or oversized feeds are PeerErrors."""
    entries = [RelayEntry("pnode", 3, "a" * 64, 10, 4), RelayEntry("qnode", 1, "b" * 64, 10, 7)]
    data = canonical.encode(feed_json("agg", "recv", entries, 9))
    assert parse_feed(data, "agg", 0) == (entries, 9, False)
    good = [entry.to_json() for entry in entries]
    bad: dict[str, tuple[bytes, int]] = {
        "not-json": (b"{", 0),
        "other-aggregator": (_feed(good, 9, issuer="evil"), 0),
        "unordered": (_feed(good[::-1], 9), 0),
        "beyond-seq": (_feed(good, 5), 0),
        "at-or-before-since": (_feed(good, 9), 4),
        "bad-sha": (_feed([{**good[0], "sha256": "x"}], 9), 0),
        "bad-issuer": (_feed([{**good[0], "issuer": "../etc"}], 9), 0),
        "string-version": (_feed([{**good[0], "version": "3"}], 9), 0),
        "missing-field": (_feed([{"issuer": "pnode"}], 9), 0),
        "too-many": (_feed([{**good[0], "seq": i + 1} for i in range(FEED_PAGE + 1)], FEED_PAGE + 1), 0),
    }
    for name, (feed, since) in bad.items():
        with pytest.raises(PeerError) as caught:
            parse_feed(feed, "agg", since)
        assert caught.value.code in ("bad_response", "too_many_items"), name


# --- over HTTP -------------------------------------------------------------------------------------


async def _sync(server: NodeServer) -> None:
    results = await run_round(service_of(server), force=True)
    assert all(r.outcome in ("ok", "unchanged") for r in results), results


def _engine(server: NodeServer) -> Any:
    assert server.ctx is not None
    return server.ctx.engine


async def test_star_relays_catalogs_with_provenance(tmp_path: Path) -> None:
    """pnode's catalog reaches cnode through anode byte for byte, verifiable with pnode's key alone,
    and a price change at pnode arrives after one sync of anode and one of cnode."""
    async with nodes(tmp_path, ["pnode", "anode", "cnode"]) as (p, a, c):
        trust(p, a, Agreement(republish=True))
        trust(a, p)
        trust(a, c, Agreement(relay=("pnode",)))
        trust(c, a)
        assert p.ctx is not None
        extra = [dict(OFFER)]

        async def source() -> list[dict[str, Any]]:
            return [dict(offer) for offer in extra]

        p.ctx.offer_sources["extra"] = source  # type: ignore[assignment]
        store.add_issuer(_engine(c), Issuer("pnode", p.ctx.identity.public_key), int(time.time()))
        await _sync(a)
        await _sync(c)
        relayed = store.relayed_catalogs(_engine(c))
        assert [(r["via"], r["issuer"], r["version"]) for r in relayed] == [("anode", "pnode", 1)]
        held = store.received_catalogs(_engine(a), "pnode")[0]
        assert bytes(relayed[0]["body"]) == bytes(held["body"])
        document = canonical.decode(bytes(relayed[0]["body"]))
        assert (document["issuer"], document["audience"]) == ("pnode", "anode")
        verify_key = p.ctx.identity.signing_key.verify_key
        assert verify_document(document, "pnode", {key_id(verify_key): verify_key})
        extra[0]["price_per_unit_hour"] = 1007
        await _sync(c)  # nothing new at anode yet
        assert store.relayed_catalogs(_engine(c))[0]["version"] == 1
        await _sync(a)
        await _sync(c)
        relayed = store.relayed_catalogs(_engine(c))
        assert relayed[0]["version"] == 2
        offers = canonical.decode(bytes(relayed[0]["body"]))["offers"]
        assert {o["id"]: o["price_per_unit_hour"] for o in offers}["p-1"] == 1007
        cursor = store.relay_cursor(_engine(c), "anode")
        await _sync(c)  # a steady round reads no feed
        assert store.relay_cursor(_engine(c), "anode") == cursor
        token = (tmp_path / "cnode" / "keys" / "admin.token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.get(c.url + "/api/v1/offers") as response:
                plain = await response.json()
            async with session.get(c.url + "/api/v1/offers?relayed=1") as response:
                shown = await response.json()
        assert not [row for row in plain["offers"] if row["source"].startswith("relayed:")]
        rows = [row for row in shown["offers"] if row["source"] == "relayed:anode:pnode"]
        assert {row["id"] for row in rows} == {o["id"] for o in offers}
        assert {(row["issuer"], row["issuer_key_id"], row["partner"]) for row in rows} == {
            ("pnode", key_id(verify_key), "anode")
        }


async def test_config_pins_issuers_and_relay_agreements(tmp_path: Path) -> None:
    """`[[issuers]]` and a partner's `republish`/`relay` in node.toml reach the database; bad ones are refused."""
    issuer_key = public_key_text(SigningKey.generate().verify_key)
    partner_key = public_key_text(SigningKey.generate().verify_key)
    extra = f"""
[[issuers]]
name = "pnode"
key = "{issuer_key}"

[[partners]]
name = "anode"
urls = ["http://127.0.0.1:9"]
key = "{partner_key}"
republish = true
relay = ["pnode", "qnode"]
"""
    async with nodes(tmp_path, ["cnode"], extra=extra) as (c,):
        assert store.list_issuers(_engine(c)) == [Issuer("pnode", issuer_key, "config")]
        partner = store.get_partner(_engine(c), "anode")
        assert partner is not None
        assert (partner.agreement.republish, partner.agreement.relay) == (True, ("pnode", "qnode"))
    with pytest.raises(FederationError):
        Agreement.from_json({"relay": ["../x"]})
    with pytest.raises(FederationError):
        Agreement.from_json({"republish": "yes"})


async def test_relay_needs_the_agreement_and_serves_a_documented_feed(
    tmp_path: Path, fake_peer: FakePeer
) -> None:
    """Without `relay` in its agreement a partner gets 404 from the feed; with it, the feed matches
    the OpenAPI schema and lists only issuers it may see, never the caller's own catalog."""
    async with nodes(tmp_path, ["pnode", "alpha"]) as (p, a):
        trust(p, a, Agreement(republish=True))
        trust(a, p)
        await _sync(a)
        store.add_partner(_engine(a), fake_peer.partner(), int(time.time()))
        token = await fake_peer.login(a.url, "alpha")
        url = a.url + "/fed/v1/relayed?since=0"
        status, answer = await fake_peer.send("GET", url, b"", fake_peer.sign("GET", url, token=token))
        assert (status, answer["error"]) == (404, "relay_not_allowed")
        store.add_partner(
            _engine(a), fake_peer.partner(Agreement(relay=("*",))), int(time.time()), replace=True
        )
        status, feed = await fake_peer.send("GET", url, b"", fake_peer.sign("GET", url, token=token))
        assert status == 200
        schema = {"$ref": "#/components/schemas/RelayFeed", "components": openapi_document()["components"]}
        assert not list(Draft202012Validator(schema).iter_errors(feed))
        assert [e["issuer"] for e in feed["entries"]] == ["pnode"]
        for bad in ("/fed/v1/relayed?since=-1", "/fed/v1/relayed?since=x"):
            status, answer = await fake_peer.send(
                "GET", a.url + bad, b"", fake_peer.sign("GET", a.url + bad, token=token)
            )
            assert (status, answer["error"]) == (400, "bad_query")
        missing = a.url + "/fed/v1/relayed/nobody"
        status, _ = await fake_peer.send("GET", missing, b"", fake_peer.sign("GET", missing, token=token))
        assert status == 404


def _serve_aggregator(peer: FakePeer, own: bytes, receiver: str, relayed: dict[str, bytes], seq: int) -> None:
    """Make the fake peer an aggregator: login, its own catalog `own`, a feed and relayed bytes."""
    now = int(time.time())
    entries = [
        RelayEntry(issuer, 1, sha256_hex(body), now + 3600, index + 1)
        for index, (issuer, body) in enumerate(relayed.items())
    ]
    peer.routes[("POST", "/fed/v1/login/challenge")] = lambda _r: {
        "challenge": "c" * 43,
        "node": peer.name,
        "expires_ts": now + 60,
    }
    peer.routes[("POST", "/fed/v1/login")] = lambda _r: {
        "token": "t",
        "expires_ts": now + 600,
        "node": peer.name,
    }
    peer.routes[("GET", "/fed/v1/catalog/head")] = lambda _r: {"sha256": sha256_hex(own), "relay_seq": seq}
    peer.routes[("GET", "/fed/v1/catalog")] = lambda _r: web.Response(
        body=own, content_type="application/json"
    )
    peer.routes[("GET", "/fed/v1/relayed")] = lambda _r: feed_json(peer.name, receiver, entries, seq)
    for issuer, body in relayed.items():

        def answer(_r: object, b: bytes = body) -> web.Response:
            return web.Response(body=b, content_type="application/json")

        peer.routes[("GET", f"/fed/v1/relayed/{issuer}")] = answer


async def test_a_hostile_aggregator_cannot_pass_off_forged_or_untrusted_catalogs(
    tmp_path: Path, fake_peer: FakePeer
) -> None:
    """Through a real sync: a genuine catalog is stored, a forged one, one of an untrusted issuer and
    a stale one are refused with their codes recorded against the aggregator, and nothing else changes."""
    async with nodes(tmp_path, ["alpha"]) as (alpha,):
        engine = _engine(alpha)
        store.add_partner(engine, fake_peer.partner(), int(time.time()))
        trusted = {name: SigningKey.generate() for name in ("good", "forged", "stale")}
        for name, key in trusted.items():
            store.add_issuer(engine, Issuer(name, public_key_text(key.verify_key)), int(time.time()))
        agg = fake_peer.name
        relayed = {
            "good": catalog_bytes("good", trusted["good"], audience=agg),
            "forged": _tampered_price(catalog_bytes("forged", trusted["forged"], audience=agg)),
            "stranger": catalog_bytes("stranger", SigningKey.generate(), audience=agg),
            "stale": catalog_bytes(
                "stale", trusted["stale"], audience=agg, issued_ts=int(time.time()) - 7200
            ),
        }
        own = canonical.encode(
            build_catalog(fake_peer.identity, "alpha", [], 1, int(time.time()), 3600, None)
        )
        _serve_aggregator(fake_peer, own, "alpha", relayed, seq=len(relayed))
        await _sync(alpha)
        assert [(r["issuer"], r["version"]) for r in store.relayed_catalogs(engine)] == [("good", 1)]
        codes = {
            e["message"].split(":")[0]: e["code"]
            for e in store.catalog_events(engine, agg)
            if e["kind"] == "rejected"
        }
        assert codes == {
            "relayed catalog of forged": "bad_signature",
            "relayed catalog of stranger": "untrusted_issuer",
            "relayed catalog of stale": "expired",
        }
        assert store.relay_cursor(engine, agg) == len(relayed)
        # A later version that goes back is refused too, and the stored one stays.
        relayed["good"] = catalog_bytes("good", trusted["good"], audience=agg, version=1, price=5)
        _serve_aggregator(fake_peer, own, "alpha", {"good": relayed["good"]}, seq=len(relayed) + 1)
        store.set_relay_cursor(engine, agg, 0)
        await _sync(alpha)
        stored = store.relayed_catalogs(engine)[0]
        assert canonical.decode(bytes(stored["body"]))["offers"][0]["price_per_unit_hour"] == 1000
        assert store.catalog_events(engine, agg)[0]["code"] == "equivocation"


def test_partner_options_set_republish_and_relay() -> None:
    """`--republish yes --relay a,b` make the agreement; `partners update` without them keeps the old values."""
    import argparse

    from node.cli.partners_args import add_agreement_arguments, agreement_from_args

    parser = argparse.ArgumentParser()
    add_agreement_arguments(parser)
    agreement = agreement_from_args(parser.parse_args(["--republish", "yes", "--relay", "pnode,qnode"]))
    assert (agreement.republish, agreement.relay) == (True, ("pnode", "qnode"))
    update = argparse.ArgumentParser()
    add_agreement_arguments(update, keep_unset=True)
    kept = agreement_from_args(update.parse_args(["--markup-bp", "5"]), agreement)
    assert (kept.republish, kept.relay, kept.markup_bp) == (True, ("pnode", "qnode"), 5)
    assert agreement_from_args(update.parse_args(["--relay", ""]), agreement).relay == ()
