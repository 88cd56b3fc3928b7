"""Discovery on loopback: two nodes announce themselves with zeroconf (interfaces 127.0.0.1 only) and
each records the other as an untrusted candidate with its key fingerprint."""

from __future__ import annotations

import socket
import struct
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from federation import store
from tests.support.federation import nodes
from tests.support.polling import eventually

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

        a_engine, b_engine = alpha.ctx.engine, beta.ctx.engine

        def seen(engine: Engine) -> dict[str, dict[str, Any]]:
            return {row["name"]: row for row in store.list_discovered(engine)}

        await eventually(
            lambda: "beta" in seen(a_engine) and "alpha" in seen(b_engine),
            20,
            "alpha and beta discovering each other",
        )
        seen_by_alpha, seen_by_beta = seen(a_engine), seen(b_engine)
        assert seen_by_alpha["beta"]["fingerprint"] == beta.ctx.identity.fingerprint
        assert seen_by_alpha["beta"]["url"] == beta.url
        assert seen_by_beta["alpha"]["public_key"] == alpha.ctx.identity.public_key
        assert store.list_partners(alpha.ctx.engine) == []
