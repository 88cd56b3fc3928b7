"""Partner addresses: cloud metadata endpoints are refused however they are spelled, including
IPv4 addresses embedded in IPv6 (mapped, compatible, NAT64, 6to4, Teredo); loopback only when the
allow-list names it; ordinary public addresses pass."""

from __future__ import annotations

import ipaddress

import pytest

from federation.errors import UnsafeURLError
from federation.partners import check_address, parse_allow_list

LOOPBACK_ALLOWED = parse_allow_list(["127.0.0.0/8", "::1/128"])

METADATA = [
    "100.100.100.200",  # Alibaba Cloud metadata
    "192.0.0.192",  # Oracle Cloud metadata
    "169.254.169.254",
    "::ffff:169.254.169.254",  # IPv4-mapped
    "::a9fe:a9fe",  # IPv4-compatible (deprecated, still routed by some stacks)
    "64:ff9b::a9fe:a9fe",  # NAT64 well-known prefix
    "64:ff9b:1::a9fe:a9fe",  # NAT64 local-use prefix (RFC 8215)
    "2002:a9fe:a9fe::1",  # 6to4
    "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo, client 169.254.169.254
    "::ffff:100.100.100.200",
    "64:ff9b::6464:64c8",  # NAT64 of 100.100.100.200
    "2002:c000:00c0::1",  # 6to4 of 192.0.0.192
]


@pytest.mark.parametrize("address", METADATA)
def test_metadata_addresses_are_refused_however_spelled(address: str) -> None:
    """Every spelling of a metadata endpoint is refused, even with loopback allow-listed."""
    with pytest.raises(UnsafeURLError):
        check_address(ipaddress.ip_address(address), LOOPBACK_ALLOWED)


@pytest.mark.parametrize("address", ["127.0.0.1", "::ffff:127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1"])
def test_embedded_loopback_needs_the_allow_list(address: str) -> None:
    """Loopback, also embedded in IPv6, is refused unless the allow-list names it."""
    with pytest.raises(UnsafeURLError):
        check_address(ipaddress.ip_address(address), ())
    check_address(ipaddress.ip_address(address), LOOPBACK_ALLOWED)


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "10.1.2.3", "64:ff9b::808:808", "2002:808:808::1", "2606:4700::1111"]
)
def test_ordinary_addresses_pass(address: str) -> None:
    """Public and private unicast addresses, plain or embedded, are accepted."""
    check_address(ipaddress.ip_address(address), ())
