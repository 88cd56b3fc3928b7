"""Partners and agreements: who this node trusts, and what each partner may see and buy.

A partner is pinned by an operator: name, base URL(s) and public key. Its agreement says which
pools and offer tags it sees (empty = all), what it pays (an explicit price list per offer id or
pool, else the own price plus a markup in basis points), and its credit limit in minor units.
For the star case (an aggregator, see `federation.relay`) it also says whether the partner may
re-publish the catalog we make for it (`republish`), and which other partners' re-publishable
catalogs the partner may fetch through us (`relay`: names, or `*` for all).
Partner URLs are checked here: link-local and cloud-metadata addresses are always refused;
loopback and other special ranges only when the operator lists them in an explicit allow-list.
An IPv6 address that carries an IPv4 address (IPv4-mapped or -compatible, NAT64, 6to4, Teredo)
reaches that IPv4 address, so the carried address is checked by the same rules.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from federation.errors import DocumentError, UnsafeURLError
from federation.keys import parse_public_key
from federation.names import check_node_name as check_node_name  # re-exported: its old home

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Never a partner, whatever the allow-list says: link-local (cloud metadata lives at
# 169.254.169.254 and fd00:ec2::254), other clouds' metadata addresses (Alibaba 100.100.100.200,
# Oracle 192.0.0.192 in the IETF protocol block), unspecified, multicast, broadcast.
ALWAYS_REFUSED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "169.254.0.0/16",
        "fe80::/10",
        "fd00:ec2::254/128",
        "100.100.100.200/32",
        "192.0.0.0/24",
        "0.0.0.0/8",
        "::/128",
        "224.0.0.0/4",
        "ff00::/8",
        "255.255.255.255/32",
    )
)
# Refused unless allow-listed: loopback (tests and single-machine demos list it explicitly).
REFUSED_UNLESS_ALLOWED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(net) for net in ("127.0.0.0/8", "::1/128")
)
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")


@dataclass(frozen=True)
class Agreement:
    """What one partner may see and buy, and at which prices."""

    pools: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    price_list: Mapping[str, int] = field(default_factory=dict)
    markup_bp: int = 0
    credit_limit: int = 0
    currency: str = "CNY"
    republish: bool = False
    relay: tuple[str, ...] = ()

    def allows(self, offer: Mapping[str, Any]) -> bool:
        """Whether the partner may see `offer` (pool allowed and, when tags are set, one tag shared)."""
        if self.pools and offer.get("pool") not in self.pools:
            return False
        return not self.tags or bool(set(self.tags) & set(offer.get("tags", ())))

    def price(self, offer: Mapping[str, Any]) -> int:
        """The partner's price per unit-hour for `offer`, in integer minor units."""
        for key in (offer["id"], offer["pool"]):
            if key in self.price_list:
                return self.price_list[key]
        base: int = offer["price_per_unit_hour"]
        # Round half up in integer arithmetic; basis points keep markups exact.
        return (base * (10_000 + self.markup_bp) + 5_000) // 10_000

    def relays(self, issuer: str) -> bool:
        """Whether the partner may fetch `issuer`'s re-publishable catalog through us."""
        return "*" in self.relay or issuer in self.relay

    def to_json(self) -> dict[str, Any]:
        """The agreement as stored and shown."""
        return {
            "pools": list(self.pools),
            "tags": list(self.tags),
            "price_list": dict(self.price_list),
            "markup_bp": self.markup_bp,
            "credit_limit": self.credit_limit,
            "currency": self.currency,
            "republish": self.republish,
            "relay": list(self.relay),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Agreement:
        """Parse a stored or configured agreement; DocumentError names the bad field."""

        def strings(name: str) -> tuple[str, ...]:
            value = data.get(name, [])
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise DocumentError(f"agreement.{name} must be a list of strings")
            return tuple(value)

        prices = data.get("price_list", {})
        if not isinstance(prices, dict) or not all(
            isinstance(k, str) and type(v) is int and v >= 0 for k, v in prices.items()
        ):
            raise DocumentError("agreement.price_list must map offer ids or pools to non-negative integers")
        markup, credit, currency = (
            data.get("markup_bp", 0),
            data.get("credit_limit", 0),
            data.get("currency", "CNY"),
        )
        if type(markup) is not int or not -10_000 < markup <= 1_000_000:
            raise DocumentError("agreement.markup_bp must be an integer above -10000 (basis points)")
        if type(credit) is not int or credit < 0:
            raise DocumentError("agreement.credit_limit must be a non-negative integer (minor units)")
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isupper():
            raise DocumentError("agreement.currency must be a three-letter code like CNY")
        republish = data.get("republish", False)
        if type(republish) is not bool:
            raise DocumentError("agreement.republish must be true or false")
        relay = strings("relay")
        for name in relay:
            if name != "*":
                check_node_name(name)
        return cls(
            strings("pools"), strings("tags"), dict(prices), markup, credit, currency, republish, relay
        )


@dataclass(frozen=True)
class Partner:
    """A trusted peer: pinned name, base URLs, public key, agreement, and where it was configured."""

    name: str
    urls: tuple[str, ...]
    public_key: str
    agreement: Agreement = field(default_factory=Agreement)
    source: str = "cli"

    def __post_init__(self) -> None:
        check_node_name(self.name)
        parse_public_key(self.public_key)
        if not self.urls:
            raise DocumentError(f"partner {self.name!r} needs at least one URL")


def parse_allow_list(networks: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse CIDR strings of the partner-address allow-list; UnsafeURLError on a bad entry."""
    result = []
    for text in networks:
        try:
            result.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise UnsafeURLError(f"allow-list entry {text!r} is not a network like 127.0.0.0/8") from None
    return tuple(result)


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: IPv4-mapped and -compatible, NAT64 (RFC 6052,
    well-known /96 and the local-use /48 at its /48 and /96 positions), 6to4 and Teredo's client."""
    value = int(address)
    found: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if value >> 32 == 0 and value > 1:  # ::a.b.c.d, the deprecated IPv4-compatible form
        found.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    if address in NAT64_WELL_KNOWN or address in NAT64_LOCAL_USE:
        found.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    if address in NAT64_LOCAL_USE:
        found.append(ipaddress.IPv4Address(((value >> 64) & 0xFFFF) << 16 | (value >> 40) & 0xFFFF))
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.append(address.teredo[1])
    return found


def check_address(address: IPAddress, allowed: Sequence[IPNetwork]) -> None:
    """Refuse an address a partner must never resolve to (see module rules), also when it is an
    IPv6 address carrying such an IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address):
        for carried in embedded_ipv4(address):
            _check_one(carried, allowed)
        if address.ipv4_mapped is not None:
            return
    _check_one(address, allowed)


def _check_one(address: IPAddress, allowed: Sequence[IPNetwork]) -> None:
    for network in ALWAYS_REFUSED:
        if address.version == network.version and address in network:
            raise UnsafeURLError(f"address {address} is link-local, metadata or not unicast; refused")
    for network in REFUSED_UNLESS_ALLOWED:
        if (
            address.version == network.version
            and address in network
            and not any(address.version == allow.version and address in allow for allow in allowed)
        ):
            raise UnsafeURLError(
                f"address {address} is loopback; add it to federation.allow_networks to use it"
            )


def split_url(url: str) -> tuple[str, str, int]:
    """Check a partner base URL's form; return (scheme, host, port)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeURLError(f"partner URL {url!r} is malformed") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURLError(f"partner URL must be http(s)://HOST[:PORT], got {url!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise UnsafeURLError(f"partner URL must not carry credentials, query or fragment: {url!r}")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def check_url(url: str, resolved: Iterable[IPAddress], allowed: Sequence[IPNetwork]) -> str:
    """Check a partner URL and every address its host resolved to; return the URL without '/' at the end."""
    split_url(url)
    addresses = list(resolved)
    if not addresses:
        raise UnsafeURLError(f"partner URL {url!r} does not resolve")
    for address in addresses:
        check_address(address, allowed)
    return url.rstrip("/")
