"""Discovery on loopback: two nodes announce themselves with zeroconf (interfaces 127.0.0.1 only) and
each records the other as an untrusted candidate with its key fingerprint."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from pathlib import Path

import pytest

from federation import store
from tests.federation.conftest import nodes

DISCOVERY_TOML = "\n[federation]\ndiscovery = true\n"
MDNS_GROUP = "224.0.0.251"


def multicast_on_loopback() -> bool:
    """Whether a multicast datagram sent on 127.0.0.1 comes back to a member socket on this host."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        receiver.bind(("", 0))
        port = receiver.getsockname()[1]
        membership = struct.pack("4s4s", socket.inet_aton(MDNS_GROUP), socket.inet_aton("127.0.0.1"))
        receiver.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        receiver.settimeout(1.0)
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        sender.sendto(b"cpnode-probe", (MDNS_GROUP, port))
        return receiver.recv(64) == b"cpnode-probe"
    except OSError:
        return False
    finally:
        receiver.close()
        sender.close()


async def test_nodes_discover_each_other_on_loopback(tmp_path: Path) -> None:
    """Each node lists the other as a discovered candidate with the right fingerprint, trusting nobody."""
    if not multicast_on_loopback():
        pytest.skip("multicast on the loopback interface is not available on this host")
    extra = DISCOVERY_TOML.replace("[federation]\n", "")
    async with nodes(tmp_path, ["alpha", "beta"], extra=extra) as (alpha, beta):
        assert alpha.ctx is not None
        assert beta.ctx is not None
        deadline = time.monotonic() + 20
        while True:
            seen_by_alpha = {row["name"]: row for row in store.list_discovered(alpha.ctx.engine)}
            seen_by_beta = {row["name"]: row for row in store.list_discovered(beta.ctx.engine)}
            if "beta" in seen_by_alpha and "alpha" in seen_by_beta:
                break
            assert time.monotonic() < deadline, (seen_by_alpha, seen_by_beta)
            await asyncio.sleep(0.1)
        assert seen_by_alpha["beta"]["fingerprint"] == beta.ctx.identity.fingerprint
        assert seen_by_alpha["beta"]["url"] == beta.url
        assert seen_by_beta["alpha"]["public_key"] == alpha.ctx.identity.public_key
        assert store.list_partners(alpha.ctx.engine) == []
